"""``SweepOptions``: how a sweep runs (never what it computes), in one frozen object.

Every field changes speed or memory only: a config's results do not depend on them (to
float rounding; bitwise where the arithmetic is the same). A TOML file's ``[options]``
table maps onto these fields one to one.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import jax

from ._checks import check_positive_int
from .errors import InputError

__all__ = ["SweepOptions"]

_STRATEGIES = ("auto", "grouped", "nested", "accumulate", "streamed")


def _positive_int(name: str, value, allow_none: bool = False) -> None:
    if not (value is None and allow_none):
        check_positive_int(name, value)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SweepOptions:
    """Engine settings of ``jaxgd.sweep``.

    Attributes:
        strategy: how configs of different batch sizes run: ``"grouped"`` (one program per
            batch size, interleaved chunk by chunk), ``"nested"`` (one program, an inner
            scan per batch size), ``"accumulate"`` (one program, gradient accumulation over
            micro-batches; needed by the norm test), ``"streamed"`` (grouped, with the
            training batches streamed from host memory: what ``jaxgd.HostData`` runs) or
            ``"auto"`` (see ``jaxgd.strategies.choose``; ``"streamed"`` for ``HostData``).
        epochs_per_chunk: epochs per compiled call; callbacks run between calls, so a
            config is stopped at a chunk boundary. Must divide the sweep's epochs.
        eval_batch_size: examples per evaluation batch.
        config_block: run the configs sharing a seed in blocks of this many (``lax.map``)
            rather than all in one vmap; ``"auto"`` blocks on the CPU when a config's
            activations per step are large (``jaxgd.core.blocks``), None never.
        micro_batch_size: the accumulate strategy's micro-batch (default: the gcd of all
            batch sizes).
        max_batch_size: the cap of the adaptive norm test (default: the training set).
        rebuild: once half of a program's configs have been stopped by a callback, rebuild
            it with the others alone, so that stopped configs stop costing compute (its
            widths are powers of two, each compiled once per process). ``"auto"``: only
            when the run time it saves (seconds per chunk so far x chunks left x slots
            dropped) exceeds twice a compile (none when cached); True: always; False:
            never (results then stay bitwise those of the sweep without callbacks; a
            rebuilt program's configs agree to float rounding, which a chaotic
            trajectory can amplify).
        checkpoint_every: with ``sweep(checkpoint_dir=...)``, write a checkpoint after
            every this many chunks (and after the last).
        checkpoint_seconds: instead, write at the first chunk boundary at least this
            many seconds after the last checkpoint (None: count chunks).
        checkpoint_format: "orbax" (``orbax.checkpoint.CheckpointManager``), "npz" (a
            plain ``.npz`` and JSON pair per step) or "auto" (orbax when installed).
        devices: the devices the config axis is split over (default: every device of the
            default backend, of every process); each trains its share of the configs, the
            data is copied to each. K not divisible by their count is padded with spare
            slots whose results are never read.
        mesh: a ``jax.sharding.Mesh`` instead of ``devices``: its axis named ``"configs"``
            splits the configs (the others replicate), or all its axes if none is named so.
            An axis named ``"examples"`` splits the training set and each batch along
            their example axis instead, for batches or data too large for one device
            (grouped and streamed programs; ``jaxgd.core.layout.ExampleSplit``), e.g.
            ``jax.make_mesh((2, 2), ("configs", "examples"))``.
        max_memory: bytes per device a sweep may plan to use; configs that need more run
            in sequential slices that fit (``jaxgd.core.memory``). Default: 90% of the
            device's memory where it reports it, else half the host's memory shared by its
            devices.
        cache_dir: JAX's persistent compilation cache folder, so that a new process
            loads the programs an earlier one compiled: ``"auto"`` (``$JAXGD_CACHE_DIR``,
            else ``$XDG_CACHE_HOME/jaxgd/xla`` or ``~/.cache/jaxgd/xla``), a path, or None
            (off). A folder the user set in ``jax.config`` is left as it is
            (``jaxgd.core.disk_cache``).

    Example:
        >>> import jaxgd
        >>> jaxgd.SweepOptions(strategy="nested", epochs_per_chunk=2).strategy
        'nested'
    """

    strategy: str = "auto"
    epochs_per_chunk: int = 1
    eval_batch_size: int = 1024
    config_block: int | str | None = "auto"
    micro_batch_size: int | None = None
    max_batch_size: int | None = None
    rebuild: bool | str = "auto"
    checkpoint_every: int = 1
    checkpoint_seconds: float | None = None
    checkpoint_format: str = "auto"
    devices: Sequence[jax.Device] | None = None
    mesh: jax.sharding.Mesh | None = None
    max_memory: int | None = None
    cache_dir: str | os.PathLike | None = "auto"

    def __post_init__(self):
        if self.strategy not in _STRATEGIES:
            raise InputError(f"strategy={self.strategy!r}: choose one of {_STRATEGIES}")
        _positive_int("epochs_per_chunk", self.epochs_per_chunk)
        _positive_int("eval_batch_size", self.eval_batch_size)
        _positive_int("micro_batch_size", self.micro_batch_size, allow_none=True)
        _positive_int("max_batch_size", self.max_batch_size, allow_none=True)
        if self.config_block != "auto":
            _positive_int("config_block", self.config_block, allow_none=True)
        _positive_int("checkpoint_every", self.checkpoint_every)
        seconds = self.checkpoint_seconds
        if seconds is not None and (
            isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0
        ):
            raise InputError(
                f"checkpoint_seconds={seconds!r}: must be None or a positive number of seconds"
            )
        if self.checkpoint_format not in ("auto", "orbax", "npz"):
            raise InputError(
                f"checkpoint_format={self.checkpoint_format!r}: choose 'auto', 'orbax' or 'npz'"
            )
        if (
            self.rebuild not in (True, False, "auto")
            or self.rebuild in (0, 1)
            and not isinstance(self.rebuild, bool)
        ):
            raise InputError(f"rebuild={self.rebuild!r}: must be True, False or 'auto'")
        _positive_int("max_memory", self.max_memory, allow_none=True)
        if self.devices is not None:
            devices = tuple(self.devices) if isinstance(self.devices, Sequence) else ()
            if not devices or not all(isinstance(d, jax.Device) for d in devices):
                raise InputError(
                    f"devices={self.devices!r}: must be a non-empty list of jax.Device, e.g. "
                    "jax.devices()[:2]"
                )
            object.__setattr__(self, "devices", devices)
        if self.mesh is not None and not isinstance(self.mesh, jax.sharding.Mesh):
            raise InputError(
                f"mesh={self.mesh!r}: must be a jax.sharding.Mesh, e.g. "
                "jax.make_mesh((jax.device_count(),), ('configs',))"
            )
        if self.mesh is not None and self.devices is not None:
            raise InputError(
                f"devices={self.devices!r} and mesh={self.mesh!r}: give one of them, not both"
            )
        if self.cache_dir is not None and not isinstance(self.cache_dir, (str, os.PathLike)):
            raise InputError(
                f"cache_dir={self.cache_dir!r}: must be a folder path, 'auto' or None (no "
                "persistent compilation cache)"
            )
