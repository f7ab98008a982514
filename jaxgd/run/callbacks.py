"""Callbacks of the run loop: early stopping, successive halving and a progress display.

Each is host logic only: it reads the ``ChunkReport`` the loop hands it after every chunk
(arrays in the order of the space's configs) and may return a ``[K]`` keep mask. None
knows which strategy or program trains a config.
"""

from __future__ import annotations

import math
import numbers
import sys
from typing import Any, TextIO

import numpy as np

from ..errors import InputError
from .report import DIVERGED, RUNNING, STOPPED, Callback, ChunkReport

__all__ = ["EarlyStopping", "SuccessiveHalving", "Progress"]

_MODES = ("min", "max")


def _check_metric(owner: str, metric: Any) -> str:
    if not isinstance(metric, str) or not metric:
        raise InputError(
            f"{owner}(metric={metric!r}): the metric must be the non-empty name of a recorded "
            "metric, e.g. metric='val_loss' or metric='val_accuracy'"
        )
    return metric


def _check_mode(owner: str, mode: Any) -> str:
    if mode not in _MODES:
        raise InputError(
            f"{owner}(mode={mode!r}): use mode='min' for metrics where lower is better "
            "(losses) or mode='max' for those where higher is better (accuracy)"
        )
    return mode


def _check_integer(owner: str, name: str, value: Any, minimum: int, meaning: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(
            f"{owner}({name}={value!r}): must be an integer >= {minimum} ({meaning}), "
            f"e.g. {name}={max(minimum, 1) + 1}"
        )
    return int(value)


def _metric_history(owner: str, report: ChunkReport, metric: str) -> np.ndarray:
    """``report.history[metric]`` as floats ``[K, epochs_done]``, or a ValueError that
    names the metrics the sweep records."""
    if metric not in report.history:
        raise InputError(
            f"{owner}(metric={metric!r}): the sweep records no {metric!r}; it records "
            f"{sorted(report.history)}. Pass one of those (val_* metrics need "
            "validation=... in jaxgd.sweep)"
        )
    return np.asarray(report.history[metric], dtype=np.float64)


class EarlyStopping(Callback):
    """Stop each config whose metric has not improved for ``patience`` epochs.

    Keras semantics, per config and epoch by epoch (a chunk may hold several epochs, so
    the decision does not depend on the chunk size): with ``best`` the best value so far
    (initially +inf for ``mode="min"``, -inf for ``"max"``), epoch ``e`` improves when

        min: value_e < best - min_delta        max: value_e > best + min_delta

    An improving epoch sets ``best = value_e`` and ``wait = 0``; any other epoch (NaN
    included) sets ``wait += 1``, and once ``wait >= patience`` the config is stopped:
    ``on_chunk`` returns False for it from then on. Only configs whose status is "running"
    are stopped; the mask is True for the others (the loop ignores them). The config
    trains until the end of the chunk in which patience ran out; ``stop_epoch`` records
    the epoch that decided it.

    Args:
        metric: the recorded metric to watch (a key of ``ChunkReport.history``).
        patience: epochs without improvement before stopping (0: stop at the first
            epoch that does not improve).
        min_delta: the smallest change that counts as an improvement (>= 0).
        mode: "min" (losses) or "max" (accuracy).

    Attributes:
        best: ``[K]`` the best value of the metric so far (+inf / -inf before any).
        wait: ``[K]`` epochs since the last improvement.
        stop_epoch: ``[K]`` epochs trained when patience ran out (1-based, as
            ``ChunkReport.stopped_epoch``); -1 if it has not.

    Example:
        >>> import numpy as np
        >>> from jaxgd.run.report import ChunkReport
        >>> stopper = EarlyStopping(metric="val_loss", patience=2)
        >>> report = ChunkReport(
        ...     epochs_done=4, epochs=10,
        ...     history={"val_loss": np.array([[1.0, 0.5, 0.6, 0.7], [1.0, 0.9, 0.8, 0.7]])},
        ...     examples_seen=np.array([400, 400]), status=np.array(["running", "running"]),
        ...     stopped_epoch=np.array([-1, -1]), seconds=1.0, configs=[{}, {}])
        >>> stopper.on_chunk(report), stopper.stop_epoch
        (array([False,  True]), array([ 4, -1]))

    References:
        Prechelt, "Early Stopping — But When?", Neural Networks: Tricks of the Trade,
        1998; the Keras ``EarlyStopping`` callback (keras.io/api/callbacks/early_stopping).
    """

    def __init__(
        self,
        metric: str = "val_loss",
        patience: int = 5,
        min_delta: float = 0.0,
        mode: str = "min",
    ):
        owner = type(self).__name__
        self.metric = _check_metric(owner, metric)
        self.patience = _check_integer(
            owner, "patience", patience, 0, "epochs without improvement before stopping"
        )
        if (
            isinstance(min_delta, bool)
            or not isinstance(min_delta, numbers.Real)
            or not math.isfinite(min_delta)
            or min_delta < 0
        ):
            raise InputError(
                f"{owner}(min_delta={min_delta!r}): must be a finite number >= 0, the "
                "smallest change that counts as an improvement, e.g. min_delta=1e-3"
            )
        self.min_delta = float(min_delta)
        self.mode = _check_mode(owner, mode)
        self._reset(0)

    def _reset(self, num_configs: int) -> None:
        self._epochs_seen = 0
        # Values are compared as sign * value, so that lower is better in both modes.
        self._sign = 1.0 if self.mode == "min" else -1.0
        self._signed_best = np.full(num_configs, np.inf)
        self.wait = np.zeros(num_configs, dtype=np.int64)
        self.stop_epoch = np.full(num_configs, -1, dtype=np.int64)

    @property
    def best(self) -> np.ndarray:
        return self._sign * self._signed_best

    def state_dict(self) -> dict[str, Any]:
        return {
            "epochs_seen": self._epochs_seen,
            "signed_best": self._signed_best.tolist(),
            "wait": self.wait.tolist(),
            "stop_epoch": self.stop_epoch.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._reset(len(state["wait"]))
        self._epochs_seen = state["epochs_seen"]
        self._signed_best = np.asarray(state["signed_best"], np.float64)
        self.wait = np.asarray(state["wait"], np.int64)
        self.stop_epoch = np.asarray(state["stop_epoch"], np.int64)

    def on_sweep_begin(self, configs: list[dict[str, Any]], epochs: int) -> None:
        self._reset(len(configs))

    def on_chunk(self, report: ChunkReport) -> np.ndarray:
        values = _metric_history(type(self).__name__, report, self.metric)
        num_configs = len(report.status)
        if len(self.stop_epoch) != num_configs or report.epochs_done < self._epochs_seen:
            self._reset(num_configs)  # used without on_sweep_begin, or a new sweep
        running = report.status == RUNNING
        for epoch in range(self._epochs_seen, report.epochs_done):
            # Only running configs not yet out of patience are followed: a decision is final,
            # and best / wait stay as they were when it was taken.
            watched = running & (self.stop_epoch < 0)
            signed = self._sign * values[:, epoch]
            # NaN never improves; filling it with +inf keeps the comparison warning-free.
            signed = np.where(np.isnan(signed), np.inf, signed)
            improved = watched & (signed < self._signed_best - self.min_delta)
            self._signed_best = np.where(improved, signed, self._signed_best)
            self.wait = np.where(improved, 0, self.wait + watched)
            out_of_patience = watched & (self.wait > 0) & (self.wait >= self.patience)
            self.stop_epoch[out_of_patience] = epoch + 1
        self._epochs_seen = report.epochs_done
        return ~((self.stop_epoch >= 0) & running)


class SuccessiveHalving(Callback):
    """Synchronous successive halving: at each rung keep the best 1/eta of the configs.

    Rungs are at the epochs ``min_epochs * eta**k`` (k = 0, 1, ...) strictly below the
    sweep's ``epochs`` (a rung at the last epoch would change nothing). At the first
    report whose ``epochs_done`` reaches a rung not yet applied (a chunk may overshoot
    one; each rung is applied once, in order):

    - the pool is every config not stopped (running or diverged);
    - ``n_keep = max(1, len(pool) // eta)``;
    - the pool is ranked by the metric at the latest epoch (``epochs_done - 1``),
      diverged configs and NaN values last, ties broken by config index;
    - the best ``n_keep`` stay; every other running config gets False.

    So 81 configs with eta=3 and min_epochs=1 over 27 epochs go 81 -> 27 (after epoch 1)
    -> 9 (after 3) -> 3 (after 9), and those 3 train to epoch 27: about
    81 + 2*27 + 6*9 + 18*3 = 243 config-epochs instead of 81*27 = 2187.

    Args:
        metric: the recorded metric to rank by (a key of ``ChunkReport.history``).
        eta: the factor of each cut (an integer >= 2; 3 as in Hyperband).
        min_epochs: the first rung, the epochs every config trains.
        mode: "min" (losses) or "max" (accuracy).

    Attributes:
        survivors: ``{rung: [indices]}`` the configs kept at each rung applied so far.

    Example:
        >>> halving = SuccessiveHalving(metric="val_loss", eta=3, min_epochs=1)
        >>> halving.rungs(27)
        [1, 3, 9]

    References:
        Jamieson and Talwalkar, "Non-stochastic Best Arm Identification and
        Hyperparameter Optimization", 2016, arXiv:1502.07943; Li et al., "Hyperband: A
        Novel Bandit-Based Approach to Hyperparameter Optimization", 2017,
        arXiv:1603.06560.
    """

    def __init__(
        self,
        metric: str = "val_loss",
        eta: int = 3,
        min_epochs: int = 1,
        mode: str = "min",
    ):
        owner = type(self).__name__
        self.metric = _check_metric(owner, metric)
        self.eta = _check_integer(owner, "eta", eta, 2, "each rung keeps 1/eta of the configs")
        self.min_epochs = _check_integer(
            owner, "min_epochs", min_epochs, 1, "the epochs before the first rung"
        )
        self.mode = _check_mode(owner, mode)
        self._reset(0)

    def _reset(self, num_configs: int) -> None:
        self._rungs_applied = 0
        self._epochs_seen = 0
        self._dropped = np.zeros(num_configs, dtype=bool)
        self.survivors: dict[int, list[int]] = {}

    def state_dict(self) -> dict[str, Any]:
        return {
            "rungs_applied": self._rungs_applied,
            "epochs_seen": self._epochs_seen,
            "dropped": self._dropped.tolist(),
            "survivors": [[rung, kept] for rung, kept in self.survivors.items()],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._reset(len(state["dropped"]))
        self._rungs_applied = state["rungs_applied"]
        self._epochs_seen = state["epochs_seen"]
        self._dropped = np.asarray(state["dropped"], bool)
        self.survivors = {int(rung): list(kept) for rung, kept in state["survivors"]}

    def rungs(self, epochs: int) -> list[int]:
        """The epochs after which configs are cut: ``min_epochs * eta**k < epochs``."""
        epochs = _check_integer(type(self).__name__, "epochs", epochs, 1, "the sweep's epochs")
        rungs = []
        rung = self.min_epochs
        while rung < epochs:
            rungs.append(rung)
            rung *= self.eta
        return rungs

    def on_sweep_begin(self, configs: list[dict[str, Any]], epochs: int) -> None:
        if not self.rungs(epochs):
            raise InputError(
                f"SuccessiveHalving(min_epochs={self.min_epochs}) with epochs={epochs}: the "
                "first rung must come before the last epoch, or nothing is ever cut; use "
                f"min_epochs < {epochs} or more epochs"
            )
        self._reset(len(configs))

    def on_chunk(self, report: ChunkReport) -> np.ndarray:
        values = _metric_history(type(self).__name__, report, self.metric)
        num_configs = len(report.status)
        if len(self._dropped) != num_configs or report.epochs_done < self._epochs_seen:
            self._reset(num_configs)  # used without on_sweep_begin, or a new sweep
        self._epochs_seen = report.epochs_done
        rungs = self.rungs(report.epochs)
        for rung in rungs[self._rungs_applied :]:
            if report.epochs_done < rung:
                break
            self._cut(rung, report, values[:, report.epochs_done - 1])
            self._rungs_applied += 1
        return ~(self._dropped & (report.status == RUNNING))

    def _cut(self, rung: int, report: ChunkReport, latest: np.ndarray) -> None:
        pool = np.flatnonzero((report.status != STOPPED) & ~self._dropped)
        if pool.size == 0:
            return
        n_keep = max(1, pool.size // self.eta)
        signed = (1.0 if self.mode == "min" else -1.0) * latest[pool]
        worst = (report.status[pool] == DIVERGED) | np.isnan(signed)
        # lexsort's last key is the primary one: worst last, then value, then index.
        order = np.lexsort((pool, np.where(worst, 0.0, signed), worst))
        kept = pool[order[:n_keep]]
        self._dropped[pool] = True
        self._dropped[kept] = False
        self.survivors[rung] = sorted(int(i) for i in kept)


def _is_terminal(file: Any) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Progress(Callback):
    """Show the sweep's progress: a tqdm bar on a terminal, plain lines otherwise.

    After each chunk it shows the epochs done, the training throughput (the increase of
    Σ ``examples_seen`` over all configs divided by the increase of wall seconds since
    the previous report; the first chunk's rate includes compiling), the best value of
    ``metric`` so far over all configs and epochs, and the counts of running / diverged /
    stopped configs. On a terminal (``file.isatty()``) this is the postfix of a tqdm bar
    over epochs; on any other stream (a log file, a pipe, a notebook) one plain line per
    chunk, e.g. ``epoch 3/27: 12,345 examples/s, best val_loss 0.1234, running 27 /
    diverged 2 / stopped 52, 4.1 s``. Each compiled program gets a line with its
    compile seconds (most of a cold sweep). It never stops a config.

    Args:
        metric: the metric whose best value is shown; default "val_loss" when recorded,
            else "train_loss". Names ending in "loss" are minimised, others maximised.
        file: the stream to write to; default ``sys.stderr`` (as tqdm), read when the
            callback is made.

    Raises:
        ImportError: ``file`` is a terminal and tqdm is not installed (checked when the
            callback is made, before anything compiles).

    Example:
        >>> import io
        >>> progress = Progress(file=io.StringIO())
        >>> progress.on_compile("grouped batch_size=32", 2.5)
        >>> progress.file.getvalue()
        'compiled grouped batch_size=32 in 2.50 s\\n'
    """

    stops_configs = False

    def __init__(self, metric: str | None = None, file: TextIO | None = None):
        if metric is not None:
            _check_metric(type(self).__name__, metric)
        self.metric = metric
        self.file = sys.stderr if file is None else file
        self._tqdm = None
        if _is_terminal(self.file):
            try:
                from tqdm import tqdm
            except ImportError as error:
                raise ImportError("Progress needs tqdm: pip install 'jaxgd[progress]'") from error
            self._tqdm = tqdm
        self._bar = None
        self._reset(None)

    def _reset(self, epochs: int | None) -> None:
        self._epochs = epochs
        self._epochs_seen = 0
        self._examples = 0.0
        self._seconds = 0.0
        self._signed_best = math.inf
        self._last: ChunkReport | None = None

    def _write(self, line: str) -> None:
        if self._bar is not None:
            self._tqdm.write(line, file=self.file)
        else:
            print(line, file=self.file, flush=True)

    def _open_bar(self, epochs: int, num_configs: int) -> None:
        if self._tqdm is not None and self._bar is None:
            self._bar = self._tqdm(
                total=epochs, unit="epoch", desc=f"sweep of {num_configs}", file=self.file
            )

    def on_sweep_begin(self, configs: list[dict[str, Any]], epochs: int) -> None:
        self._close_bar()
        self._reset(epochs)
        self._open_bar(epochs, len(configs))

    def on_compile(self, program: str, seconds: float) -> None:
        self._write(f"compiled {program} in {seconds:.2f} s")

    def _metric_name(self, report: ChunkReport) -> str | None:
        if self.metric is not None:
            _metric_history(type(self).__name__, report, self.metric)
            return self.metric
        return next((m for m in ("val_loss", "train_loss") if m in report.history), None)

    def on_chunk(self, report: ChunkReport) -> None:
        if report.epochs_done < self._epochs_seen:
            self._reset(None)  # used without on_sweep_begin, or a new sweep
        if self._epochs is None:
            self._epochs = report.epochs
        self._open_bar(self._epochs, len(report.status))
        parts = []

        examples = float(np.sum(report.examples_seen))
        elapsed = report.seconds - self._seconds
        if elapsed > 0:
            parts.append(f"{(examples - self._examples) / elapsed:,.0f} examples/s")
        self._examples, self._seconds = examples, report.seconds

        name = self._metric_name(report)
        if name is not None:
            sign = 1.0 if name.endswith("loss") else -1.0  # lower is better after the sign
            new = sign * np.asarray(report.history[name], np.float64)[:, self._epochs_seen :]
            new = new[np.isfinite(new)]
            if new.size:
                self._signed_best = min(self._signed_best, float(new.min()))
            best = sign * self._signed_best if math.isfinite(self._signed_best) else math.nan
            parts.append(f"best {name} {best:.4g}")
        self._epochs_seen = report.epochs_done

        counts = {s: int(np.sum(report.status == s)) for s in (RUNNING, DIVERGED, STOPPED)}
        parts.append(" / ".join(f"{s} {n}" for s, n in counts.items()))
        text = ", ".join(parts)
        if self._bar is not None:
            self._bar.update(report.epochs_done - self._bar.n)
            self._bar.set_postfix_str(text)
        else:
            print(
                f"epoch {report.epochs_done}/{self._epochs}: {text}, {report.seconds:.1f} s",
                file=self.file,
                flush=True,
            )
        self._last = report
        return None

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_sweep_end(self, report: ChunkReport | None, error: BaseException | None) -> None:
        self._close_bar()
        if error is not None:
            report = report if report is not None else self._last
            where = "" if report is None else f" after epoch {report.epochs_done}/{report.epochs}"
            seconds = "" if report is None else f" ({report.seconds:.1f} s)"
            print(f"sweep ended by {type(error).__name__}{where}{seconds}", file=self.file)
