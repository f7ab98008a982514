"""What the run loop hands every callback after each chunk, and the callback protocol.

The layout is the same for every strategy: arrays are indexed by config in the order of
the space's configs, never by an internal slot layout.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["ChunkReport", "Callback", "RUNNING", "DIVERGED", "STOPPED"]

# Status names, as in ``ChunkReport.status`` and ``SweepResult.status``.
RUNNING, DIVERGED, STOPPED = "running", "diverged", "stopped"


@dataclasses.dataclass(frozen=True)
class ChunkReport:
    """The state of the sweep after a chunk, in the order of the space's configs.

    Attributes:
        epochs_done: epochs run so far by the sweep (a stopped config ran fewer: see
            ``stopped_epoch``).
        epochs: epochs the sweep will run in all.
        history: ``{metric: [K, epochs_done]}``, as ``SweepResult.history`` (train_loss,
            val_loss, val_<metric>, updates, batch_size, ...). NaN after the last epoch of a
            stopped config.
        examples_seen: ``[K]`` examples each config has trained on.
        status: ``[K]`` "running", "diverged" or "stopped".
        stopped_epoch: ``[K]`` epochs a stopped config trained for; -1 otherwise.
        seconds: wall seconds since the sweep started, compiles included.
        configs: the configs' rows (hyperparameters, optimizer, batch_size, seed).
    """

    epochs_done: int
    epochs: int
    history: dict[str, np.ndarray]
    examples_seen: np.ndarray
    status: np.ndarray
    stopped_epoch: np.ndarray
    seconds: float
    configs: list[dict[str, Any]]

    @property
    def running(self) -> np.ndarray:
        """``[K]`` bool: configs still training."""
        return self.status == RUNNING


class Callback:
    """Base class of sweep callbacks (Keras and Lightning style): override what you need.

    The run loop calls, in order: ``on_sweep_begin`` before anything compiles,
    ``on_compile`` after each program compiles, ``on_chunk`` after every chunk (all
    programs through the same epoch), and ``on_sweep_end`` at the end, also when the sweep
    fails (``error`` is then the exception; it propagates after every callback has seen
    it). A resumed sweep calls ``on_sweep_begin`` too, then ``load_state_dict`` with the
    state the checkpoint saved.

    ``on_chunk`` may return a ``[K]`` boolean mask: False stops that config for good (its
    parameters freeze; its history is NaN from the next epoch on). None keeps all.
    Callbacks that never stop configs set ``stops_configs = False``: when no callback can
    stop, the loop reads a chunk's metrics while the next chunk runs.
    """

    stops_configs: bool = True

    def on_sweep_begin(self, configs: list[dict[str, Any]], epochs: int) -> None:
        """Before anything compiles."""

    def on_compile(self, program: str, seconds: float) -> None:
        """After a program compiled (``program`` names it, e.g. "grouped batch_size=32")."""

    def on_chunk(self, report: ChunkReport) -> np.ndarray | None:
        """After each chunk; return a ``[K]`` keep-training mask, or None."""
        return None

    def on_sweep_end(self, report: ChunkReport | None, error: BaseException | None) -> None:
        """At the end: the last report (None if no chunk ran) and the error, if any."""

    def state_dict(self) -> dict[str, Any]:
        """What the callback has learned so far (lists, numbers, strings): a checkpoint
        saves it and a resumed sweep hands it to ``load_state_dict``. A callback whose
        decisions depend on earlier reports must override both (``EarlyStopping`` and
        ``SuccessiveHalving`` do); the default is for callbacks without such state."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a ``state_dict``."""
