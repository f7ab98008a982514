"""The throughput benchmark: jaxgd side by side with the loops people write today.

An application that uses jaxgd, not part of the installed package. Run it as
``python benchmarks/throughput.py --help`` (or ``make bench``). One module per concern:

- ``workload``: what every method trains (problem, data, configs, seeds, data orders)
  and the ``Method`` interface;
- ``methods``: the JAX methods (``jaxgd``, ``jaxgd_single``, ``optax_loop``,
  ``jax_scan_vmap``);
- ``torch_methods``: the PyTorch methods and the PyTorch ports of the models;
- ``measure``: the device's matmul peak, FLOPs from a compiled program, device facts;
- ``runner``: warm-up, budgeted repeats and the timing of one point; a whole run;
- ``report``: utilisation, goals, Markdown tables, plots, the JSON file;
- ``cli``: the command line.
"""
