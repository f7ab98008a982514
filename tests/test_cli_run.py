"""``jaxgd run``, ``jaxgd bench``, ``--version`` and the one-line errors of the command line."""

import csv
import json
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import jaxgd
from jaxgd import runfile
from jaxgd.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

SWEEP = """\
[problem]
name = "linear_regression"

[sweep]
epochs = 4
batch_size = 5
validation = false

[space.parameters]
learning_rate = {values = [0.3, 0.1, 0.03]}
momentum = [0.0, 0.9]
seed = [0, 1]
"""


def rows(path: pathlib.Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def files(folder: pathlib.Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_run_writes_results_config_and_report(tmp_path, capsys):
    (tmp_path / "sweep.toml").write_text(SWEEP)
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "sweep.toml"), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "12 configs (grid), 4 epochs" in captured.out
    assert "The best 6 by final train_loss (mean over seeds)" in captured.out
    assert "s compiling" in captured.out and f"to {out}" in captured.out
    assert "compiled grouped" in captured.err and "epoch 4/4" in captured.err  # progress
    assert files(out) == [
        ".jaxgd-files",
        "config.toml",
        "plots",
        "plots/best_per_batch_size.png",
        "plots/heatmap.png",
        "plots/loss_curves.png",
        "plots/metric_vs_hyperparameters.png",
        "report.html",
        "report.md",
        "result",
        "result/.jaxgd-files",
        "result/COMPLETE",
        "result/arrays.npz",
        "result/result.json",
        "results.csv",
        "results.json",
    ]
    saved = jaxgd.SweepResult.load(out / "result")
    assert saved.configs[3] == {
        "optimizer": "sgd",
        "learning_rate": 0.3,
        "momentum": 0.9,
        "batch_size": 5,
        "seed": 1,
    }
    table = rows(out / "results.csv")
    assert len(table) == 12
    for column in ("learning_rate", "momentum", "seed", "final_train_loss", "best_train_loss"):
        assert column in table[0]
    assert {r["status"] for r in table} == {"running"}
    assert {r["updates"] for r in table} == {"16"} and {r["examples_seen"] for r in table} == {"80"}
    again = runfile.load(out / "config.toml")  # the resolved copy runs the same sweep
    original = runfile.load(tmp_path / "sweep.toml")
    assert list(again.space) == list(original.space)
    assert again.sweep_kwargs == original.sweep_kwargs
    json.loads((out / "results.json").read_text())


def test_quiet_and_set(tmp_path, capsys):
    (tmp_path / "sweep.toml").write_text(SWEEP)
    out = tmp_path / "quiet"
    arguments = ["run", str(tmp_path / "sweep.toml"), "--out", str(out), "--quiet"]
    arguments += ["--set", "sweep.epochs=2", "--set", "space.parameters.seed=[3]"]
    arguments += ["--set", "report.plots=false"]  # the report's tables alone
    assert main(arguments) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.startswith("Wrote results.csv")
    table = rows(out / "results.csv")
    assert len(table) == 6 and {r["seed"] for r in table} == {"3"}
    assert {r["updates"] for r in table} == {"8"}


# Each refused input: the arguments (CONFIG is the sweep file above), the text the file
# gets (None: as above), and a fragment of the one-line message.
REFUSED = [
    (["run"], None, "the following arguments are required: CONFIG.toml"),
    (["run", "CONFIG", "--bogus"], None, "unrecognized arguments: --bogus"),
    (["fly"], None, "invalid choice: 'fly'"),
    (["run", "missing.toml"], None, "CONFIG='missing.toml': does not exist"),
    (["run", "CONFIG"], SWEEP.replace("epochs = 4", "epochs = -1"), "sweep.toml:5: sweep.epochs"),
    (["run", "CONFIG"], SWEEP.replace("[sweep]", "[sweeps]"), "did you mean 'sweep'"),
    (["run", "CONFIG", "--set", "sweep.epochs=0"], None, "--set sweep.epochs: sweep.epochs: 0"),
    (["run", "CONFIG", "--set", "nonsense"], None, "expected KEY=VALUE"),
    (["run", "CONFIG"], SWEEP.replace("batch_size = 5", "batch_size = 50"), "20 training"),
    (["run", "CONFIG", "--out", "FILE"], None, "is a file"),
    (["run", "CONFIG", "--out", "FULL"], None, "holds another run's results (results.csv)"),
    (["run", "CONFIG"], SWEEP + "[data]\ninputs = 'x.npy'\ntargets = 'y.npy'\n", "x.npy"),
    (["run", "CONFIG", "--resume"], None, "--resume: sweep.toml has no [checkpoint] table"),
    (["run", "CONFIG", "--resume", "--overwrite", "--out", "FULL"], None, "contradict"),
]


@pytest.mark.parametrize(("arguments", "text", "fragment"), REFUSED, ids=[r[2] for r in REFUSED])
def test_refused_input_is_one_line_exit_2_nothing_written(
    tmp_path, monkeypatch, capsys, arguments, text, fragment
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sweep.toml").write_text(SWEEP if text is None else text)
    (tmp_path / "FILE").write_text("not a folder")
    (tmp_path / "FULL").mkdir()
    (tmp_path / "FULL" / "results.csv").write_text("an earlier run")
    before = files(tmp_path)
    names = {"CONFIG": "sweep.toml"}
    arguments = [names.get(a, a) for a in arguments]
    try:
        code = main(arguments)
    except SystemExit as exit:  # argparse exits by itself
        code = exit.code
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxgd: error: "), captured.err
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    assert files(tmp_path) == before
    assert (tmp_path / "FULL" / "results.csv").read_text() == "an earlier run"


def test_overwrite_replaces_an_earlier_run(tmp_path):
    (tmp_path / "sweep.toml").write_text(SWEEP)
    out = tmp_path / "out"
    arguments = ["run", str(tmp_path / "sweep.toml"), "--out", str(out), "--quiet"]
    assert main(arguments + ["--set", "sweep.epochs=1"]) == 0
    assert (out / "plots" / "heatmap.png").exists()  # a grid
    (out / "notes.txt").write_text("the user's own file")
    random = ["--set", "space.method=random", "--set", "space.count=5"]
    assert main(arguments + random) == 2  # refused: the folder holds a run
    assert len(rows(out / "results.csv")) == 12
    assert main(arguments + random + ["--overwrite"]) == 0
    assert len(rows(out / "results.csv")) == 5
    assert not (out / "plots" / "heatmap.png").exists()  # the old plots are not mixed in
    assert (out / "plots" / "parallel_coordinates.png").exists()
    assert (out / "notes.txt").read_text() == "the user's own file"
    assert len(jaxgd.SweepResult.load(out / "result")) == 5


def test_checkpoint_and_resume(tmp_path, capsys):
    """A [checkpoint] run leaves checkpoints; --resume continues from them to the same
    results; a changed file is refused by what differs. (No plots: nothing here reads
    them, and five runs would draw them five times.)"""
    no_plots = "[report]\nplots = false\n"
    (tmp_path / "sweep.toml").write_text(SWEEP + "[checkpoint]\nevery = 2\n" + no_plots)
    out = tmp_path / "out"
    arguments = ["run", str(tmp_path / "sweep.toml"), "--out", str(out), "--quiet"]
    assert main(arguments) == 0
    assert (out / "checkpoints").is_dir() and any((out / "checkpoints").iterdir())
    first = jaxgd.SweepResult.load(out / "result")
    assert main(arguments) == 2  # the folder holds a run
    assert main(arguments + ["--resume"]) == 0
    again = jaxgd.SweepResult.load(out / "result")
    np.testing.assert_array_equal(again.history["train_loss"], first.history["train_loss"])
    capsys.readouterr()
    assert main(arguments + ["--resume", "--set", "sweep.epochs=6"]) == 2
    assert "jaxgd: error: " in capsys.readouterr().err
    assert main(arguments + ["--overwrite", "--set", "sweep.epochs=2"]) == 0
    assert len(jaxgd.SweepResult.load(out / "result").history["train_loss"][0]) == 2
    # Without [checkpoint], --overwrite also clears the earlier run's checkpoints.
    (tmp_path / "plain.toml").write_text(SWEEP + no_plots)
    plain = ["run", str(tmp_path / "plain.toml"), "--out", str(out), "--quiet", "--overwrite"]
    assert main(plain) == 0
    assert not (out / "checkpoints").exists()


def test_console_script_version_help_and_no_traceback(tmp_path):
    command = [sys.executable, "-m", "jaxgd"]
    version = subprocess.run(command + ["--version"], capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.strip() == f"jaxgd {jaxgd.__version__}"
    helped = subprocess.run(command + ["--help"], capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0
    for fragment in ("run", "demo", "bench", "examples:", "jaxgd run examples/digits_adam.toml"):
        assert fragment in helped.stdout
    (tmp_path / "bad.toml").write_text(SWEEP.replace("momentum", "momentom"))
    refused = subprocess.run(
        command + ["run", str(tmp_path / "bad.toml")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.count("\n") == 1 and "did you mean 'momentum'" in refused.stderr
    assert files(tmp_path) == ["bad.toml"]


def test_bench_from_the_checkout_and_without_it(tmp_path, monkeypatch, capsys):
    # The harness's own parser answers (tests/test_benchmark.py runs the benchmark itself).
    with pytest.raises(SystemExit) as exit:
        main(["bench", "--help"])
    assert exit.value.code == 0
    assert "usage: python benchmarks/throughput.py" in capsys.readouterr().out
    (tmp_path / "file").write_text("x")
    for out in (["--out", str(tmp_path / "file")], [f"--out={tmp_path / 'file'}"]):
        assert main(["bench", "--quick", *out]) == 2
        assert "is a file" in capsys.readouterr().err
    # An installed package has no benchmarks/ beside it: a clear message, no traceback.
    import jaxgd.cli

    monkeypatch.setattr(jaxgd.cli, "__file__", str(tmp_path / "site" / "jaxgd" / "cli.py"))
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--quick"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxgd: error: jaxgd bench runs benchmarks/throughput.py of a source")
    assert err.count("\n") == 1


def run_example(name: str, out: pathlib.Path, *overrides: str, plots: bool = False) -> pathlib.Path:
    """Run examples/NAME with ``--set`` overrides; without its plots unless the test reads
    them (drawing is most of a small run's time)."""
    arguments = ["run", str(EXAMPLES / name), "--out", str(out), "--quiet"]
    for override in [*overrides, *([] if plots else ["report.plots=false"])]:
        arguments += ["--set", override]
    assert main(arguments) == 0
    return out


def test_example_linear_regression(tmp_path):
    (row,) = rows(run_example("linear_regression.toml", tmp_path / "o") / "results.csv")
    assert row["updates"] == "20" and row["learning_rate"] == "0.1" and row["batch_size"] == "10"
    assert float(row["final_train_loss"]) < 1.5  # noise variance 1: near least squares


def test_example_partial_last_batch(tmp_path):
    (row,) = rows(run_example("partial_last_batch.toml", tmp_path / "o") / "results.csv")
    assert row["updates"] == "33" and row["examples_seen"] == "3150"  # 11 updates per epoch
    again = tmp_path / "drop"
    (row,) = rows(
        run_example("partial_last_batch.toml", again, "sweep.drop_last=true") / "results.csv"
    )
    assert row["updates"] == "30" and row["examples_seen"] == "3000"


def test_example_parabola_momentum_matches_heavy_ball(tmp_path):
    steps = 20
    out = run_example(
        "parabola_momentum.toml",
        tmp_path / "o",
        f"sweep.epochs={steps}",
        "options.epochs_per_chunk=10",
    )
    for row in rows(out / "results.csv"):
        # v <- m v - lr x/3, x <- x + v; the epoch's loss is f at the step's start.
        momentum, x, v = float(row["momentum"]), 3.0, 0.0
        for _ in range(steps - 1):
            v = momentum * v - 0.3 * x / 3
            x = x + v
        np.testing.assert_allclose(float(row["final_train_loss"]), x**2 / 6, rtol=1e-4)


@pytest.mark.slow
def test_example_digits_adam(tmp_path):
    out = run_example("digits_adam.toml", tmp_path / "o", "sweep.epochs=3")
    table = rows(out / "results.csv")
    assert len(table) == 6 and {r["batch_size"] for r in table} == {"128"}
    assert max(float(r["final_val_accuracy"]) for r in table) > 0.85
    assert "final val_accuracy" in (out / "report.md").read_text()


@pytest.mark.slow
def test_example_digits_random_search_halving(tmp_path):
    out = run_example("digits_random_search.toml", tmp_path / "o", "sweep.epochs=3", plots=True)
    table = rows(out / "results.csv")
    assert len(table) == 64
    assert sum(r["status"] == "stopped" for r in table) == 64 - 21  # rung at epoch 2 keeps 21
    assert (out / "plots" / "parallel_coordinates.png").stat().st_size > 10_000


@pytest.mark.slow
def test_example_digits_sgd_grid(tmp_path):
    out = run_example("digits_sgd_grid.toml", tmp_path / "o", "sweep.epochs=1", plots=True)
    assert len(rows(out / "results.csv")) == 72
    assert (out / "plots" / "heatmap.png").stat().st_size > 10_000


def test_example_digits_noise_scale(tmp_path):
    """A cosine schedule as long as the run, Nesterov momentum and the noise scale: every
    config's schedule ends at its last update, and B_simple is measured in the epoch."""
    out = run_example(
        "digits_noise_scale.toml",
        tmp_path / "o",
        "sweep.epochs=1",
        "space.parameters.decay_epochs=1.0",
    )
    table = rows(out / "results.csv")
    assert len(table) == 4 and {r["batch_size"] for r in table} == {"32", "128"}
    # From the start, |G|² is far from 0, so its unbiased estimate and B_simple are > 0.
    for row in table:
        assert float(row["final_b_simple"]) > 0 and float(row["final_grad_trace"]) > 0
    result = jaxgd.SweepResult.load(out / "result")
    assert result.history["b_simple"].shape == (4, 1)
    updates = [int(row["updates"]) for row in table]
    assert [c["decay_steps"] for c in result.configs] == updates  # decays to 0 at the end
    assert result.configs[0]["schedule"] == "cosine"
    config = runfile.load(out / "config.toml")
    assert config.sweep_kwargs["optimizer"] == jaxgd.optimizer("sgd", nesterov=True)
    assert config.sweep_kwargs["measure"] == ["noise_scale"]


def test_every_example_file_is_run_here():
    source = pathlib.Path(__file__).read_text()
    for path in EXAMPLES.glob("*.toml"):
        assert f'"{path.name}"' in source, f"{path.name} has no test"


def test_a_problem_module_beside_the_file(tmp_path):
    (tmp_path / "tiny.py").write_text(
        textwrap.dedent(
            """
            import jaxgd

            def make():
                return jaxgd.problems.multiple_regression(num_examples=40, num_features=2)
            """
        )
    )
    (tmp_path / "sweep.toml").write_text(SWEEP.replace('"linear_regression"', '"tiny:make"'))
    arguments = ["run", str(tmp_path / "sweep.toml"), "--out", str(tmp_path / "o"), "--quiet"]
    assert main([*arguments, "--set", "report.plots=false"]) == 0
    assert len(rows(tmp_path / "o" / "results.csv")) == 12
