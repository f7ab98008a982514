"""Every script in examples/ runs to completion and prints what it promises."""

import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"

# Per script, lines (or fragments) its output must contain.
EXPECTED = {
    "linear_regression.py": ["least squares:", "SGD,  10 epochs:", "(20 updates,"],
    "multiple_regression_momentum.py": ["least squares:", "momentum 0.9", "(80 updates)"],
    "parabola_momentum.py": ["jaxgd matches the heavy-ball recurrence at every step"],
    "digits_mlp.py": ["final_val_accuracy", "best: learning rate"],
    "digits_cnn.py": ["final_val_accuracy", "best: learning rate"],
    "equinox_mlp.py": ["same as the dict-of-arrays model", "trained model back as MLP"],
    "flax_mlp.py": [
        "nnx: same as the dict-of-arrays model",
        "linen: same as the dict-of-arrays model",
    ],
    "sgd_vs_minibatch_vs_fullbatch.py": [
        "SGD (batch 1):  4000 updates",
        "mini-batch 32:   140 updates",
        "full batch 200:    20 updates",
    ],
    "partial_last_batch.py": [
        "BatchPlan(1050, 100): 11 steps, last batch 50",
        "drop_last=False: 11 updates per epoch, 1050 examples per epoch",
        "drop_last=True : 10 updates per epoch, 1000 examples per epoch",
    ],
}


def test_every_example_is_listed():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name):
    # -W error: the scripts are held to the suite's rule that warnings are errors.
    completed = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=EXAMPLES.parent,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    for fragment in EXPECTED[name]:
        assert fragment in completed.stdout, f"{fragment!r} not in:\n{completed.stdout}"
    if name.startswith("digits_"):
        best = next(line for line in completed.stdout.splitlines() if line.startswith("best:"))
        accuracy = float(best.split("validation accuracy ")[1].split()[0])
        assert accuracy > 0.95, best
