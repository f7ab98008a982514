"""The issue-11 benchmark scripts run and write what benchmarks/README.md reads from them
(tiny sizes; the numbers themselves are the scripts' business, not the tests')."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("XLA_FLAGS", None)
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


@pytest.mark.slow
def test_bookkeeping_and_large_sweep(tmp_path):
    # two fresh processes (the default is three): the repeated runs and their median
    _run("bookkeeping.py", "--configs", "500", "--repeats", "2", out=tmp_path)
    book = json.loads((tmp_path / "bookkeeping.json").read_text())
    parts = book["compile_seconds"] + book["run_seconds"] + book["outside_compiled_seconds"]
    assert book["configs"] == 500 and parts == pytest.approx(book["wall_seconds"])
    assert book["repeats"] == len(book["runs"]) == 2
    _run(
        "large_sweep.py",
        "--configs",
        "300",
        "--num-examples",
        "60",
        "--max-memory",
        "40000000",
        out=tmp_path,
    )
    large = json.loads((tmp_path / "large_sweep_300.json").read_text())
    assert sum(large["slice_configs"]) == 300 and large["slices"] > 1
    assert large["planned_bytes_largest_slice"] <= 40_000_000


@pytest.mark.slow
def test_device_scaling_on_simulated_devices(tmp_path):
    _run(
        "device_scaling.py",
        "--devices",
        "1,2",
        "--configs",
        "8",
        "--epochs",
        "1",
        "--repeats",
        "1",
        "--split",
        "1x2",
        out=tmp_path,
    )
    report = json.loads((tmp_path / "device_scaling.json").read_text())
    assert report["simulated"] and set(report["median_seconds"]) == {"1", "2", "1x2"}
    assert report["max_loss_difference_vs_one"]["2"] < 1e-5
    assert report["max_loss_difference_vs_one"]["1x2"] < 1e-5


@pytest.mark.slow
def test_cold_start(tmp_path):
    _run("cold_start.py", "--repeats", "1", "--configs", "4", "--epochs", "1", out=tmp_path)
    report = json.loads((tmp_path / "cold_start.json").read_text())
    median = report["median"]
    assert set(median) == {"jaxgd_first", "jaxgd_second", "jaxgd_off", "jax_scan_vmap"}
    assert all(m["compile_seconds"] > 0 for m in median.values())
