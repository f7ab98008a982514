"""Sweeps over many hosts: one process per host, JAX's multi-controller runtime.

Every process runs the same program (the same ``jaxgd.sweep`` call on the same data);
``initialize`` connects them first. The config axis is then split over the devices of
every process (``jaxgd.core.layout.Placement``), each process feeds its own devices,
metrics are gathered to every process once per chunk (``core.layout.to_host``:
``multihost_utils.process_allgather``) so callbacks decide alike everywhere, and only
process 0 writes files (``jaxgd._io.atomic_write``). Checkpoints hold whole arrays
(gathered the same way); process 0 writes them and, on resume, reads the newest good one
and sends it to the others (``from_writer``), so every process continues from one step.

References:
    JAX, "Multi-process environments" (jax.readthedocs.io/en/latest/multi_process.html).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import jax
import numpy as np

from .errors import InputError

__all__ = ["initialize", "is_writer", "from_writer", "sync_global_devices"]


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise InputError(f"${name}={value!r}: must be an integer") from None


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: list[int] | None = None,
    initialization_timeout: int = 300,
) -> None:
    """Connect this process to the others of a multi-process sweep.

    Each argument left out is read from ``$JAXGD_COORDINATOR_ADDRESS`` (``host:port`` of
    process 0), ``$JAXGD_NUM_PROCESSES`` and ``$JAXGD_PROCESS_ID``; whatever is still
    missing JAX detects from the cluster (SLURM's ``SLURM_NTASKS``, ``SLURM_PROCID`` and
    node list, Open MPI, Kubernetes, Cloud TPU pods). CPU devices talk through gloo.

    Args:
        coordinator_address: ``host:port`` where process 0 listens.
        num_processes: how many processes take part.
        process_id: this process's rank, ``0 .. num_processes - 1``.
        local_device_ids: the devices this process drives (default: all it sees).
        initialization_timeout: seconds to wait for the others.

    Example (two processes on one machine, each in its own shell)::

        jaxgd.distributed.initialize("127.0.0.1:7777", num_processes=2, process_id=0)
        jaxgd.distributed.initialize("127.0.0.1:7777", num_processes=2, process_id=1)
    """
    coordinator_address = coordinator_address or os.environ.get("JAXGD_COORDINATOR_ADDRESS")
    if num_processes is None:
        num_processes = _env_int("JAXGD_NUM_PROCESSES")
    if process_id is None:
        process_id = _env_int("JAXGD_PROCESS_ID")
    if num_processes is not None and (isinstance(num_processes, bool) or num_processes < 1):
        raise InputError(f"num_processes={num_processes!r}: must be a positive integer")
    if process_id is not None and num_processes is not None:
        if not 0 <= process_id < num_processes:
            raise InputError(
                f"process_id={process_id!r}: must lie in 0..{num_processes - 1} "
                f"(num_processes={num_processes})"
            )
    # CPU devices of different processes need a collectives library; set before the
    # backend starts. Accelerators use their own (NCCL, ICI) and ignore it.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
        initialization_timeout=initialization_timeout,
    )


def is_writer() -> bool:
    """Whether this process writes files: process 0 of a multi-process sweep, or the
    only process."""
    return jax.process_index() == 0


def sync_global_devices(name: str) -> None:
    """Wait until every process reaches the barrier ``name`` (nothing with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def from_writer(read: Callable[[], bytes]) -> bytes:
    """``read()`` run on process 0 alone, its bytes handed to every process.

    What process 0 finds on its disk (the checkpoint to resume from, whether a folder may
    be claimed) is then what every process acts on. An error ``read`` raises on process 0
    is raised on every process (an ``InputError`` as itself, any other as a
    ``RuntimeError`` naming it), so none is left waiting for the others.

    Example:
        >>> from_writer(lambda: b"step 3")
        b'step 3'
    """
    if jax.process_count() == 1:
        return read()
    from jax.experimental import multihost_utils

    payload, failure, error = b"", 0, None
    if is_writer():
        try:
            payload = read()
        except BaseException as caught:  # every process must hear of it, then it is raised
            error = caught
            failure = 1 if isinstance(caught, InputError) else 2
            payload = f"{type(caught).__name__}: {caught}".encode()
            if failure == 1:
                payload = str(caught).encode()
    header = multihost_utils.broadcast_one_to_all(np.array([len(payload), failure], np.int32))
    size, failure = int(header[0]), int(header[1])
    if size:  # bytes travel as uint8, which every dtype setting keeps exact
        mine = np.frombuffer(payload, np.uint8) if is_writer() else np.zeros(size, np.uint8)
        payload = bytes(np.asarray(multihost_utils.broadcast_one_to_all(mine), np.uint8))
    if error is not None:
        raise error
    if failure == 1:
        raise InputError(payload.decode())
    if failure == 2:
        raise RuntimeError(f"process 0 failed: {payload.decode()}")
    return payload
