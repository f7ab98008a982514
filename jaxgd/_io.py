"""Host-side helpers shared by the writers: one atomic writer, one optional import, one
plain-text table.

Private: the public writers (``SweepResult.to_csv``, ``jaxgd.plots``, the demo) call these,
so that every file jaxgd writes is written the same way.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

from .distributed import is_writer

__all__ = ["atomic_write", "optional_import", "format_table"]


def atomic_write(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a
    half-written one.

    The data goes to a temporary file in the same folder (``.tmp-*``, so ``os.replace`` is
    a rename within one file system), is flushed to disk, then renamed over ``path``. On
    any failure the temporary file is removed and ``path`` is left as it was. Text is
    written as UTF-8 with its line endings unchanged; the file gets mode 0o644 (results are
    meant to be shared; ``mkstemp`` alone would give 0o600). Missing folders are created.
    In a multi-process sweep only process 0 writes (``jaxgd.distributed``).

    Args:
        path: the file to write.
        data: its whole content, ``str`` or ``bytes``.

    Example:
        >>> import pathlib, tempfile
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> atomic_write(folder / "notes.txt", "one line\\n")
        >>> (folder / "notes.txt").read_text(), [p.name for p in folder.iterdir()]
        ('one line\\n', ['notes.txt'])
    """
    if isinstance(data, str):
        payload = data.encode("utf-8")
    elif isinstance(data, (bytes, bytearray, memoryview)):
        payload = bytes(data)
    else:
        raise TypeError(f"atomic_write: data must be str or bytes, got {type(data).__name__}")
    if not is_writer():
        return
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix="-" + os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())  # the rename must not land before the bytes do
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def optional_import(module: str, *, extra: str, feature: str) -> ModuleType:
    """Import an optional dependency, or say which extra installs it.

    Args:
        module: the module to import, e.g. ``"matplotlib"``.
        extra: the ``jaxgd[...]`` extra that provides it, e.g. ``"plot"``.
        feature: what needs it, as the user called it, e.g. ``"jaxgd.plots"``.

    Returns:
        The imported module.

    Raises:
        ImportError: ``"<feature> needs <module>: pip install 'jaxgd[<extra>]'"``, chained
            from the original error.

    Example:
        >>> optional_import("json", extra="all", feature="this example").__name__
        'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{feature} needs {module}: pip install 'jaxgd[{extra}]'", name=module
        ) from error


def format_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], max_rows: int | None = None
) -> str:
    """A plain-text table for terminals: a header line, then one line per row.

    Cells are right-aligned under their column names; floats are written with 4
    significant digits (``.4g``); a missing cell is blank and trailing blanks are trimmed.
    With ``max_rows``, only the first ``max_rows`` rows are shown, followed by a line
    ``... N more rows``.

    Example:
        >>> print(format_table([{"lr": 0.1, "loss": 0.123456}, {"lr": 1.0}], ["lr", "loss"]))
         lr    loss
        0.1  0.1235
          1
    """
    if max_rows is not None and max_rows < 0:
        raise ValueError(f"max_rows={max_rows!r}: must be None or a non-negative integer")
    shown = rows if max_rows is None else rows[:max_rows]
    cells = [[_format_cell(row.get(column, "")) for column in columns] for row in shown]
    widths = [
        max([len(column)] + [len(line[j]) for line in cells]) for j, column in enumerate(columns)
    ]
    lines = ["  ".join(column.rjust(w) for column, w in zip(columns, widths))]
    lines += ["  ".join(cell.rjust(w) for cell, w in zip(line, widths)) for line in cells]
    if len(rows) > len(shown):
        lines.append(f"... {len(rows) - len(shown)} more rows")
    return "\n".join(line.rstrip() for line in lines)


def _format_cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
