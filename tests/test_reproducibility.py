"""Same seed, same machine: the same result, bitwise, in another process."""

import json
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

import jaxgd

ROOT = pathlib.Path(__file__).resolve().parent.parent
# A bare environment (nothing of the suite's, XLA_FLAGS included) with the disk cache off:
# each child compiles its own programs (a loaded executable would make the second child's
# result equal by construction), and nothing is written to ~/.cache.
ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "JAXGD_CACHE_DIR": ""}

SCRIPT = """
import sys
import jaxgd

problem, data = jaxgd.problems.digits_mlp(hidden=(16,))
space = jaxgd.grid(learning_rate=[0.03, 0.3], momentum=[0.0, 0.9], batch_size=[16, 100],
                   seed=[0, 1]) + jaxgd.grid(optimizer=["adam"], learning_rate=[1e-3],
                                             batch_size=[16], seed=[2])
result = jaxgd.sweep(problem, data, space=space, epochs=2, return_params=True)
result.save(sys.argv[1])
"""


@pytest.mark.slow
def test_same_seed_is_bitwise_across_processes(tmp_path):
    results = []
    for name in ("first", "second"):
        completed = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(tmp_path / name)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
            env=ENV,
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        results.append(jaxgd.SweepResult.load(tmp_path / name))
    first, second = results
    assert first.configs == second.configs
    for name in first.history:
        np.testing.assert_array_equal(first.history[name], second.history[name], err_msg=name)
    for a, b in zip(jax.tree.leaves(first.params), jax.tree.leaves(second.params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(first.history["val_loss"]).all()


@pytest.mark.slow
def test_reproducibility_script_quick(tmp_path):
    """The README's tolerances come from benchmarks/reproducibility.py: its quick mode
    runs, the same call is bitwise, and every way of running agrees to float rounding."""
    out = tmp_path / "reproducibility.json"
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "reproducibility.py"),
            "--quick",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=ENV,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert results["same call again"]["params"]["bitwise"]
    assert len(results) == 7
    for name, difference in results.items():
        for what in ("params", "val_loss"):
            assert difference[what]["max_rel"] < 1e-4, (name, what, difference[what])
