"""Callbacks against hand-made ChunkReports: no sweep, nothing compiled.

``drive`` plays the run loop's part: it reveals a full metric curve chunk by chunk, hands
each report to the callback and applies its keep mask (a config it stops gets status
"stopped" and NaN history from the next epoch on).
"""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest

from jaxgd.run.callbacks import EarlyStopping, Progress, SuccessiveHalving
from jaxgd.run.report import ChunkReport


def make_report(
    history: dict[str, np.ndarray],
    epochs: int,
    status=None,
    stopped_epoch=None,
    examples_seen=None,
    seconds: float = 1.0,
) -> ChunkReport:
    """A report after ``history``'s columns; every config running unless told."""
    history = {name: np.asarray(values, np.float64) for name, values in history.items()}
    num_configs, epochs_done = next(iter(history.values())).shape
    if status is None:
        status = ["running"] * num_configs
    if stopped_epoch is None:
        stopped_epoch = [-1] * num_configs
    if examples_seen is None:
        examples_seen = [100 * epochs_done] * num_configs
    return ChunkReport(
        epochs_done=epochs_done,
        epochs=epochs,
        history=history,
        examples_seen=np.asarray(examples_seen, np.int64),
        status=np.asarray(status),
        stopped_epoch=np.asarray(stopped_epoch, np.int64),
        seconds=seconds,
        configs=[{"index": i} for i in range(num_configs)],
    )


def drive(callback, curves: dict[str, np.ndarray], chunk: int, diverged=None):
    """Run ``callback`` over ``curves`` ({metric: [K, epochs]}) in chunks of ``chunk``
    epochs, as the loop would. Returns, for each report, the running configs the callback
    keeps (epochs_done -> [K] bool), then the final status and stopped_epoch."""
    curves = {name: np.asarray(values, np.float64) for name, values in curves.items()}
    num_configs, epochs = next(iter(curves.values())).shape
    status = np.array(["running"] * num_configs, dtype=object)
    if diverged is not None:
        status[np.asarray(diverged)] = "diverged"
    stopped_epoch = np.full(num_configs, -1)
    callback.on_sweep_begin([{"index": i} for i in range(num_configs)], epochs)
    masks = {}
    for done in range(chunk, epochs + chunk, chunk):
        done = min(done, epochs)
        history = {}
        for name, values in curves.items():
            seen = values[:, :done].copy()
            for i in np.flatnonzero(stopped_epoch >= 0):
                seen[i, stopped_epoch[i] :] = np.nan
            history[name] = seen
        report = make_report(history, epochs, status.astype(str), stopped_epoch)
        mask = callback.on_chunk(report)
        running = status == "running"
        masks[done] = running if mask is None else mask & running
        if mask is not None:
            stop = ~mask & running
            status[stop] = "stopped"
            stopped_epoch[stop] = done
    callback.on_sweep_end(report, None)
    return masks, status.astype(str), stopped_epoch


# --- EarlyStopping --------------------------------------------------------------------

# Best 0.70 at epoch 3; epochs 4, 5, 6 do not improve: patience 3 runs out after epoch 6.
LOSS = [1.0, 0.8, 0.7, 0.75, 0.72, 0.71, 0.9, 0.6, 0.5, 0.4, 0.3, 0.2]


def test_early_stopping_stops_after_patience_epochs_without_improvement():
    steady = np.linspace(1.0, 0.1, len(LOSS))  # improves every epoch: never stopped
    masks, status, stopped_epoch = drive(
        EarlyStopping(patience=3), {"val_loss": [LOSS, steady]}, chunk=1
    )
    assert [done for done, kept in masks.items() if not kept[0]][0] == 6
    assert all(kept[1] for kept in masks.values())
    assert status.tolist() == ["stopped", "running"]
    assert stopped_epoch.tolist() == [6, -1]


@pytest.mark.parametrize("chunk", [1, 3, 4, 12])
def test_early_stopping_decides_epoch_by_epoch_whatever_the_chunk(chunk):
    stopper = EarlyStopping(patience=3)
    masks, status, stopped_epoch = drive(stopper, {"val_loss": [LOSS]}, chunk=chunk)
    assert stopper.stop_epoch.tolist() == [6]
    assert stopper.best.tolist() == [0.7]
    # The config stops at the end of the chunk in which patience ran out.
    first_false = min(done for done, kept in masks.items() if not kept[0])
    assert first_false == -(-6 // chunk) * chunk
    assert stopped_epoch.tolist() == [first_false]


def test_early_stopping_chunks_of_one_and_three_agree():
    curves = np.random.default_rng(0).uniform(size=(20, 30))
    decisions = []
    for chunk in (1, 3):
        stopper = EarlyStopping(patience=4)
        drive(stopper, {"val_loss": curves}, chunk=chunk)
        decisions.append(stopper.stop_epoch.copy())
    np.testing.assert_array_equal(decisions[0], decisions[1])
    assert (decisions[0] > 0).any()


def test_early_stopping_min_delta_is_a_strict_margin():
    # Falls by exactly 0.25 each epoch: an improvement only for min_delta < 0.25.
    loss = [[1.0, 0.75, 0.5, 0.25, 0.0]]
    for min_delta, expected in [(0.0, -1), (0.2, -1), (0.25, 2), (0.3, 2)]:
        stopper = EarlyStopping(patience=1, min_delta=min_delta)
        drive(stopper, {"val_loss": loss}, chunk=1)
        assert stopper.stop_epoch.tolist() == [expected], min_delta
    # best moves only on an improvement: 0.5 beats 1.0 by more than 0.25.
    stopper = EarlyStopping(patience=2, min_delta=0.25)
    drive(stopper, {"val_loss": loss}, chunk=1)
    assert stopper.stop_epoch.tolist() == [-1]
    assert stopper.best.tolist() == [0.0]


def test_early_stopping_mode_max():
    accuracy = [[0.5, 0.6, 0.7, 0.65, 0.7, 0.69, 0.9]]
    stopper = EarlyStopping(metric="val_accuracy", patience=3, mode="max")
    drive(stopper, {"val_accuracy": accuracy}, chunk=1)
    assert stopper.stop_epoch.tolist() == [6]  # 0.7 at epoch 3 is not beaten by 0.7
    assert stopper.best.tolist() == [0.7]
    never = EarlyStopping(metric="val_accuracy", patience=3, mode="min")
    drive(never, {"val_accuracy": accuracy}, chunk=1)
    assert never.stop_epoch.tolist() == [4]  # as a loss it never improves after epoch 1


def test_early_stopping_patience_zero_stops_at_the_first_epoch_without_improvement():
    stopper = EarlyStopping(patience=0)
    drive(stopper, {"val_loss": [[1.0, 0.9, 0.95, 0.5]]}, chunk=1)
    assert stopper.stop_epoch.tolist() == [3]


def test_early_stopping_nan_is_no_improvement():
    stopper = EarlyStopping(patience=2)
    drive(stopper, {"val_loss": [[1.0, np.nan, np.nan, 0.1]]}, chunk=1)
    assert stopper.stop_epoch.tolist() == [3]


def test_early_stopping_only_stops_running_configs():
    history = {"val_loss": [[1.0, 2.0, 3.0]] * 3}
    report = make_report(history, 10, status=["running", "diverged", "stopped"])
    mask = EarlyStopping(patience=1).on_chunk(report)
    assert mask.tolist() == [False, True, True]


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"patience": -1}, "patience=-1"),
        ({"patience": 1.5}, "patience=1.5"),
        ({"patience": True}, "patience=True"),
        ({"min_delta": -0.1}, "min_delta=-0.1"),
        ({"min_delta": float("nan")}, "min_delta=nan"),
        ({"mode": "avg"}, "mode='avg'"),
        ({"metric": ""}, "metric=''"),
    ],
)
def test_early_stopping_refuses_bad_arguments(kwargs, words):
    with pytest.raises(ValueError, match=words):
        EarlyStopping(**kwargs)


@pytest.mark.parametrize("callback", [EarlyStopping, SuccessiveHalving])
def test_a_missing_metric_names_the_recorded_ones(callback):
    report = make_report({"train_loss": [[1.0]], "val_accuracy": [[0.5]]}, 10)
    with pytest.raises(ValueError, match=r"no 'val_loss'.*\['train_loss', 'val_accuracy'\]"):
        callback(metric="val_loss").on_chunk(report)


# --- SuccessiveHalving ----------------------------------------------------------------


def test_rungs():
    assert SuccessiveHalving(eta=3, min_epochs=1).rungs(27) == [1, 3, 9]
    assert SuccessiveHalving(eta=3, min_epochs=1).rungs(28) == [1, 3, 9, 27]
    assert SuccessiveHalving(eta=2, min_epochs=2).rungs(20) == [2, 4, 8, 16]
    assert SuccessiveHalving(eta=3, min_epochs=5).rungs(5) == []


def test_halving_81_27_9_3():
    # Config i's loss falls with the epochs but its rank is the same at every epoch.
    rank = np.random.default_rng(1).permutation(81)
    loss = (1.0 + rank)[:, None] / np.arange(1, 28)[None, :]
    halving = SuccessiveHalving(metric="val_loss", eta=3, min_epochs=1)
    masks, status, stopped_epoch = drive(halving, {"val_loss": loss}, chunk=1)
    running_after = {done: int(mask.sum()) for done, mask in masks.items() if done in (1, 3, 9)}
    assert running_after == {1: 27, 3: 9, 9: 3}
    assert all(mask.sum() == 3 for done, mask in masks.items() if done > 9)
    best = np.argsort(rank)
    assert halving.survivors == {
        1: sorted(best[:27].tolist()),
        3: sorted(best[:9].tolist()),
        9: sorted(best[:3].tolist()),
    }
    assert sorted(np.flatnonzero(status == "running").tolist()) == sorted(best[:3].tolist())
    epochs, counts = np.unique(stopped_epoch, return_counts=True)
    assert dict(zip(epochs.tolist(), counts.tolist())) == {-1: 3, 1: 54, 3: 18, 9: 6}
    # Config-epochs trained: 81 + 2*27 + 6*9 + 18*3 = 243 of 81*27.
    trained = np.where(stopped_epoch > 0, stopped_epoch, 27).sum()
    assert trained == 243


def test_halving_mode_max_keeps_the_largest():
    accuracy = np.tile(np.arange(9.0)[:, None], (1, 9))
    halving = SuccessiveHalving(metric="val_accuracy", eta=3, mode="max")
    drive(halving, {"val_accuracy": accuracy}, chunk=1)
    assert halving.survivors == {1: [6, 7, 8], 3: [8]}


def test_halving_breaks_ties_by_index():
    halving = SuccessiveHalving(eta=3)
    masks, _, _ = drive(halving, {"val_loss": np.ones((9, 9))}, chunk=1)
    assert halving.survivors == {1: [0, 1, 2], 3: [0]}
    assert np.flatnonzero(masks[9]).tolist() == [0]


def test_halving_ranks_diverged_and_nan_worst():
    loss = np.tile(np.arange(9.0)[:, None], (1, 9))
    loss[1] = np.nan  # would rank second
    # Config 0 has the lowest value but has diverged.
    report = make_report({"val_loss": loss[:, :1]}, 9, status=["diverged"] + ["running"] * 8)
    mask = SuccessiveHalving(eta=3).on_chunk(report)
    assert np.flatnonzero(mask).tolist() == [0, 2, 3, 4]  # diverged: True, ignored by the loop
    # With only diverged and NaN configs left besides one, that one is kept.
    report = make_report(
        {"val_loss": [[0.1], [np.nan], [5.0]]}, 9, status=["diverged", "running", "running"]
    )
    halving = SuccessiveHalving(eta=3)
    assert halving.on_chunk(report).tolist() == [True, False, True]
    assert halving.survivors == {1: [2]}


def test_halving_pool_counts_diverged_but_not_stopped():
    # 9 running, 3 diverged, 6 already stopped by someone else: pool 12, keep 4.
    loss = np.arange(18.0)[:, None]
    status = ["stopped"] * 6 + ["diverged"] * 3 + ["running"] * 9
    halving = SuccessiveHalving(eta=3)
    mask = halving.on_chunk(make_report({"val_loss": loss}, 9, status=status))
    assert halving.survivors == {1: [9, 10, 11, 12]}
    assert np.flatnonzero(~mask).tolist() == list(range(13, 18))


def test_halving_applies_an_overshot_rung_once():
    loss = np.tile(np.arange(81.0)[:, None], (1, 27))
    halving = SuccessiveHalving(eta=3)
    masks, _, _ = drive(halving, {"val_loss": loss}, chunk=2)
    # Rung 1 at the report after epoch 2, rung 3 at epoch 4, rung 9 at epoch 10.
    assert {done: int(mask.sum()) for done, mask in masks.items() if done <= 12} == {
        2: 27,
        4: 9,
        6: 9,
        8: 9,
        10: 3,
        12: 3,
    }
    assert halving.survivors == {1: list(range(27)), 3: list(range(9)), 9: [0, 1, 2]}


def test_halving_applies_every_rung_a_long_chunk_passes_in_order():
    loss = np.tile(np.arange(81.0)[:, None], (1, 27))
    halving = SuccessiveHalving(eta=3)
    masks, _, stopped_epoch = drive(halving, {"val_loss": loss}, chunk=4)
    assert int(masks[4].sum()) == 9  # rungs 1 and 3 both passed: 81 -> 27 -> 9
    assert int(masks[8].sum()) == 9
    assert int(masks[12].sum()) == 3
    assert list(halving.survivors) == [1, 3, 9]
    assert sorted(set(stopped_epoch.tolist())) == [-1, 4, 12]


def test_halving_is_reset_by_on_sweep_begin():
    loss = np.tile(np.arange(9.0)[:, None], (1, 9))
    halving = SuccessiveHalving(eta=3)
    first = drive(halving, {"val_loss": loss}, chunk=1)
    second = drive(halving, {"val_loss": loss}, chunk=1)
    assert first[1].tolist() == second[1].tolist()


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"eta": 1}, "eta=1"),
        ({"eta": 2.5}, "eta=2.5"),
        ({"min_epochs": 0}, "min_epochs=0"),
        ({"mode": "best"}, "mode='best'"),
        ({"metric": None}, "metric=None"),
    ],
)
def test_halving_refuses_bad_arguments(kwargs, words):
    with pytest.raises(ValueError, match=words):
        SuccessiveHalving(**kwargs)


def test_halving_refuses_a_sweep_too_short_for_any_rung():
    with pytest.raises(ValueError, match=r"min_epochs=5\) with epochs=5"):
        SuccessiveHalving(min_epochs=5).on_sweep_begin([{}], 5)


# --- Progress -------------------------------------------------------------------------


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def progress_reports():
    """Three chunks of one epoch; 4 configs of which one diverges and one is stopped."""
    loss = np.array([[2.0, 1.0, 0.5], [3.0, np.nan, np.nan], [1.5, 0.8, np.nan], [2.5, 2, 1.9]])
    statuses = [
        ["running"] * 4,
        ["running", "diverged", "running", "running"],
        ["running", "diverged", "stopped", "running"],
    ]
    return [
        make_report(
            {"train_loss": loss[:, :done] + 1, "val_loss": loss[:, :done]},
            3,
            status=statuses[done - 1],
            examples_seen=[1000 * done] * 4,
            seconds=2.0 * done,
        )
        for done in (1, 2, 3)
    ]


def test_progress_on_a_plain_stream_prints_a_line_per_chunk():
    stream = io.StringIO()
    progress = Progress(file=stream)
    assert progress.stops_configs is False
    progress.on_sweep_begin([{}] * 4, 3)
    progress.on_compile("grouped batch_size=32", 1.25)
    for report in progress_reports():
        assert progress.on_chunk(report) is None
    progress.on_sweep_end(report, None)
    assert stream.getvalue().splitlines() == [
        "compiled grouped batch_size=32 in 1.25 s",
        "epoch 1/3: 2,000 examples/s, best val_loss 1.5, running 4 / diverged 0 / stopped 0, 2.0 s",
        "epoch 2/3: 2,000 examples/s, best val_loss 0.8, running 3 / diverged 1 / stopped 0, 4.0 s",
        "epoch 3/3: 2,000 examples/s, best val_loss 0.5, running 2 / diverged 1 / stopped 1, 6.0 s",
    ]


def test_progress_metric_and_mode():
    stream = io.StringIO()
    progress = Progress(metric="val_accuracy", file=stream)
    report = make_report({"val_loss": [[1.0], [0.5]], "val_accuracy": [[0.25], [0.75]]}, 2)
    progress.on_chunk(report)  # no on_sweep_begin: the total comes from the report
    assert "epoch 1/2" in stream.getvalue()
    assert "best val_accuracy 0.75" in stream.getvalue()
    stream = io.StringIO()
    Progress(file=stream).on_chunk(make_report({"train_loss": [[1.0], [0.5]]}, 2))
    assert "best train_loss 0.5" in stream.getvalue()
    with pytest.raises(ValueError, match="no 'val_acc'"):
        Progress(metric="val_acc", file=io.StringIO()).on_chunk(report)


def test_progress_survives_a_failed_sweep():
    stream = io.StringIO()
    progress = Progress(file=stream)
    progress.on_sweep_begin([{}] * 4, 3)
    report = progress_reports()[0]
    progress.on_chunk(report)
    progress.on_sweep_end(report, KeyboardInterrupt())
    assert stream.getvalue().splitlines()[-1] == (
        "sweep ended by KeyboardInterrupt after epoch 1/3 (2.0 s)"
    )
    Progress(file=io.StringIO()).on_sweep_end(None, RuntimeError("compile failed"))


def test_progress_bar_on_a_terminal():
    pytest.importorskip("tqdm")
    stream = FakeTerminal()
    progress = Progress(file=stream)
    progress.on_sweep_begin([{}] * 4, 3)
    progress.on_compile("grouped batch_size=32", 1.25)
    for report in progress_reports():
        progress.on_chunk(report)
    progress.on_sweep_end(report, RuntimeError("boom"))
    output = stream.getvalue()
    assert "compiled grouped batch_size=32 in 1.25 s\n" in output
    assert "3/3" in output
    assert "running 2 / diverged 1 / stopped 1" in output
    assert output.splitlines()[-1] == "sweep ended by RuntimeError after epoch 3/3 (6.0 s)"
    assert progress._bar is None


def test_progress_without_tqdm(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    with pytest.raises(ImportError, match=r"Progress needs tqdm: pip install 'jaxgd\[progress\]'"):
        Progress(file=FakeTerminal())
    stream = io.StringIO()  # not a terminal: no tqdm needed
    progress = Progress(file=stream)
    progress.on_chunk(progress_reports()[0])
    assert "epoch 1/3" in stream.getvalue()
