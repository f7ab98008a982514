"""Configs on a ``[U, M]`` grid of slots by seed, where the slots live, and the one way
back to config order on the host.

The configs that share a seed share its data order, so a step gathers its batch once
per seed (``U`` rows) and the ``M`` configs of the row read it. A seed with fewer than M
configs repeats its first config in the spare slots; their results are never read.

The slot axis M is split over the devices of a mesh (``Placement``): M is padded to a
multiple of the device count, each device trains ``M / devices`` configs of every seed,
and the data, the seeds and the shuffle keys are replicated. Results come back to the host
through ``to_host`` alone, which gathers from every process when a sweep spans several.

A mesh with an ``"examples"`` axis also splits the examples (``ExampleSplit``): the
training set's example axis and every batch's, so that each device stores 1/n of the
training data and computes the losses and gradients of 1/n of each batch, and XLA's SPMD
partitioner sums the batch's gradient over the axis (an all-reduce); a batch is padded
with masked examples to a multiple of n.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from ..columns import factorize, group_members

__all__ = [
    "CONFIG_AXIS",
    "EXAMPLE_AXIS",
    "ExampleSplit",
    "Placement",
    "SeedLayout",
    "bucket",
    "bucket_width",
    "device_bytes",
    "host_take",
    "put_like",
    "to_host",
]

PyTree = Any

CONFIG_AXIS = "configs"
EXAMPLE_AXIS = "examples"


def to_host(tree: Any) -> Any:
    """Every array leaf of ``tree`` as a NumPy array on this host, whole (PRNG keys as
    their key data): the one place device arrays are read back, for results, metrics and
    checkpoints. An array spread over several processes' devices is gathered from all of
    them (``multihost_utils.process_allgather``; every process must call)."""

    def one(leaf):
        if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return np.asarray(leaf)

    return jax.tree.map(one, tree)


def _put(leaf: Any, sharding: NamedSharding) -> jax.Array:
    """``leaf`` (the same value on every process) placed with ``sharding``."""
    if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        data = _put(jax.random.key_data(leaf), _widen(sharding, leaf))
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
    if sharding.is_fully_addressable or isinstance(leaf, jax.Array):
        return jax.device_put(leaf, sharding)  # a global array is resharded in place
    host = np.asarray(leaf)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def put_like(value: Any, like: jax.Array) -> jax.Array:
    """``value`` (host data, or keys) placed as ``like`` is: restored state goes back to
    the devices, and the split, it was read from."""
    return _put(value, like.sharding)


def _widen(sharding: NamedSharding, keys: jax.Array) -> NamedSharding:
    """The sharding of a key array's data: its trailing key-data axes unsplit."""
    spec = tuple(sharding.spec) + (None,) * (jax.random.key_data(keys).ndim - len(sharding.spec))
    return NamedSharding(sharding.mesh, PartitionSpec(*spec))


@dataclasses.dataclass(frozen=True)
class ExampleSplit:
    """A batch's example axis split over the mesh axes ``axes`` (n devices in all).

    Each device gathers and computes 1/n of every batch; the step's sums over the batch
    (loss, gradient) are then partial sums that XLA adds over the axis. Hashable: part of
    a program's static settings.
    """

    mesh: Mesh
    axes: tuple[str, ...]

    @property
    def count(self) -> int:
        """n: the devices one batch is split over."""
        return math.prod(self.mesh.shape[name] for name in self.axes)

    def width(self, batch_size: int, pairs: bool = False) -> int:
        """A batch's width on the mesh: ``batch_size`` rounded up to a multiple of n, or
        with ``pairs`` of 2n, so that each device's share splits into the batch's even
        and odd positions (``core.step.half_sums``) without moving examples between
        devices."""
        multiple = self.count * (2 if pairs else 1)
        return -(-int(batch_size) // multiple) * multiple

    def sharding(self, ndim: int, axis: int) -> NamedSharding:
        """Of an array whose example axis is ``axis``: that axis split, the rest not."""
        spec = [None] * ndim
        spec[axis] = self.axes
        return NamedSharding(self.mesh, PartitionSpec(*spec))

    def pad(self, indices: Any, mask: Any, width: int) -> tuple[Any, Any]:
        """Batch ``indices`` and ``mask`` ``[..., B]`` widened to ``width`` with masked
        examples (index 0, as ``data.batch_indices`` pads a partial batch)."""
        extra = width - indices.shape[-1]
        if not extra:
            return indices, mask
        xp = np if isinstance(indices, np.ndarray) else jnp
        widths = [(0, 0)] * (indices.ndim - 1) + [(0, extra)]
        return xp.pad(indices, widths), xp.pad(mask, widths)

    def constrain(self, tree: Any, axis: int) -> Any:
        """Inside a program: leaves whose example axis is ``axis`` split over the mesh."""
        return jax.tree.map(
            lambda leaf: jax.lax.with_sharding_constraint(leaf, self.sharding(leaf.ndim, axis)),
            tree,
        )

    def put(self, tree: Any, axis: int = 0) -> Any:
        """Host leaves (example axis ``axis``, a multiple of n) placed split over it."""
        return jax.tree.map(lambda leaf: _put(leaf, self.sharding(np.ndim(leaf), axis)), tree)


class Placement:
    """Where a sweep's arrays live: slot axis M split over a mesh, everything else
    replicated on it, or with an ``"examples"`` axis, the training examples split too.

    Args:
        mesh: a ``jax.sharding.Mesh``; its axis named ``"configs"`` splits the slots
            (the others then replicate), or, if it has none, all its axes but
            ``"examples"`` together. An axis named ``"examples"`` splits the training
            set and every batch along their example axis (``ExampleSplit``).
        devices: build a one-axis ``"configs"`` mesh of these devices instead.
        Default: every device of the default backend (of every process).

    Attributes:
        count: the devices the slots are split over.
        examples: the split of the example axis, or None (data copied to every device).
    """

    def __init__(self, mesh: Mesh | None = None, devices: Sequence[jax.Device] | None = None):
        if mesh is None:
            devices = jax.devices() if devices is None else list(devices)
            mesh = Mesh(np.array(devices), (CONFIG_AXIS,))
        # The programs leave their intermediates' split to XLA's propagation from the
        # arguments; explicit axes (jax.make_mesh's default) would make every gather from
        # example-split data name its output's split.
        mesh = Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * mesh.devices.ndim)
        self.mesh = mesh
        names = mesh.axis_names
        example_axes = (EXAMPLE_AXIS,) if EXAMPLE_AXIS in names else ()
        if CONFIG_AXIS in names:
            self.axes = (CONFIG_AXIS,)
        else:
            self.axes = tuple(name for name in names if name not in example_axes)
        self.count = math.prod(mesh.shape[name] for name in self.axes)
        self.examples = ExampleSplit(mesh, example_axes) if example_axes else None

    def width(self, most: int) -> int:
        """Slots per row: ``most`` rounded up to a multiple of the device count."""
        return -(-most // self.count) * self.count

    def sharding(self, ndim: int, axis: int = 0) -> NamedSharding:
        """Of an array whose slot axes ``[U, M]`` start at ``axis``: M split, the rest not."""
        spec = [None] * ndim
        spec[axis + 1] = self.axes or None
        return NamedSharding(self.mesh, PartitionSpec(*spec))

    def slots(self, tree: Any, axis: int = 0) -> Any:
        """Leaves with slot axes ``[U, M]`` at ``axis`` placed with M split."""
        return jax.tree.map(lambda leaf: _put(leaf, self.sharding(np.ndim(leaf), axis)), tree)

    def replicated(self, tree: Any) -> Any:
        """Leaves copied whole to every device of the mesh."""
        return jax.tree.map(
            lambda leaf: _put(leaf, NamedSharding(self.mesh, PartitionSpec())), tree
        )

    def training_data(self, tree: Any) -> Any:
        """The training set on the mesh: copied whole to every device, or with an
        ``"examples"`` axis split along its example axis, each device holding 1/n of it
        (the last rows padded with copies of example 0 to a multiple of n; no batch index
        reaches them)."""
        if self.examples is None:
            return self.replicated(tree)
        count = self.examples.count

        def padded(leaf):
            leaf = np.asarray(leaf)
            extra = -leaf.shape[0] % count
            return np.concatenate([leaf, np.repeat(leaf[:1], extra, 0)]) if extra else leaf

        return self.examples.put(jax.tree.map(padded, tree))


def device_bytes(tree: Any) -> int:
    """Bytes each device holds of ``tree``'s arrays or ``jax.ShapeDtypeStruct``s (a split
    one: one shard's; without a sharding: the whole)."""
    total = 0
    for leaf in jax.tree.leaves(tree):
        sharding = getattr(leaf, "sharding", None)
        shape = leaf.shape if sharding is None else sharding.shard_shape(leaf.shape)
        total += math.prod(shape) * np.dtype(leaf.dtype).itemsize
    return total


def bucket(width: int) -> int:
    """The power of two at or above ``width``: rebuilt programs take these widths, so a
    few compiled shapes serve every size a sweep shrinks through."""
    return 1 << max(0, int(width) - 1).bit_length()


def bucket_width(seeds: Sequence[int]) -> int:
    """Slots per row for these configs' seeds, rounded up to a power of two (``bucket``)."""
    return bucket(max(np.unique(np.asarray(seeds), return_counts=True)[1]))


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
        placement: where the slots live (default: every device); M is rounded up to a
            multiple of its device count.

    Attributes:
        unique_seeds: ``[U]`` the seeds of the rows, in order of first appearance.
        slots: ``[U, M]`` the config position held by each slot; shape: ``(U, M)``.
        rows, cols: ``[K_p]`` the slot that holds each config (the first, if repeated).
    """

    def __init__(
        self, seeds: Sequence[int], width: int | None = None, placement: Placement | None = None
    ):
        self.placement = Placement() if placement is None else placement
        seeds = np.asarray(seeds, np.int64).reshape(-1)
        if seeds.size > 1 and (seeds[1:] >= seeds[:-1]).all():
            # sorted seeds (a grid with seed as its first axis): each row is a run of
            # configs, found without sorting
            starts = np.concatenate([[0], np.flatnonzero(seeds[1:] != seeds[:-1]) + 1])
            counts = np.diff(np.append(starts, seeds.size))
            unique = seeds[starts]
            self._rows = self._cols = None  # built when first asked for (``rows``)
        else:
            unique, self._rows = factorize(seeds)  # rows in order of first appearance
            members = group_members(self._rows, unique.size)  # each row's configs, in order
            counts = np.array([m.size for m in members], np.int64)
            starts = np.array([m[0] for m in members], np.int64)
            self._cols = np.empty(seeds.size, np.int64)
            ordered = np.concatenate(members)
            self._cols[ordered] = np.arange(seeds.size) - np.repeat(
                np.cumsum(counts) - counts, counts
            )
        self._starts, self._counts = starts, counts
        most = int(counts.max())
        width = most if width is None else width
        if width < most:
            raise ValueError(f"width={width}: a seed has {most} configs")
        width = self.placement.width(width)
        self.unique_seeds = unique.astype(np.int32)
        # configs already in row-major slot order (sorted seeds, no padding): moving to
        # and from the slots is a reshape, not a gather
        self.in_order = bool(
            (counts == width).all() and (starts == np.arange(0, seeds.size, width)).all()
        )
        self.shape = (unique.size, width)
        self._slots = None
        if not self.in_order:
            # spare slots repeat their row's first config
            self._slots = np.repeat(starts[:, None], width, 1)
            self._slots[self.rows, self.cols] = np.arange(seeds.size)

    # In order, a million configs' positions are arange(K) reshaped: built only if asked.
    @property
    def slots(self) -> np.ndarray:
        if self._slots is None:
            self._slots = np.arange(math.prod(self.shape)).reshape(self.shape)
        return self._slots

    @property
    def rows(self) -> np.ndarray:
        if self._rows is None:
            self._rows = np.repeat(np.arange(self._starts.size), self._counts)
        return self._rows

    @property
    def cols(self) -> np.ndarray:
        if self._cols is None:
            self._cols = np.arange(self._counts.sum()) - np.repeat(self._starts, self._counts)
        return self._cols

    def grid(self, values: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
        """Per-config scalars ``{name: [K_p]}`` as ``{name: [U, M]}`` device arrays."""
        dtype = jnp.result_type(float)
        return self.put(
            {
                name: self.to_slots(np.asarray(column)).astype(dtype)
                for name, column in values.items()
            }
        )

    def put(self, slotted: Any, axis: int = 0) -> Any:
        """``[..., U, M, ...]`` leaves (slot axes at ``axis``) on the devices, M split."""
        return self.placement.slots(slotted, axis)

    def put_rows(self, per_row: Any) -> Any:
        """``[U, ...]`` leaves (seeds, shuffle keys) on every device."""
        return self.placement.replicated(per_row)

    def to_slots(self, per_config: Any) -> Any:
        """``[K_p, ...]`` (array or pytree of arrays) to ``[U, M, ...]``."""
        if self.in_order:
            return jax.tree.map(lambda leaf: leaf.reshape(self.shape + leaf.shape[1:]), per_config)
        return jax.tree.map(lambda leaf: leaf[self.slots], per_config)

    def unpack(self, slotted: Any, axis: int = 0) -> Any:
        """``[..., U, M, ...]`` (the slot axes at ``axis``, ``axis + 1``) to
        ``[..., K_p, ...]`` in the program's config order: the one inverse of the layout."""

        def one(leaf):
            leaf = np.moveaxis(to_host(leaf), (axis, axis + 1), (0, 1))
            if self.in_order:
                configs = leaf.reshape((-1,) + leaf.shape[2:])
            else:
                configs = leaf[self.rows, self.cols]
            return np.moveaxis(configs, 0, axis)

        return jax.tree.map(one, slotted)
