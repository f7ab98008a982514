"""Smoke test of benchmarks/search.py at its quick size: every method trains the same
number of configs, the bridge compiles one program for all its rounds, and Optuna's plain
loop on the bridge's trials finds the bridge's values. No timing assertions."""

import json
import pathlib
import sys

import pytest

pytest.importorskip("optuna")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))

import search  # noqa: E402


@pytest.mark.slow
def test_quick_search_benchmark_runs_and_methods_agree(tmp_path):
    methods = ["grid", "tpe", "optuna_loop"]
    arguments = ["--quick", "--problems", "digits", "--methods", ",".join(methods)]
    assert search.main([*arguments, "--out", str(tmp_path)]) == 0
    document = json.loads((tmp_path / "search_quick.json").read_text())
    for field in ("platform", "cpu_model", "cpu_cores"):
        assert field in document["device"]
    assert len(document["load_average_before"]) == 3
    part = document["problems"]["digits"]
    summary = part["summary"]
    assert list(summary) == methods
    assert {s["trained_configs"] for s in summary.values()} == {8}
    # Two rounds of 4 trials cost the compiles of one sweep: the program is reused.
    assert summary["tpe"]["compile_count"] == summary["grid"]["compile_count"]
    tpe = part["runs"]["tpe"][0]
    assert len(tpe["round_seconds"]) == 2
    loop = part["runs"]["optuna_loop"][0]
    assert loop["configs"] == tpe["configs"]
    agreement = part["loops_agree_with_bridge"]["optuna_loop"]
    assert agreement["compared_trials"] >= 6
    assert agreement["within_1e-4"] >= agreement["compared_trials"] - 1
