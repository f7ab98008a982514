"""Keep the README true: its code blocks run as-is, its links and commands exist."""

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def python_block(heading: str, index: int = 0) -> str:
    """The first (or ``index``-th) ```python block after the line ``## <heading>``."""
    section = README.split(f"\n## {heading}\n", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert len(blocks) > index, f"no python block {index} under ## {heading}"
    return blocks[index]


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


def test_examples_split_example_runs_as_is(tmp_path):
    completed = run(python_block("Many devices and many hosts", index=1), tmp_path)
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert completed.stdout.strip() == "grouped (2, 2)"


def block(heading: str, language: str) -> str:
    """The first ```<language> block after the line ``## <heading>``."""
    section = README.split(f"\n## {heading}\n", 1)[1]
    match = re.search(rf"```{language}\n(.*?)```", section, re.DOTALL)
    assert match, f"no {language} block under ## {heading}"
    return match.group(1)


RUN_HEADING = "A sweep from a file: `jaxgd run`"


@pytest.mark.slow
def test_jaxgd_run_section_runs_as_is(tmp_path):
    """The README's sweep file and the commands under it, run as written."""
    (tmp_path / "sweep.toml").write_text(block(RUN_HEADING, "toml"))
    commands = [line.split("#")[0].split() for line in block(RUN_HEADING, "sh").splitlines()]
    for command in commands:
        assert command[0] == "jaxgd"
        completed = subprocess.run(
            [sys.executable, "-W", "error", "-m", "jaxgd", *command[1:]],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
        assert completed.returncode == 0, completed.stderr[-4000:]
    for folder, configs in (("runs/sweep", 24), ("runs/short", 24)):
        table = (tmp_path / folder / "results.csv").read_text().splitlines()
        assert len(table) == 1 + configs
        assert (tmp_path / folder / "report.html").stat().st_size > 50_000
    assert "val_accuracy" in (tmp_path / "runs/sweep/report.md").read_text()


def test_code_fences_stand_alone():
    """A fence with text after it does not close its block: the rest would render as code."""
    fences = [line for line in README.splitlines() if line.startswith("```")]
    assert all(re.fullmatch(r"```\w*", line) for line in fences), fences
    assert len(fences) % 2 == 0


def test_jaxgd_run_excerpt_is_the_example_files():
    """The second sweep file under the heading is cut from the example the README links
    next to it (run by tests/test_cli_run.py), line for line."""
    section = README.split(f"\n## {RUN_HEADING}\n", 1)[1].split("\n## ", 1)[0]
    excerpt = re.findall(r"```toml\n(.*?)```", section, re.DOTALL)[1]
    example = (ROOT / "examples" / "digits_noise_scale.toml").read_text().splitlines()
    code = [line.split("#")[0].rstrip() for line in example]
    for line in excerpt.strip().splitlines():
        assert line.split("#")[0].rstrip() in code, line


def test_jaxgd_run_error_shown_is_the_one_printed(tmp_path, monkeypatch, capsys):
    from jaxgd.cli import main

    shown = next(line for line in README.splitlines() if line.startswith("jaxgd: error: "))
    text = block(RUN_HEADING, "toml").replace("momentum = ", "momentun = ")
    (tmp_path / "sweep.toml").write_text(text)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "sweep.toml"]) == 2
    assert capsys.readouterr().err.strip() == shown


def test_jaxgd_run_section_installs_extras_that_exist():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for extra in re.findall(r"pip install (?:-e )?'(?:jaxgd|\.)\[(\w+)\]'", README):
        assert extra in extras["optional-dependencies"], extra


def test_data_larger_than_memory_example_runs_as_is(tmp_path):
    completed = run(python_block("Data larger than memory"), tmp_path)
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "streamed True" in completed.stdout
