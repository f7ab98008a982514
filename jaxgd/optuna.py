"""Optuna's samplers proposing whole vmapped batches: ask N trials, train them as one sweep,
tell N results.

A study's sampler (TPE, CMA-ES, random, ...) proposes ``batch`` trials at a time; jaxgd
trains them as one compiled program and, after every epoch, reports each trial's metric
(``trial.report``), so pruners and the dashboard see learning curves and a pruned trial
stops training at once. At the end of a round each trial is told its final metric, or
failed if it diverged. A round of the same shape as an earlier one reuses its compiled
program, so after the first round a round costs its training time only.

Example:
    >>> import optuna, jaxgd
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> problem, data = jaxgd.problems.linear_regression()
    >>> study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    >>> rounds = jaxgd.optuna.optimize(
    ...     study, problem, data, {"learning_rate": optuna.distributions.FloatDistribution(
    ...         1e-3, 0.3, log=True)}, n_trials=8, batch=4, epochs=3, batch_size=5)
    >>> len(study.trials), len(rounds)
    (8, 2)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ._io import optional_import
from .errors import InputError
from .options import SweepOptions
from .problem import Problem
from .results import SweepResult
from .run.report import Callback, ChunkReport
from .sweep import sweep

__all__ = ["optimize"]

PyTree = Any


class _TrialReports(Callback):
    """Reports every trial's metric after each epoch; stops the trials the pruner prunes."""

    def __init__(self, trials: list, metric: str, prune: bool):
        self.trials, self.metric, self.prune = trials, metric, prune
        self.pruned = np.zeros(len(trials), bool)

    def on_chunk(self, report: ChunkReport) -> np.ndarray | None:
        if self.metric not in report.history:
            raise InputError(
                f"jaxgd.optuna.optimize(metric={self.metric!r}): the sweep records "
                f"{sorted(report.history)}; choose one of them"
            )
        values = report.history[self.metric][:, -1]
        keep = np.ones(len(report.status), bool)
        for k, trial in enumerate(self.trials):
            if report.status[k] != "running" or not math.isfinite(values[k]):
                continue
            trial.report(float(values[k]), step=report.epochs_done)
            if self.prune and report.epochs_done < report.epochs and trial.should_prune():
                self.pruned[k] = True
                keep[k] = False
        return keep


def optimize(
    study: Any,
    problem: Problem,
    data: PyTree,
    distributions: Mapping[str, Any],
    n_trials: int,
    batch: int = 32,
    *,
    epochs: int,
    metric: str = "val_loss",
    fixed: Mapping[str, Any] | None = None,
    prune: bool = True,
    options: SweepOptions | None = None,
    on_round: Callable[[SweepResult], None] | None = None,
    **sweep_kwargs: Any,
) -> list[SweepResult]:
    """Run ``n_trials`` trials of ``study``, ``batch`` at a time, each round one jaxgd sweep.

    Per round: ``study.ask(distributions)`` ``batch`` times (fewer in a last, partial
    round, whose empty places repeat its last trial so that the program's shape, and so
    its compiled program, stay the same; their results are ignored); the trials' params
    plus ``fixed`` are the configs of ``jaxgd.sweep(problem, data, space=..., epochs=...,
    **sweep_kwargs)``; after every epoch each running trial reports ``metric`` at step
    ``epochs_done`` and, with ``prune``, stops if ``trial.should_prune()``; at the end each
    trial is told PRUNED, FAIL (diverged, or a non-finite metric) or its final ``metric``.

    Args:
        study: an ``optuna.Study``, any sampler, pruner and storage (SQLite included; a
            loaded study resumes).
        problem, data: as for ``jaxgd.sweep``.
        distributions: ``{name: optuna.distributions.*}`` over config keys
            (``learning_rate``, ``momentum``, ``batch_size``, ``seed``, schedule parameters).
        n_trials: trials to run in all.
        batch: trials per round, trained together.
        epochs: epochs of every trial.
        metric: the history entry the study optimises (its final value is the trial's).
        fixed: config entries common to every trial (e.g. ``{"optimizer": "adam"}``).
        prune: ask the study's pruner after each epoch.
        options: ``jaxgd.SweepOptions``; default ``SweepOptions(rebuild=False)``, so that
            pruning never rebuilds (and recompiles) a round's program.
        on_round: called with each round's ``SweepResult``.
        **sweep_kwargs: passed to ``jaxgd.sweep`` (``optimizer``, ``batch_size``,
            ``validation``, ...).

    Returns:
        The rounds' ``SweepResult`` objects (the trials are in the study). A round's
        configs are its trials in the order asked (padding last).

    References:
        Akiba et al. 2019, "Optuna: A Next-generation Hyperparameter Optimization
        Framework", arXiv:1907.10902 (ask-and-tell interface, pruning).
    """
    optuna = optional_import("optuna", extra="optuna", feature="jaxgd.optuna.optimize")
    for name, value in (("n_trials", n_trials), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"jaxgd.optuna.optimize({name}={value!r}): need a positive integer")
    if not isinstance(distributions, Mapping) or not distributions:
        raise InputError(
            f"jaxgd.optuna.optimize(distributions={distributions!r}): need a dict of "
            "optuna distributions, e.g. {'learning_rate': FloatDistribution(1e-4, 1, log=True)}"
        )
    fixed = dict(fixed or {})
    clash = sorted(set(fixed) & set(distributions))
    if clash:
        raise InputError(f"jaxgd.optuna.optimize: {clash} are both fixed and distributions")
    options = SweepOptions(rebuild=False) if options is None else options
    user_callbacks = list(sweep_kwargs.pop("callbacks", ()))
    rounds = []
    done = 0
    while done < n_trials:
        trials = [study.ask(dict(distributions)) for _ in range(min(batch, n_trials - done))]
        configs = [{**fixed, **trial.params} for trial in trials]
        configs += [configs[-1]] * (batch - len(configs))
        reports = _TrialReports(trials, metric, prune)
        callbacks = [reports, *user_callbacks]
        try:
            result = sweep(
                problem,
                data,
                space=configs,
                epochs=epochs,
                callbacks=callbacks,
                options=options,
                **sweep_kwargs,
            )
        except BaseException:
            for trial in trials:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        final = result.history[metric][:, -1]
        for k, trial in enumerate(trials):
            if reports.pruned[k]:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            elif result.diverged[k] or not math.isfinite(final[k]):
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, float(final[k]))
        rounds.append(result)
        if on_round is not None:
            on_round(result)
        done += len(trials)
    return rounds
