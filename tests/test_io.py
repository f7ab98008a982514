"""jaxgd._io: the one atomic writer, the one optional-import guard, the one text table."""

import os
import stat
import sys

import numpy as np
import pytest

import jaxgd
from jaxgd import plots
from jaxgd._io import atomic_write, format_table, optional_import


def files_in(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("data", ["a,b\r\n1,2\r\nx²\n", b"\x89PNG\r\n\x1a\n\x00\xff"])
def test_atomic_write_writes_exactly_the_data(tmp_path, data):
    path = tmp_path / "new" / "folder" / "file"
    atomic_write(path, data)
    expected = data.encode("utf-8") if isinstance(data, str) else data
    assert path.read_bytes() == expected  # text: UTF-8, line endings untouched
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert files_in(path.parent) == ["file"]


def test_atomic_write_replaces_an_existing_file(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("old")
    atomic_write(str(path), "new")
    assert path.read_text() == "new"
    assert files_in(tmp_path) == ["results.json"]


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_atomic_write_failure_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch, failing):
    """A failure after the bytes went to the temporary file (disk full at fsync, or the
    rename refused) leaves the old file whole and removes the temporary one."""
    path = tmp_path / "results.csv"
    path.write_text("old, complete")

    def fail(*args, **kwargs):
        raise OSError(f"simulated {failing} failure")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OSError, match=f"simulated {failing}"):
        atomic_write(path, "new, but never seen half-written" * 1000)
    monkeypatch.undo()
    assert path.read_text() == "old, complete"
    assert files_in(tmp_path) == ["results.csv"]


def test_atomic_write_refuses_other_types_before_touching_the_disk(tmp_path):
    with pytest.raises(TypeError, match="str or bytes, got dict"):
        atomic_write(tmp_path / "x.json", {"a": 1})
    assert files_in(tmp_path) == []


def test_optional_import_returns_the_module():
    assert optional_import("json", extra="all", feature="test") is sys.modules["json"]


def test_optional_import_names_the_extra_when_the_module_is_absent(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # what an uninstalled module looks like
    with pytest.raises(ImportError) as error:
        optional_import("pandas", extra="pandas", feature="SweepResult.to_pandas()")
    assert str(error.value) == ("SweepResult.to_pandas() needs pandas: pip install 'jaxgd[pandas]'")
    assert isinstance(error.value.__cause__, ImportError)  # the original error is kept


def small_result() -> jaxgd.SweepResult:
    configs = [{"learning_rate": lr, "seed": 0} for lr in (0.1, 0.01, 0.001)]
    loss = np.array([[1.0, 0.5], [1.0, 0.123456789], [2.0, np.nan]])
    return jaxgd.SweepResult(
        configs=configs,
        history={"train_loss": loss, "val_loss": loss * 2},
        updates=np.full(3, 4),
        examples_seen=np.full(3, 40),
        diverged=np.array([False, False, True]),
        diverged_step=np.array([-1, -1, 3]),
        seconds=np.ones(3),
        compile_seconds=np.ones(3),
    )


@pytest.mark.parametrize(
    "call, module, extra",
    [
        (lambda tmp: small_result().to_pandas(), "pandas", "pandas"),
        (lambda tmp: plots.loss_curves(small_result(), tmp / "c.png"), "matplotlib", "plot"),
        (lambda tmp: jaxgd.problems.load_digits(), "sklearn", "data"),
    ],
)
def test_optional_features_say_which_extra_to_install(tmp_path, monkeypatch, call, module, extra):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=rf"needs {module}: pip install 'jaxgd\[{extra}\]'"):
        call(tmp_path)
    assert files_in(tmp_path) == []


def test_format_table_right_aligns_and_writes_floats_with_4_digits():
    rows = [
        {"name": "sgd", "lr": 0.1, "loss": 0.123456789, "steps": 10},
        {"name": "adam", "lr": 0.001, "loss": float("nan"), "steps": 1000},
        {"name": "lion", "lr": 1e-5},  # missing cells are blank
    ]
    assert format_table(rows, ["name", "lr", "loss", "steps"]).splitlines() == [
        "name     lr    loss  steps",
        " sgd    0.1  0.1235     10",
        "adam  0.001     nan   1000",
        "lion  1e-05",
    ]


def test_format_table_max_rows():
    rows = [{"i": i} for i in range(5)]
    assert format_table(rows, ["i"], max_rows=2).splitlines() == ["i", "0", "1", "... 3 more rows"]
    assert format_table(rows, ["i"], max_rows=5) == format_table(rows, ["i"], max_rows=None)
    assert format_table(rows, ["i"], max_rows=0).splitlines() == ["i", "... 5 more rows"]
    assert format_table([], ["a", "bb"]) == "a  bb"
    with pytest.raises(ValueError, match="max_rows=-1"):
        format_table(rows, ["i"], max_rows=-1)


def test_sweep_result_format_table_delegates():
    result = small_result()
    text = result.format_table(max_rows=2)
    lines = text.splitlines()
    header = lines[0].split()
    assert header == [
        "learning_rate",
        "seed",
        "final_train_loss",
        "final_val_loss",
        "best_val_loss",
        "updates",
        "examples_seen",
        "status",
        "seconds",
    ]
    assert lines[2].split()[:4] == ["0.01", "0", "0.1235", "0.2469"]
    assert lines[-1] == "... 1 more rows"
    columns = ["learning_rate", "final_val_loss"]
    assert result.format_table(columns, max_rows=None) == format_table(
        result.table(), columns, max_rows=None
    )
