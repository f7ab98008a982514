"""Smoke test of the throughput benchmark at a tiny size: structure and same work.

No timing assertions: timings belong in benchmarks. Every method trains the same configs
from the same parameters in the same data order, so their final losses agree.
"""

import importlib.util
import json
import pathlib
import sys

import numpy as np
import pytest

# The harness is an application in benchmarks/, not part of the installed package.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))

from harness import cli, report, runner, workload  # noqa: E402

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
COMMITTED = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "mlp.json"


def test_quick_benchmark_writes_json_and_methods_agree(tmp_path):
    without_torch = ("jaxgd", "jaxgd_single", "optax_loop", "jax_scan_vmap")
    methods = list(runner.METHODS if HAS_TORCH else without_torch)
    assert "jax_scan_vmap" in methods
    # 200 examples with batch 16: 13 steps per epoch, the last over 8 examples.
    code = cli.main(
        ["--quick", "--methods", ",".join(methods), "--out", str(tmp_path), "--no-plots"]
    )
    assert code == 0
    result = json.loads((tmp_path / "mlp.json").read_text())

    assert result["schema"] == runner.SCHEMA
    for field in ("platform", "device_kind", "cpu_model", "cpu_cores", "jax_version"):
        assert field in result["device"]
    assert result["dtype"] == "float32"
    assert result["peak"]["flops_per_second"] > 0
    assert result["methods"] == methods
    points = result["points"]
    assert {(p["sweep"], p["method"]) for p in points} == {
        (sweep, method) for sweep in ("batch_size", "configs") for method in methods
    }
    for point in points:
        for field in (
            "compile_seconds",
            "run_seconds_median",
            "run_seconds_iqr",
            "steps_per_second",
            "examples_per_second_per_config",
            "config_examples_per_second",
            "timed_steps",
            "extrapolated",
            "mfu",
        ):
            assert field in point, field
        assert len(point["run_seconds"]) == result["repeats"]
        assert point["flops_per_step"] > 0
        assert point["steps_per_config"] == 2 * -(-200 // point["batch_size"])

    reference = {
        (p["sweep"], p["batch_size"], p["configs"]): p["final_train_loss"]
        for p in points
        if p["method"] == "jaxgd"
    }
    for point in points:
        losses = point["final_train_loss"]
        assert losses is not None and len(losses) == point["configs"]
        expected = reference[(point["sweep"], point["batch_size"], point["configs"])]
        np.testing.assert_allclose(losses, expected, rtol=1e-3, atol=1e-4, err_msg=point["method"])
    assert set(result["goals"]["speedup_over"]) == set(methods) - {"jaxgd"}
    # Goals are checked, not asserted: timings belong in benchmarks.
    targets = {target["method"]: target for target in result["goals"]["targets"]}
    assert targets["jax_scan_vmap"]["ratio"] == 1.0
    assert set(targets["jax_scan_vmap"]["ratios"]) == {"16", "200"}
    assert targets["jax_scan_vmap"]["met"] in (True, False)


@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is optional (jaxgd[bench])")
@pytest.mark.parametrize("problem", ["digits_cnn", "linear_regression"])
def test_other_problems_agree_with_torch(tmp_path, problem):
    methods = "jaxgd,optax_loop,jax_scan_vmap,torch_eager,torch_func"
    args = ["--quick", "--problem", problem, "--methods", methods, "--batch-sizes", "32"]
    # The configs sweep at the batch-size sweep's B=32, K=4: one point, measured once.
    args += ["--configs", "4", "--configs-batch-size", "32"]
    assert cli.main([*args, "--out", str(tmp_path), "--no-plots"]) == 0
    result = json.loads((tmp_path / f"{problem}.json").read_text())
    assert {(p["batch_size"], p["configs"]) for p in result["points"]} == {(32, 4)}
    losses = {p["method"]: p["final_train_loss"] for p in result["points"]}
    assert sorted(losses) == sorted(methods.split(","))
    for method, values in losses.items():
        np.testing.assert_allclose(values, losses["jaxgd"], rtol=1e-3, atol=1e-4, err_msg=method)


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        cli.main(["--methods", "jaxgd,keras"])
    with pytest.raises(SystemExit):
        cli.main(["--quick", "--batch-sizes", "500"])


def test_configs_are_a_grid():
    configs = workload.make_configs(16)
    assert len(configs) == 16
    assert len({c["learning_rate"] for c in configs}) == 4
    assert len({c["momentum"] for c in configs}) == 4


def test_report_reads_the_committed_results(tmp_path):
    """Old results (before jax_scan_vmap and goal targets) still tabulate and check."""
    result = json.loads(COMMITTED.read_text())
    assert result["schema"] == runner.SCHEMA
    assert "| 4096 |" in report.results_table(result)
    goals = report.goal_ratios(result["points"], result["goals"]["configs"])
    targets = {target["method"]: target for target in goals["targets"]}
    assert targets["jax_scan_vmap"]["met"] is None  # not measured in that run
    assert targets["torch_eager"]["met"] is False  # 3.4x at B=128 against 5x


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib is optional (jaxgd[plot])")
def test_plots_leave_pyplot_alone(tmp_path):
    had_pyplot = "matplotlib.pyplot" in sys.modules
    paths = report.write_plots(json.loads(COMMITTED.read_text()), str(tmp_path))
    assert [pathlib.Path(p).name for p in paths] == ["mlp_vs_batch_size.png", "mlp_vs_configs.png"]
    for path in paths:
        assert pathlib.Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert ("matplotlib.pyplot" in sys.modules) == had_pyplot


@pytest.mark.slow
def test_successive_halving_benchmark_quick_run(tmp_path):
    """The halving benchmark's quick mode: fresh worker processes, the JSON, and the
    full sweep's best config, when it survives every rung, has the same result."""
    import subprocess

    script = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "successive_halving.py"
    completed = subprocess.run(
        [sys.executable, str(script), "--quick", "--rebuild", "false", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    document = json.loads((tmp_path / "successive_halving_quick.json").read_text())
    summary = document["summary"]
    assert summary["full"]["config_epochs"] == 9 * 9
    assert summary["halving"]["config_epochs"] == 9 * 1 + 3 * 2 + 1 * 6  # rungs at 1 and 3
    assert summary["halving"]["status_counts"]["stopped"] == 8
    if document["comparison"]["full_best_survived"]:
        assert document["comparison"]["equal"]


def test_noise_scale_cost_benchmark_runs_both_strategies(tmp_path):
    """The benchmark README's noise-scale cost command, on one small batch size."""
    import subprocess

    script = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "noise_scale_cost.py"
    out = tmp_path / "noise.json"
    completed = subprocess.run(
        [sys.executable, str(script), "--batch-sizes", "64", "--configs", "2"]
        + ["--repeats", "1", "--strategies", "grouped,accumulate", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    document = json.loads(out.read_text())
    assert [(r["strategy"], r["batch_size"]) for r in document["results"]] == [
        ("grouped", 64),
        ("accumulate", 64),
    ]
    assert all(r["ratio"] > 0 for r in document["results"])
    assert len(document["loadavg_before"]) == 3 and len(document["loadavg_after"]) == 3
