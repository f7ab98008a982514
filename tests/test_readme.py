"""Keep the README true: its code blocks run as-is, its links and commands exist."""

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def python_block(heading: str) -> str:
    """The first ```python block after the line ``## <heading>``."""
    section = README.split(f"\n## {heading}\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, f"no python block under ## {heading}"
    return match.group(1)


def run(code: str, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    # Run as a user would, with warnings as errors and the suite's strict dtype and rank
    # promotion (tests/conftest.py).
    prelude = (
        "import jax; jax.config.update('jax_numpy_dtype_promotion', 'strict'); "
        "jax.config.update('jax_numpy_rank_promotion', 'raise')\n"
    )
    script = cwd / "readme_block.py"
    script.write_text(prelude + code)
    return subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def test_quickstart_runs_as_is(tmp_path):
    code = python_block("Quickstart")
    assert len(code.strip().splitlines()) <= 25, "the quickstart must stay within 25 lines"
    completed = run(code, tmp_path)
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "final_val_loss" in completed.stdout
    assert "best: lr" in completed.stdout


def test_sweep_example_runs_as_is(tmp_path):
    completed = run(python_block("A sweep"), tmp_path)
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "(24, 5)" in completed.stdout
    for name in ("results.csv", "results.json", "loss_curves.png", "val_loss_heatmap.png"):
        assert (tmp_path / "runs" / "digits" / name).stat().st_size > 0


@pytest.mark.slow
def test_bring_your_own_example_runs_as_is(tmp_path):
    pytest.importorskip("equinox")
    pytest.importorskip("optuna")
    completed = run(python_block("Bring your own model, schedule and search"), tmp_path)
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "decay_steps" in completed.stdout and "best: {'learning_rate'" in completed.stdout


def test_mixed_batch_example_runs_as_is(tmp_path):
    completed = run(python_block("Mixed batch sizes"), tmp_path)
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "[ 16  16  64  64 256 256]" in completed.stdout


def test_the_two_commands_exist():
    makefile = (ROOT / "Makefile").read_text()
    for command in ("demo", "test"):
        assert f"make {command}" in README
        assert re.search(rf"^{command}:", makefile, re.MULTILINE), f"no `{command}` target"
    assert "$(VENV)/bin/jaxgd demo --out runs/demo" in makefile


@pytest.mark.parametrize("link", sorted(set(re.findall(r"\]\(([^)#]+)\)", README))))
def test_links_point_to_files(link):
    if link.startswith("http"):
        pytest.skip("external link")
    assert (ROOT / link).exists(), f"README links to {link}, which does not exist"


def test_every_example_is_in_the_readme():
    for script in sorted((ROOT / "examples").glob("*.py")):
        assert f"examples/{script.name}" in README, f"{script.name} is not in the README"


def test_every_builtin_problem_is_in_the_readme():
    import jaxgd

    for name in jaxgd.problems.__all__:
        if name in ("load_digits", "least_squares", "conv2d"):
            continue  # helpers, named in the rows of the problems they serve
        assert f"`{name}`" in README, f"built-in problem {name} is not in the README table"


def test_callbacks_example_runs_as_is(tmp_path):
    completed = run(python_block("Callbacks, early stopping and successive halving"), tmp_path)
    assert completed.returncode == 0, completed.stderr[-4000:]
    lines = completed.stdout.splitlines()
    assert lines[0] == "Counter({1: 16, 3: 6, -1: 2})"
    assert "'status': 'running'" in lines[1]


def test_checkpoint_example_runs_as_is_and_resumes(tmp_path):
    code = python_block("Checkpoints, resume and saved results")
    first = run(code, tmp_path)
    assert first.returncode == 0, first.stderr[-4000:]
    assert (tmp_path / "runs" / "saved" / "COMPLETE").is_file()
    # Run again: it resumes from the finished checkpoint and prints the same line.
    second = run(code, tmp_path)
    assert second.returncode == 0, second.stderr[-4000:]
    assert first.stdout == second.stdout


def test_devices_example_runs_as_is(tmp_path):
    completed = run(python_block("Many devices and many hosts"), tmp_path)
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert completed.stdout.strip() == "1 (3, 2)"
