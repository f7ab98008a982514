"""The run loop through every strategy: config-ordered reports, early stopping and
successive halving (bitwise invariants), rebuilt programs, progress, failing callbacks."""

import io

import jax
import numpy as np
import pytest
from reference import DATA, PROBLEM, sweep

import jaxgd

# Mixed batch sizes, shuffling on, and a learning rate large enough to diverge.
SPACE = jaxgd.grid(
    batch_size=[16, 32], learning_rate=[0.02, 0.1, 0.3, 1e5], momentum=[0.0, 0.9], seed=[0, 1]
)
STRATEGIES = ["grouped", "nested", "accumulate"]


class Recorder(jaxgd.Callback):
    stops_configs = False

    def __init__(self):
        self.reports, self.compiled, self.ended = [], [], None

    def on_compile(self, program, seconds):
        self.compiled.append(program)

    def on_chunk(self, report):
        self.reports.append(report)

    def on_sweep_end(self, report, error):
        self.ended = (report, error)


def run(strategy, callbacks=(), epochs=6, **kwargs):
    options = dict(space=SPACE, epochs=epochs, validation=0.25, return_params=True)
    options.update(kwargs)
    return sweep(PROBLEM, DATA, strategy=strategy, callbacks=list(callbacks), **options)


def leaves(result, index):
    return [np.asarray(leaf)[index] for leaf in jax.tree.leaves(result.params)]


def test_reports_are_in_config_order_and_the_same_for_every_strategy():
    recorded = {}
    for strategy in STRATEGIES:
        recorder = Recorder()
        result = run(strategy, [recorder], epochs=2, epochs_per_chunk=1)
        recorded[strategy] = recorder.reports
        assert [r.epochs_done for r in recorder.reports] == [1, 2]
        last = recorder.reports[-1]
        assert recorder.ended == (last, None)
        assert last.history["train_loss"].shape == (len(SPACE), 2)
        np.testing.assert_array_equal(last.history["train_loss"], result.history["train_loss"])
        assert last.configs == result.configs
        assert recorder.compiled  # a line per program compiled (unless cached)
    for strategy in ("nested", "accumulate"):
        for grouped, other in zip(recorded["grouped"], recorded[strategy]):
            assert grouped.history.keys() == other.history.keys()
            for name in grouped.history:
                np.testing.assert_allclose(
                    other.history[name], grouped.history[name], rtol=2e-5, err_msg=name
                )
            np.testing.assert_array_equal(other.status, grouped.status)
            np.testing.assert_array_equal(other.examples_seen, grouped.examples_seen)
    status = recorded["grouped"][-1].status
    lr = np.array([c["learning_rate"] for c in recorded["grouped"][-1].configs])
    assert (status[lr == 1e5] == "diverged").all() and (status[lr < 1] == "running").all()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_halving_freezes_stopped_configs_exactly_and_leaves_the_others_bitwise(strategy):
    full = run(strategy)
    halving = run(strategy, [jaxgd.SuccessiveHalving(eta=2)], rebuild=False)
    stopped = halving.status == "stopped"
    # 32 configs, rungs at 1, 2, 4: 32 -> 16 -> 8 -> 4; the 8 diverged rank worst and
    # leave at the first rung, so 8 running configs stop there.
    assert np.bincount(halving.stopped_epoch[stopped]).tolist() == [0, 8, 8, 0, 4]
    assert (halving.status[~stopped] == full.status[~stopped]).all()
    assert (halving.status[~stopped] == "running").sum() == 4
    for a, b in zip(leaves(halving, ~stopped), leaves(full, ~stopped)):
        np.testing.assert_array_equal(a, b)
    for name in ("train_loss", "val_loss", "updates"):
        np.testing.assert_array_equal(halving.history[name][~stopped], full.history[name][~stopped])
    for epoch in (1, 2, 4):
        at = halving.stopped_epoch == epoch
        short = run(strategy, epochs=epoch)  # the same configs trained for `epoch` epochs
        for a, b in zip(leaves(halving, at), leaves(short, at)):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(halving.updates[at], short.updates[at])
        np.testing.assert_array_equal(
            halving.history["val_loss"][at, :epoch], short.history["val_loss"][at]
        )
        assert np.isnan(halving.history["val_loss"][at, epoch:]).all()
        assert (halving.history["updates"][at, epoch:] == short.updates[at, None]).all()
        np.testing.assert_array_equal(halving.examples_seen[at], short.examples_seen[at])
    assert (halving.diverged_step[halving.diverged] >= 0).all()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_rebuilt_program_gives_the_results_of_the_unrebuilt_one(strategy):
    callbacks = [jaxgd.SuccessiveHalving(eta=2)]
    kept = run(strategy, callbacks, rebuild=False)
    rebuilt = run(strategy, [jaxgd.SuccessiveHalving(eta=2)], rebuild=True)
    assert len(rebuilt.groups) > len(kept.groups)  # programs were rebuilt
    np.testing.assert_array_equal(rebuilt.status, kept.status)
    np.testing.assert_array_equal(rebuilt.stopped_epoch, kept.stopped_epoch)
    np.testing.assert_array_equal(rebuilt.updates, kept.updates)
    # Measured: bitwise here (the slots change shape, not the per-config arithmetic);
    # asserted to float32 rounding, which is all a different vmap width promises.
    for a, b in zip(jax.tree.leaves(rebuilt.params), jax.tree.leaves(kept.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        rebuilt.history["val_loss"], kept.history["val_loss"], rtol=1e-5, equal_nan=True
    )


def test_rebuilt_programs_compile_at_most_once_per_bucket_and_are_reused():
    space = jaxgd.grid(learning_rate=[0.011, 0.02, 0.03, 0.05], momentum=[0.0, 0.9], seed=[0, 1])
    options = dict(batch_size=24, epochs=4, validation=0.25, rebuild=True)

    def halving_sweep():
        halving = jaxgd.SuccessiveHalving(eta=2)
        return sweep(PROBLEM, DATA, space=space, callbacks=[halving], **options)

    before = jaxgd.compile_count("grouped_chunk")
    first = halving_sweep()
    compiled = jaxgd.compile_count("grouped_chunk") - before
    assert len(first.groups) == 3  # the program, then rebuilt at rungs 1 and 2
    assert 1 <= compiled <= len({g["slots"] for g in first.groups})
    again = halving_sweep()  # the same widths: every program comes from the cache
    assert jaxgd.compile_count("grouped_chunk") - before == compiled
    np.testing.assert_array_equal(again.history["val_loss"], first.history["val_loss"])


def test_early_stopping_stops_a_config_that_stops_improving():
    space = jaxgd.grid(learning_rate=[0.05, 3.0], momentum=0.9)
    stopper = jaxgd.EarlyStopping(metric="val_loss", patience=1, min_delta=10.0)
    result = sweep(
        PROBLEM, DATA, space=space, batch_size=32, epochs=4, validation=0.25, callbacks=[stopper]
    )
    # min_delta=10 makes no epoch after the first an improvement: stop after epoch 2.
    assert result.status.tolist() == ["stopped", "stopped"]
    assert result.stopped_epoch.tolist() == [2, 2]
    assert np.isnan(result.history["val_loss"][:, 2:]).all()
    assert np.isfinite(result.history["val_loss"][:, :2]).all()
    row = result.table()[0]
    assert row["status"] == "stopped" and row["stopped_epoch"] == 2


def test_progress_prints_a_line_per_chunk_when_not_a_terminal():
    stream = io.StringIO()
    result = sweep(
        PROBLEM,
        DATA,
        space=jaxgd.grid(learning_rate=[0.05, 0.1]),
        batch_size=64,
        epochs=2,
        callbacks=[jaxgd.Progress(file=stream)],
    )
    lines = stream.getvalue().splitlines()
    assert sum(line.startswith("epoch ") for line in lines) == 2
    assert "running 2" in lines[-1]
    assert result.status.tolist() == ["running", "running"]


def test_a_callback_that_raises_stops_the_sweep_with_its_error(tmp_path):
    class Boom(jaxgd.Callback):
        def on_chunk(self, report):
            if report.epochs_done == 2:
                raise RuntimeError("boom at epoch 2")

    recorder = Recorder()
    with pytest.raises(RuntimeError, match="boom at epoch 2"):
        sweep(
            PROBLEM,
            DATA,
            space=jaxgd.grid(learning_rate=[0.05]),
            batch_size=64,
            epochs=4,
            callbacks=[recorder, Boom()],
        )
    report, error = recorder.ended
    assert isinstance(error, RuntimeError) and report.epochs_done == 1
    assert list(tmp_path.iterdir()) == []


def test_a_bad_keep_mask_and_a_bad_callback_are_refused():
    class Wrong(jaxgd.Callback):
        def on_chunk(self, report):
            return np.ones(3)

    with pytest.raises(ValueError, match="bool mask of shape"):
        sweep(
            PROBLEM,
            DATA,
            space=jaxgd.grid(learning_rate=[0.05]),
            batch_size=64,
            epochs=1,
            callbacks=[Wrong()],
        )
    with pytest.raises(TypeError, match="jaxgd.Callback"):
        sweep(
            PROBLEM,
            DATA,
            space=jaxgd.grid(learning_rate=[0.05]),
            batch_size=64,
            epochs=1,
            callbacks=[lambda report: None],
        )


def test_progress_true_is_the_progress_callback(capsys):
    sweep(
        PROBLEM,
        DATA,
        space=jaxgd.grid(learning_rate=[0.05]),
        batch_size=64,
        epochs=2,
        progress=True,
    )
    err = capsys.readouterr().err  # not a terminal under pytest: a plain line per chunk
    assert sum(line.startswith("epoch ") for line in err.splitlines()) == 2


def test_auto_rebuilds_when_the_survivors_program_is_compiled_already():
    space = jaxgd.grid(learning_rate=[0.012, 0.021, 0.032, 0.052], momentum=[0.0, 0.9], seed=[0, 1])
    options = dict(batch_size=24, epochs=4, validation=0.25)

    def halving_sweep(rebuild):
        halving = jaxgd.SuccessiveHalving(eta=2)
        return sweep(PROBLEM, DATA, space=space, callbacks=[halving], rebuild=rebuild, **options)

    never = halving_sweep(False)
    assert len(never.groups) == 1
    always = halving_sweep(True)  # compiles the survivors' widths
    before = jaxgd.compile_count()
    auto = halving_sweep("auto")  # a rebuild then costs no compile, so it always pays
    assert jaxgd.compile_count() == before
    assert [g["slots"] for g in auto.groups] == [g["slots"] for g in always.groups]
    np.testing.assert_array_equal(auto.status, never.status)


class CallOrder(jaxgd.Callback):
    """Records the hooks the loop calls, in order (and the saved state it is handed)."""

    def __init__(self):
        self.calls = []

    def on_sweep_begin(self, configs, epochs):
        self.calls.append(("begin", len(configs), epochs))

    def on_compile(self, program, seconds):
        if self.calls[-1] != "compile":
            self.calls.append("compile")

    def on_chunk(self, report):
        self.calls.append(("chunk", report.epochs_done))

    def on_sweep_end(self, report, error):
        self.calls.append(("end", type(error).__name__ if error else None))

    def state_dict(self):
        return {"chunks": sum(1 for c in self.calls if c[0] == "chunk")}

    def load_state_dict(self, state):
        self.calls.append(("loaded", state["chunks"]))


def test_on_sweep_begin_comes_once_before_compiling_and_again_when_resuming(tmp_path):
    space = list(SPACE)[:4]
    order = CallOrder()
    run("grouped", [order], epochs=3, space=space, checkpoint_dir=tmp_path / "c")
    assert order.calls == [
        ("begin", 4, 3),
        "compile",
        ("chunk", 1),
        ("chunk", 2),
        ("chunk", 3),
        ("end", None),
    ]
    # A resumed sweep begins again, then gets the saved state (here: of the finished
    # sweep, so it trains nothing and compiles nothing in this process).
    resumed = CallOrder()
    run("grouped", [resumed], epochs=3, space=space, checkpoint_dir=tmp_path / "c", resume=True)
    assert resumed.calls == [("begin", 4, 3), ("loaded", 3), ("end", None)]


def test_halving_without_a_rung_is_refused_in_a_sweep_before_compiling(tmp_path):
    compiles = jaxgd.compile_count()
    halving = jaxgd.SuccessiveHalving(metric="val_loss", min_epochs=3)
    order = CallOrder()
    with pytest.raises(jaxgd.InputError, match=r"min_epochs=3\) with epochs=3"):
        run("grouped", [order, halving], epochs=3, checkpoint_dir=tmp_path / "c")
    assert jaxgd.compile_count() == compiles
    assert not (tmp_path / "c").exists()  # the checkpoint folder is not claimed either
    assert order.calls == [("begin", len(SPACE), 3), ("end", "InputError")]
