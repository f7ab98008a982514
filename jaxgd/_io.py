"""Host-side helpers shared by the writers: one atomic writer, one optional import, one
plain-text table.

Private: the public writers (``SweepResult.to_csv``, ``jaxgd.plots``, the demo) call these,
so that every file jaxgd writes is written the same way.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import signal
import tempfile
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

from .distributed import is_writer

__all__ = [
    "atomic_write",
    "optional_import",
    "format_table",
    "MANIFEST",
    "prepare_output_dir",
    "record_output",
    "remove_temporaries",
    "kill_point",
]

# Every folder jaxgd writes a run into lists, in this file, the entries it wrote there:
# "jaxgd's own files". Overwriting a run removes those and nothing else, so a user's notes
# or data kept in the same folder survive.
MANIFEST = ".jaxgd-files"

# Result files of runs from before the manifest: a folder holding them is a run's.
_LEGACY_RESULTS = ("results.csv", "results.json", "exercises.json")


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
    _replace_atomically(path, payload)
    if os.path.basename(path) != MANIFEST and os.path.exists(os.path.join(folder, MANIFEST)):
        record_output(path)


def _replace_atomically(path: str, payload: bytes) -> None:
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix="-" + os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())  # the rename must not land before the bytes do
        os.chmod(tmp, 0o644)
        kill_point("write")
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


def _read_manifest(folder: str) -> list[str]:
    try:
        with open(os.path.join(folder, MANIFEST), encoding="utf-8") as f:
            return [line for line in f.read().splitlines() if line]
    except FileNotFoundError:
        return []


def record_output(path: str | os.PathLike) -> None:
    """Add ``path`` (a file or folder jaxgd wrote) to its folder's manifest, so that a
    later ``prepare_output_dir(..., overwrite=True)`` removes it."""
    if not is_writer():
        return
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    # entries removed since (old checkpoints) leave the list
    names = [n for n in _read_manifest(folder) if os.path.lexists(os.path.join(folder, n))]
    name = os.path.basename(path)
    if name not in names:
        _replace_atomically(os.path.join(folder, MANIFEST), "\n".join(names + [name, ""]).encode())


def prepare_output_dir(
    path: str | os.PathLike, *, overwrite: bool = False, resume: bool = False
) -> str:
    """Claim a folder for a run's files, before anything runs.

    - a path that is a file is refused;
    - a missing folder is created; an empty one, or one holding only files that jaxgd did
      not write, is used as it is;
    - a folder holding another run's files (listed in its ``MANIFEST``, or result files of
      an older jaxgd) is refused unless ``resume`` (keep them: the run continues) or
      ``overwrite`` (remove them first: exactly the entries the manifest lists and
      jaxgd's temporary files, never anything else).

    Returns:
        The folder's path, with an (empty, unless resuming) manifest in it.

    Raises:
        jaxgd.InputError: the path is a file, or holds a run and neither flag is set, or
            both flags are set.

    Example:
        >>> import pathlib, tempfile
        >>> folder = pathlib.Path(tempfile.mkdtemp()) / "run"
        >>> _ = prepare_output_dir(folder)
        >>> atomic_write(folder / "results.csv", "a\\n")
        >>> prepare_output_dir(folder)
        Traceback (most recent call last):
        ...
        jaxgd.errors.InputError: ...
        >>> _ = prepare_output_dir(folder, overwrite=True)
        >>> sorted(p.name for p in folder.iterdir())
        ['.jaxgd-files']
    """
    from .errors import InputError

    path = os.fspath(path)
    if overwrite and resume:
        raise InputError(
            f"{path}: overwrite=True and resume=True contradict each other; resume continues "
            "the run in the folder, overwrite deletes it: choose one"
        )
    if not is_writer():  # process 0 of a multi-process sweep claims the folder
        return path
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError(
            f"output folder {path!r} is a file; give a folder path (it is created if missing)"
        )
    os.makedirs(path, exist_ok=True)
    entries = [n for n in _read_manifest(path) if os.path.lexists(os.path.join(path, n))]
    legacy = [n for n in _LEGACY_RESULTS if os.path.exists(os.path.join(path, n))]
    temporary = [n for n in os.listdir(path) if _is_temporary(n)]
    if (entries or legacy) and not (overwrite or resume):
        shown = ", ".join(sorted(entries or legacy)[:5])
        raise InputError(
            f"output folder {path!r} holds another run's files ({shown}); pass "
            "overwrite=True (--overwrite) to replace them, resume=True (--resume) to continue "
            "that run, or choose another folder"
        )
    if overwrite:
        for name in entries + legacy + temporary:
            target = os.path.join(path, name)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(target)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(path, MANIFEST))
    if resume:
        remove_temporaries(path)
    if not os.path.exists(os.path.join(path, MANIFEST)):
        _replace_atomically(os.path.join(path, MANIFEST), b"")
    return path


def _is_temporary(name: str) -> bool:
    return name.startswith(".tmp-")


def remove_temporaries(folder: str | os.PathLike) -> None:
    """Remove ``atomic_write``'s temporary files from ``folder``: a killed writer's, never
    renamed in (the file it was replacing is whole)."""
    for name in os.listdir(folder):
        if _is_temporary(name):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(folder, name))


# The kill test (tests/test_resume.py) sets JAXGD_KILL_AT="<point>:<n>" to SIGKILL the
# process the n-th time it passes <point> ("write": a file's bytes are on disk but not yet
# renamed in; "chunk": a chunk is running; "window": a streamed window was dispatched, the
# next not yet put on the device; "checkpoint": a checkpoint is about to be written;
# "result": between the files of SweepResult.save),
# so that the moments it needs are reached deterministically. Unset, this costs a lookup.
_kill_counts: dict[str, int] = {}


def kill_point(point: str) -> None:
    """SIGKILL this process here if ``JAXGD_KILL_AT`` asks for it (testing only)."""
    wanted = os.environ.get("JAXGD_KILL_AT")
    if not wanted:
        return
    name, _, count = wanted.partition(":")
    if name != point:
        return
    _kill_counts[point] = _kill_counts.get(point, 0) + 1
    if _kill_counts[point] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
