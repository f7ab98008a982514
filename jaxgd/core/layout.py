"""Configs on a ``[U, M]`` grid of slots by seed, and the one way back to config order.

The configs that share a seed share its data order, so a step gathers its batch once
per seed (``U`` rows) and the ``M`` configs of the row read it. A seed with fewer than M
configs repeats its first config in the spare slots; their results are never read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["SeedLayout", "bucket", "bucket_width", "host_take", "to_host"]

PyTree = Any


def bucket(width: int) -> int:
    """The power of two at or above ``width``: rebuilt programs take these widths, so a
    few compiled shapes serve every size a sweep shrinks through."""
    return 1 << max(0, int(width) - 1).bit_length()


def bucket_width(seeds: Sequence[int]) -> int:
    """Slots per row for these configs' seeds, rounded up to a power of two (``bucket``)."""
    return bucket(max(np.unique(np.asarray(seeds), return_counts=True)[1]))


def to_host(tree: Any) -> Any:
    """Every array leaf of ``tree`` as a NumPy array on this host (PRNG keys as their
    key data): the one place device arrays are read back for checkpoints and results."""

    def one(leaf):
        if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return np.asarray(jax.random.key_data(leaf))
        return np.asarray(leaf)

    return jax.tree.map(one, tree)


def host_take(tree: Any, *index: np.ndarray) -> Any:
    """``leaf[index]`` for every leaf, gathered on the host.

    Moving configs between programs happens once per rebuild; indexing device arrays
    eagerly would compile a gather for every leaf shape (measured: 150 small compiles,
    3.3 s, per halving sweep), where the host gathers without compiling anything.
    """

    def one(leaf):
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            data = to_host(leaf)[index]
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        return to_host(leaf)[index]

    return jax.tree.map(one, tree)


class SeedLayout:
    """The slots of a program's configs (positions ``0..K_p-1`` in its member list).

    Args:
        seeds: per config, its seed.
        width: slots per row (M); at least the most configs any seed has. Default: that.

    Attributes:
        unique_seeds: ``[U]`` the seeds of the rows, in order of first appearance.
        slots: ``[U, M]`` the config position held by each slot.
        rows, cols: ``[K_p]`` the slot that holds each config (the first, if repeated).
    """

    def __init__(self, seeds: Sequence[int], width: int | None = None):
        seeds = [int(s) for s in seeds]
        unique = list(dict.fromkeys(seeds))
        members = {s: [i for i, seed in enumerate(seeds) if seed == s] for s in unique}
        most = max(len(m) for m in members.values())
        width = most if width is None else width
        if width < most:
            raise ValueError(f"width={width}: a seed has {most} configs")
        self.unique_seeds = np.array(unique, dtype=np.int32)
        self.slots = np.array([m + [m[0]] * (width - len(m)) for m in members.values()])
        self.rows = np.empty(len(seeds), np.int64)
        self.cols = np.empty(len(seeds), np.int64)
        for row, m in enumerate(members.values()):
            self.rows[m] = row
            self.cols[m] = np.arange(len(m))

    def grid(self, values: Sequence[dict[str, float]]) -> dict[str, jax.Array]:
        """Per-config scalars ``[{name: value}]`` as ``{name: [U, M]}`` device arrays."""
        dtype = jnp.result_type(float)
        return {
            name: jnp.asarray(
                np.array([[v[name] for v in row] for row in self.values(values)]), dtype
            )
            for name in values[0]
        }

    def values(self, per_config: Sequence[Any]) -> list[list[Any]]:
        return [[per_config[i] for i in row] for row in self.slots]

    def to_slots(self, per_config: Any) -> Any:
        """``[K_p, ...]`` (array or pytree of arrays) to ``[U, M, ...]``."""
        return jax.tree.map(lambda leaf: leaf[self.slots], per_config)

    def unpack(self, slotted: Any, axis: int = 0) -> Any:
        """``[..., U, M, ...]`` (the slot axes at ``axis``, ``axis + 1``) to
        ``[..., K_p, ...]`` in the program's config order: the one inverse of the layout."""

        def one(leaf):
            leaf = np.moveaxis(np.asarray(leaf), (axis, axis + 1), (0, 1))
            return np.moveaxis(leaf[self.rows, self.cols], 0, axis)

        return jax.tree.map(one, slotted)
