"""The ``jaxgd`` command line: ``demo`` writes its table, CSV, JSON and plots."""

import csv
import json
import pathlib
import subprocess
import sys

import pytest

from jaxgd.cli import QUICK, main

CONSOLE_SCRIPT = pathlib.Path(sys.executable).parent / "jaxgd"
PLOTS = ["loss_curves.png", "val_loss_heatmap.png", "multiple_regression.png", "parabola.png"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_demo_folder(out: pathlib.Path, num_configs: int, plots: bool = True) -> None:
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == num_configs
    for column in ("learning_rate", "momentum", "batch_size", "seed", "final_val_loss"):
        assert column in rows[0]
    document = json.loads((out / "results.json").read_text())
    assert len(document["rows"]) == num_configs
    assert len(document["history"]["val_loss"]) == num_configs
    summary = json.loads((out / "exercises.json").read_text())
    assert summary["compile_seconds"] >= 0 and summary["wall_seconds"] > 0
    linear = summary["exercises"]["linear_regression"]
    assert linear["updates"] == 20  # 20 points, batch 10, 10 epochs
    for name in PLOTS:
        path = out / name
        if plots:
            assert path.read_bytes()[:8] == PNG_SIGNATURE, name
            assert path.stat().st_size > 10_000, name
        else:
            assert not path.exists()
    assert not list(out.glob(".tmp-*")), "temporary files left behind"
    from jaxgd import SweepResult

    assert len(SweepResult.load(out / "result")) == num_configs


def quick_configs() -> int:
    return (
        len(QUICK.learning_rates) * len(QUICK.momenta) * len(QUICK.batch_sizes) * len(QUICK.seeds)
    )


def test_demo_quick(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for fragment in (
        "configs by final validation loss",
        "Best config per batch size",
        "Linear regression",
        "least squares b =",
        "Multiple regression",
        "Parabola",
        "s compiling",
        "Wrote results.csv, results.json",
    ):
        assert fragment in printed, f"{fragment!r} not in:\n{printed}"
    check_demo_folder(out, quick_configs())


def test_demo_no_plots(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--no-plots", "--out", str(out)]) == 0
    assert "png" not in capsys.readouterr().out
    check_demo_folder(out, quick_configs(), plots=False)
    # A second demo into the same folder is refused (`make demo` passes --overwrite).
    assert main(["demo", "--quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxgd: error: output folder") and "--overwrite" in err


def test_console_script_help():
    for args in (["--help"], ["demo", "--help"]):
        completed = subprocess.run(
            [str(CONSOLE_SCRIPT), *args], capture_output=True, text=True, timeout=120
        )
        assert completed.returncode == 0, completed.stderr
        assert "usage: jaxgd" in completed.stdout


def test_unknown_command_is_refused(capsys):
    with pytest.raises(SystemExit) as error:
        main(["train"])
    assert error.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.slow
def test_full_demo_as_make_demo_runs_it(tmp_path):
    """`make demo` runs `jaxgd demo --out runs/demo` (its time is a benchmark's business,
    not a test's: under a loaded machine a wall-time assertion fails for no fault)."""
    out = tmp_path / "demo"
    completed = subprocess.run(
        [str(CONSOLE_SCRIPT), "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    from jaxgd.cli import FULL

    configs = len(FULL.learning_rates) * len(FULL.momenta) * len(FULL.batch_sizes) * len(FULL.seeds)
    check_demo_folder(out, configs)
    assert "Best config per batch size" in completed.stdout
