"""Datasets and batch plans.

A dataset is a pytree of arrays sharing a leading example axis, placed on the device
once. Each epoch visits a permutation of the examples drawn with ``jax.random`` inside
the compiled program; a ``BatchPlan`` cuts it into steps. Without ``drop_last`` the last
batch is partial: it is padded to the batch size and masked, so its update is the mean
over exactly the remaining examples (N=1050, batch 100: 11 updates, the last over 50).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import check_positive_int
from .errors import InputError

__all__ = [
    "BatchPlan",
    "as_dataset",
    "num_examples",
    "split",
    "epoch_order",
    "batch_indices",
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
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise InputError("the dataset is empty: expected a pytree of arrays, got no leaves")
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in leaves}
    if None in sizes or len(sizes) != 1:
        shapes = jax.tree.map(np.shape, data)
        raise InputError(f"dataset leaves must share a leading example axis; got shapes {shapes}")
    return int(sizes.pop())


def as_dataset(data: PyTree, dtype: Any | None = None) -> PyTree:
    """Check the example axis and place every leaf on the default device once.

    Floating leaves are cast to ``dtype`` (default: JAX's default float, float32
    unless x64 is on); integer and boolean leaves (labels) keep their type.
    """
    num_examples(data)
    float_dtype = dtype or jnp.result_type(float)

    def place(leaf):
        leaf = np.asarray(leaf) if not isinstance(leaf, jax.Array) else leaf
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            leaf = leaf.astype(float_dtype)
        elif jnp.issubdtype(leaf.dtype, jnp.integer) and leaf.dtype.itemsize == 8:
            leaf = leaf.astype(jnp.int32)
        return jax.device_put(leaf)

    return jax.tree.map(place, data)


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
    """
    used = plan.steps_per_epoch * plan.batch_size
    if used > plan.num_examples:
        order = jnp.concatenate([order, jnp.zeros(used - plan.num_examples, order.dtype)])
    mask = jnp.arange(used) < plan.examples_per_epoch
    shape = (plan.steps_per_epoch, plan.batch_size)
    return order[:used].reshape(shape), mask.reshape(shape)


def take(data: PyTree, indices: jax.Array) -> PyTree:
    """Gather examples: every leaf indexed along its example axis."""
    return jax.tree.map(lambda leaf: jnp.take(leaf, indices, axis=0), data)
