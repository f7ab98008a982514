"""Datasets and batch plans.

A dataset comes from one of two sources. Device data, a pytree of arrays sharing a
leading example axis, is placed on the device once and each step gathers its batch there.
``HostData`` stays in host memory (memory-mapped ``.npy`` files included) and is streamed
to the device a window of steps' batches at a time, for training sets larger than the
device's memory. Both answer ``num_examples`` and ``example_of``.

Each epoch visits a permutation of the examples drawn with ``jax.random`` from the seed
and the epoch; a ``BatchPlan`` cuts it into steps. Without ``drop_last`` the last
batch is partial: it is padded to the batch size and masked, so its update is the mean
over exactly the remaining examples (N=1050, batch 100: 11 updates, the last over 50).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import check_positive_int
from .errors import InputError

__all__ = [
    "BatchPlan",
    "HostData",
    "as_dataset",
    "device_dtype",
    "example_of",
    "num_examples",
    "split",
    "epoch_order",
    "batch_indices",
    "host_batch_indices",
    "take",
]

PyTree = Any


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    """How one epoch of ``num_examples`` is cut into batches of ``batch_size``.

    Example:
        >>> plan = BatchPlan(num_examples=1050, batch_size=100)
        >>> plan.steps_per_epoch, plan.last_batch_size
        (11, 50)
        >>> BatchPlan(1050, 100, drop_last=True).steps_per_epoch
        10
    """

    num_examples: int
    batch_size: int
    drop_last: bool = False

    def __post_init__(self):
        check_positive_int(
            "batch_size", self.batch_size, at_most=self.num_examples, what="training examples"
        )

    @property
    def steps_per_epoch(self) -> int:
        if self.drop_last:
            return self.num_examples // self.batch_size
        return math.ceil(self.num_examples / self.batch_size)

    @property
    def examples_per_epoch(self) -> int:
        if self.drop_last:
            return self.steps_per_epoch * self.batch_size
        return self.num_examples

    @property
    def last_batch_size(self) -> int:
        return self.examples_per_epoch - (self.steps_per_epoch - 1) * self.batch_size


def num_examples(data: PyTree) -> int:
    """The length of the shared leading axis; refuses leaves that disagree."""
    if isinstance(data, HostData):
        return data.num_examples
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise InputError("the dataset is empty: expected a pytree of arrays, got no leaves")
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in leaves}
    if None in sizes or len(sizes) != 1:
        shapes = jax.tree.map(np.shape, data)
        raise InputError(f"dataset leaves must share a leading example axis; got shapes {shapes}")
    return int(sizes.pop())


def device_dtype(dtype: Any, float_dtype: Any | None = None) -> np.dtype:
    """The dtype a leaf takes on the device: floating leaves become ``float_dtype``
    (default: JAX's default float, float32 unless x64 is on), 64-bit integers int32;
    other integer and boolean leaves (labels) keep their type."""
    dtype = np.dtype(dtype)
    if jnp.issubdtype(dtype, jnp.floating):
        return np.dtype(float_dtype or jnp.result_type(float))
    if jnp.issubdtype(dtype, jnp.integer) and dtype.itemsize == 8:
        return np.dtype(jnp.int32)
    return dtype


def example_of(data: PyTree) -> PyTree:
    """One example's shapes and device dtypes (``jax.ShapeDtypeStruct`` leaves), of device
    data or ``HostData``."""
    if isinstance(data, HostData):
        return data.example
    return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype), data)


def as_dataset(data: PyTree, dtype: Any | None = None) -> PyTree:
    """Check the example axis and place every leaf on the default device once.

    Leaves take ``device_dtype`` (floats as ``dtype``, default JAX's default float).
    """
    num_examples(data)

    def place(leaf):
        leaf = np.asarray(leaf) if not isinstance(leaf, jax.Array) else leaf
        return jax.device_put(leaf.astype(device_dtype(leaf.dtype, dtype)))

    return jax.tree.map(place, data)


# Default bytes of one window of batches on the device (two are held: the one training
# and the next, put while it trains).
WINDOW_BYTES = 64 * 2**20
# HostData.digest reads at most this many bytes, in this many runs of examples.
DIGEST_BYTES = 64 * 2**20
DIGEST_SPANS = 64


class HostData:
    """Training data kept in host memory and streamed to the device in windows of steps.

    For a training set larger than the device's memory: ``jaxgd.sweep(problem,
    jaxgd.HostData(...), ...)`` keeps it on the host (memory-mapped files are read as
    the batches are gathered) and puts on the device only a window of steps' batches at
    a time, the next window while the current one trains. The epochs' orders and
    batches are those of the same arrays given as device data, so the results are too.

    Args:
        arrays: a pytree of arrays with a shared leading example axis (NumPy arrays,
            ``np.memmap`` included), or of paths of ``.npy`` files, which are
            memory-mapped read-only (``jaxgd.datafiles.load_npy``).
        window_steps: steps whose batches go to the device together (default: as many
            as fit ``window_bytes``, at most an epoch).
        window_bytes: the cap on one window's bytes on the device (default 64 MiB; a
            window of a sweep that measures the gradient noise widens to whole groups of
            measured steps, ``steps_per_window``).
        rows: only these examples (positions along the example axis), e.g. the training
            part of a ``split``.

    Example:
        >>> import numpy as np
        >>> data = HostData({"x": np.zeros((10, 3)), "y": np.arange(10)}, window_steps=2)
        >>> data.num_examples, data.example["x"].shape
        (10, (3,))
    """

    def __init__(
        self,
        arrays: PyTree,
        *,
        window_steps: int | None = None,
        window_bytes: int = WINDOW_BYTES,
        rows: np.ndarray | None = None,
    ):
        from .datafiles import load_npy

        def open_leaf(path, leaf):
            if isinstance(leaf, (str, os.PathLike)):
                return load_npy(leaf)
            if isinstance(leaf, np.ndarray):
                return leaf
            raise InputError(
                f"HostData leaf {jax.tree_util.keystr(path) or '(the data itself)'} is a "
                f"{type(leaf).__name__}: expected a NumPy array (np.memmap included) or the "
                "path of a .npy file; device arrays are device data already, pass them "
                "without HostData"
            )

        if window_steps is not None:
            check_positive_int("window_steps", window_steps)
        check_positive_int("window_bytes", window_bytes)
        self.arrays = jax.tree_util.tree_map_with_path(
            open_leaf, arrays, is_leaf=lambda leaf: isinstance(leaf, (str, os.PathLike))
        )
        self.window_steps = window_steps
        self.window_bytes = int(window_bytes)
        self.rows = None if rows is None else np.asarray(rows, np.int64)
        if not jax.tree.leaves(self.arrays):
            raise InputError("HostData has no arrays: expected a pytree of arrays or .npy paths")

    @property
    def num_examples(self) -> int:
        """Examples it holds (those of ``rows`` if it is a subset)."""
        if self.rows is not None:
            return int(self.rows.size)
        return num_examples(self.arrays)

    @property
    def example(self) -> PyTree:
        """One example's shapes and device dtypes."""
        return jax.tree.map(
            lambda leaf: jax.ShapeDtypeStruct(leaf.shape[1:], device_dtype(leaf.dtype)),
            self.arrays,
        )

    @property
    def example_bytes(self) -> int:
        """Bytes of one example on the device."""
        return sum(
            math.prod(leaf.shape) * leaf.dtype.itemsize for leaf in jax.tree.leaves(self.example)
        )

    def steps_per_window(self, plan: BatchPlan, seeds: int, noise_every: int = 1) -> int:
        """Steps per window: ``window_steps``, else as many steps of ``seeds`` batches
        (and their masks) as fit ``window_bytes``, at most an epoch; then widened to a
        multiple of ``noise_every`` (the steps between gradient-noise measurements,
        ``core.step.noise_every``) unless it is the whole epoch, so that a window starts
        where a measurement group does, and to at least two groups (``windows``)."""
        steps = plan.steps_per_epoch
        if self.window_steps is not None:
            size = min(self.window_steps, steps)
        else:
            size = max(1, min(steps, self.window_bytes // self.step_nbytes(plan, seeds)))
        if size < steps:
            size = min(steps, noise_every * max(2, -(-size // noise_every)))
        return size

    def windows(self, plan: BatchPlan, seeds: int, noise_every: int = 1) -> list[tuple[int, int]]:
        """``(first step, steps)`` of each window of an epoch: ``steps_per_window`` steps,
        the epoch's rest in the last, and a last of one whole group (with or without a
        rest) joined to the one before.

        Why no window of one group: the window program scans the groups, and XLA drops a
        loop of one trip, so that the step's fusions read the batch positions and masks as
        plain arguments rather than slices at the loop's counter; LLVM then vectorized
        the batch sums another way than in the grouped chunk's loop over the epoch
        (1 ulp apart). Two trips or more keep the loop, as the epoch's has; an epoch of
        one group is one window, as it is one trip on the device."""
        steps = plan.steps_per_epoch
        size = self.steps_per_window(plan, seeds, noise_every)
        firsts = list(range(0, steps, size))
        if len(firsts) > 1 and (steps - firsts[-1]) // noise_every == 1:
            firsts.pop()
        return [(first, end - first) for first, end in zip(firsts, firsts[1:] + [steps])]

    def step_nbytes(self, plan: BatchPlan, seeds: int) -> int:
        """Bytes of one step's batches on the device: ``seeds`` batches, their examples'
        positions in the window (int32) and their masks."""
        return seeds * plan.batch_size * (self.example_bytes + 4 + 1) + 4

    def window_nbytes(self, plan: BatchPlan, seeds: int, noise_every: int = 1) -> int:
        """Bytes of the widest window on the device."""
        widest = max(steps for _, steps in self.windows(plan, seeds, noise_every))
        return widest * self.step_nbytes(plan, seeds)

    def gather(self, indices: np.ndarray) -> PyTree:
        """Examples ``indices`` (any shape) as device-dtype NumPy arrays of shape
        ``indices.shape + example shape``, read from the arrays (fancy indexing)."""
        indices = np.asarray(indices)
        flat = indices.reshape(-1)
        if self.rows is not None:
            flat = self.rows[flat]

        def one(leaf):
            values = np.asarray(leaf[flat])
            values = values.astype(device_dtype(values.dtype), copy=False)
            return values.reshape(indices.shape + leaf.shape[1:])

        return jax.tree.map(one, self.arrays)

    def subset(self, rows: np.ndarray) -> HostData:
        """The examples ``rows`` (positions in this data), still on the host."""
        rows = np.asarray(rows, np.int64)
        if self.rows is not None:
            rows = self.rows[rows]
        return HostData(
            self.arrays, window_steps=self.window_steps, window_bytes=self.window_bytes, rows=rows
        )

    def blocks(
        self, examples: int = 2**16, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[int, PyTree]]:
        """``(first example, arrays)`` of consecutive blocks of ``examples`` rows in memory,
        as stored (dtypes unchanged), from ``start`` to ``stop`` (default: every example):
        for checks and digests that read the set in order."""
        stop = self.num_examples if stop is None else stop
        for first in range(start, stop, examples):
            last = min(first + examples, stop)
            rows = slice(first, last) if self.rows is None else self.rows[first:last]
            yield first, jax.tree.map(lambda leaf, rows=rows: np.asarray(leaf[rows]), self.arrays)

    def digest(self, max_bytes: int = DIGEST_BYTES) -> str:
        """SHA-256 (hex) of the examples, for checkpoints' fingerprints: every leaf's path,
        stored dtype and example shape, the example count, and the bytes of every example
        when they total at most ``max_bytes``; of a larger set, of ``DIGEST_SPANS`` evenly
        spaced runs of consecutive examples totalling about ``max_bytes`` (the first and
        the last examples among them), read sequentially. A sampled digest sees any change
        of shape, dtype or count and of the sampled rows, not of rows between the runs:
        hashing a set larger than memory whole would take minutes at every start."""
        leaves = jax.tree_util.tree_leaves_with_path(self.arrays)
        digest = hashlib.sha256(f"HostData|{self.num_examples}|".encode())
        row_bytes = 0
        for path, leaf in leaves:
            name = jax.tree_util.keystr(path)
            digest.update(f"{name}|{leaf.dtype.str}|{leaf.shape[1:]}|".encode())
            row_bytes += leaf.dtype.itemsize * math.prod(leaf.shape[1:])
        total = self.num_examples
        if total * row_bytes <= max_bytes:
            spans = [(0, total)]
        else:
            run = max(1, max_bytes // (DIGEST_SPANS * max(1, row_bytes)))
            starts = np.unique(np.linspace(0, total - run, DIGEST_SPANS).astype(np.int64))
            spans = [(int(first), int(first) + run) for first in starts]
        for first, last in spans:
            for _, block in self.blocks(start=first, stop=last):
                for leaf in jax.tree.leaves(block):
                    digest.update(np.ascontiguousarray(leaf).tobytes())
        return digest.hexdigest()

    def __repr__(self) -> str:
        shapes = jax.tree.map(lambda leaf: tuple(leaf.shape), self.arrays)
        return f"HostData({shapes}, num_examples={self.num_examples})"


def split(data: PyTree, fraction: float, seed: int = 0) -> tuple[PyTree, PyTree]:
    """Random ``(train, validation)`` split holding out ``fraction`` of the examples.

    The permutation comes from ``numpy.random.default_rng(seed)``, so the split does not
    depend on the JAX version or device.
    """
    n = num_examples(data)
    if not 0.0 < fraction < 1.0:
        raise InputError(f"validation fraction={fraction!r}: must lie strictly between 0 and 1")
    held_out = round(n * fraction)
    if not 1 <= held_out <= n - 1:
        raise InputError(
            f"validation fraction={fraction} of {n} examples leaves {held_out} for validation "
            f"and {n - held_out} for training; both must be at least 1"
        )
    order = np.random.default_rng(seed).permutation(n)
    train_idx, val_idx = np.sort(order[held_out:]), np.sort(order[:held_out])
    if isinstance(data, HostData):  # training stays on the host, validation is loaded
        return data.subset(train_idx), data.gather(val_idx)
    return (
        jax.tree.map(lambda x: np.asarray(x)[train_idx], data),
        jax.tree.map(lambda x: np.asarray(x)[val_idx], data),
    )


def epoch_order(key: jax.Array, num_examples: int, shuffle: bool = True) -> jax.Array:
    """The order in which one epoch visits the examples: a permutation, or 0..N-1."""
    if shuffle:
        return jax.random.permutation(key, num_examples).astype(jnp.int32)
    return jnp.arange(num_examples, dtype=jnp.int32)


def batch_indices(plan: BatchPlan, order: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Cut an epoch's ``order`` into ``[steps, batch_size]`` indices and a mask.

    Padding slots point at example 0 (any valid index works) and are masked out.
    ``host_batch_indices`` is the same rule on the host, for some of the steps.
    """
    used = plan.steps_per_epoch * plan.batch_size
    if used > plan.num_examples:
        order = jnp.concatenate([order, jnp.zeros(used - plan.num_examples, order.dtype)])
    mask = jnp.arange(used) < plan.examples_per_epoch
    shape = (plan.steps_per_epoch, plan.batch_size)
    return order[:used].reshape(shape), mask.reshape(shape)


def host_batch_indices(
    plan: BatchPlan, orders: np.ndarray, first_step: int, steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """``batch_indices`` of steps ``first_step .. first_step + steps - 1`` on the host, for
    each seed's order: ``orders`` ``[U, N]`` to indices ``[steps, U, B]`` and a mask
    ``[steps, U, B]`` (padding slots at example 0, masked out)."""
    positions = np.arange(first_step * plan.batch_size, (first_step + steps) * plan.batch_size)
    positions = positions.reshape(steps, plan.batch_size)
    inside = positions < plan.num_examples
    indices = np.where(inside, orders[:, np.where(inside, positions, 0)], 0)
    mask = positions < plan.examples_per_epoch
    shape = (steps, orders.shape[0], plan.batch_size)
    return np.ascontiguousarray(indices.swapaxes(0, 1)), np.broadcast_to(mask[:, None], shape)


def take(data: PyTree, indices: jax.Array) -> PyTree:
    """Gather examples: every leaf indexed along its example axis."""
    return jax.tree.map(lambda leaf: jnp.take(leaf, indices, axis=0), data)
