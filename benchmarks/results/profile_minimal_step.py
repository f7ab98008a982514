"""Per-step cost of jaxgd's engine against a minimal scan(vmap(step)) with the same math:
without and with jaxgd's divergence guard (isfinite reduction + where over the state),
and with the configs in blocks (``lax.map``) instead of one vmap.

    python benchmarks/results/profile_minimal_step.py 1 16 4096   # batch sizes
"""

import functools
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxgd

# The benchmark harness lives in benchmarks/harness, next to this folder.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from harness import workload  # noqa: E402

K, EPOCHS, N = 64, 2, 4096
problem = jaxgd.problems.mlp((64, 256, 10))
data = {k: jax.device_put(v) for k, v in jaxgd.problems.synthetic_classification(N).items()}
configs = workload.make_configs(K)
rates = jnp.asarray([c["learning_rate"] for c in configs], jnp.float32)
momenta = jnp.asarray([c["momentum"] for c in configs], jnp.float32)
params0 = jax.tree.map(jnp.asarray, workload.initial_params(problem, 0))


def all_finite(tree):
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return functools.reduce(jnp.logical_and, leaves)


def make(batch_size, guard, block=None):
    orders = jnp.asarray(workload.data_orders(0, EPOCHS, N)).astype(jnp.int32)
    rows_per_step = orders.reshape(EPOCHS * N // batch_size, batch_size)

    def step(carry, rows):
        params, trace = carry
        batch = jax.tree.map(lambda x: x[rows], data)

        def one(p, t, lr, m):
            def loss(p):
                return jnp.mean(jax.vmap(problem.loss, (None, 0))(p, batch))

            value, g = jax.value_and_grad(loss)(p)
            new_t = jax.tree.map(lambda g, t: g + m * t, g, t)
            new_p = jax.tree.map(lambda p, t: p - lr * t, p, new_t)
            if guard:
                ok = jnp.isfinite(value) & all_finite(new_t)
                new_p = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new_p, p)
                new_t = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new_t, t)
            return new_p, new_t, value

        args = (params, trace, rates, momenta)
        if block is None:
            p, t, values = jax.vmap(one)(*args)
        else:
            p, t, values = jax.lax.map(lambda a: one(*a), args, batch_size=block)
        return (p, t), values.sum()

    return jax.jit(lambda params, trace: jax.lax.scan(step, (params, trace), rows_per_step))


for size in [int(x) for x in sys.argv[1:]]:
    steps = EPOCHS * N // size
    for guard, block in ((False, None), (True, None), (True, 8), (True, 1)):
        params = jax.tree.map(lambda x: jnp.broadcast_to(x, (K,) + x.shape), params0)
        trace = jax.tree.map(jnp.zeros_like, params)
        run = make(size, guard, block)
        jax.block_until_ready(run(params, trace))
        times = []
        for _ in range(5):
            start = time.perf_counter()
            jax.block_until_ready(run(params, trace))
            times.append(time.perf_counter() - start)
        seconds = np.median(times)
        print(
            f"minimal B={size} freeze={guard} block={block}: {seconds:.3f}s  "
            f"{seconds / steps * 1e3:.3f} ms/step",
            flush=True,
        )
    for _ in range(3):
        result = jaxgd.sweep(
            problem, data, space=configs, batch_size=size, epochs=EPOCHS, validation=None
        )
    seconds = result.seconds[0]
    print(f"jaxgd   B={size}: {seconds:.3f}s  {seconds / steps * 1e3:.3f} ms/step", flush=True)
