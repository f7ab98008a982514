"""Checkpoints of a running sweep: written at chunk boundaries, read back to resume.

A checkpoint is a flat ``{name: array}`` (every program's state, the loop's histories,
statuses and finished configs, the callbacks' state) and a JSON document (the step, the
live programs and how to rebuild them, the plan's fingerprint, a checksum of the
arrays). Two formats hold it:

- ``"orbax"``: an ``orbax.checkpoint.CheckpointManager`` keeping the last two steps
  (folders ``<epochs_done>/``), written to a temporary folder and renamed by orbax;
- ``"npz"``: ``ckpt-<epochs_done>.npz`` and ``ckpt-<epochs_done>.json`` through
  ``jaxgd._io.atomic_write`` (temporary name, fsync, rename), the JSON last: a step is
  there only when its JSON is, and the JSON holds the npz's checksum.

Either way the last two steps are kept, and a step whose arrays do not match the
checksum written with them (a damaged disk, a copy cut short) is skipped for the one
before it. The checkpointer is not a ``Callback``: it needs the programs' states, which
callbacks never see.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
import warnings
from typing import Any

import jax
import numpy as np

from .._io import atomic_write, kill_point, optional_import, prepare_output_dir, record_output
from ..distributed import from_writer, is_writer, sync_global_devices
from ..errors import InputError
from ..persist import decode, encode, npz_bytes, strict_json

__all__ = ["Checkpointer", "Saved", "array_checksum", "BACKENDS"]

BACKENDS = ("auto", "orbax", "npz")
_KEEP = 2
_NPZ = re.compile(r"^ckpt-(\d+)\.json$")


def _orbax():
    return optional_import(
        "orbax.checkpoint", extra="checkpoint", feature="checkpoint_format='orbax'"
    )


class Saved:
    """One checkpoint read back: ``arrays`` ``{name: np.ndarray}`` and ``document``."""

    def __init__(self, arrays: dict[str, np.ndarray], document: dict[str, Any]):
        self.arrays, self.document = arrays, document


def array_checksum(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of ``arrays`` (in name order)."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        value = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


class Checkpointer:
    """Writes and finds the checkpoints of one sweep in ``folder``.

    Args:
        folder: the checkpoint folder (claimed with ``prepare_output_dir``).
        fingerprint: ``{part: digest}`` of the resolved plan and data (may be set after
            the folder is claimed, before the first read or write); a resumed folder must
            match it part by part.
        every: write after every ``every`` chunks (and after the last).
        seconds: if set, write at the first chunk boundary at least this many seconds
            after the last write instead.
        backend: "orbax", "npz" or "auto" (orbax when installed).
        resume: continue from the folder's last good checkpoint.
        overwrite: remove the folder's earlier run first.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        fingerprint: dict[str, Any] | None = None,
        every: int = 1,
        seconds: float | None = None,
        backend: str = "auto",
        resume: bool = False,
        overwrite: bool = False,
    ):
        self.backend = backend
        if backend == "auto":
            try:
                _orbax()
                self.backend = "orbax"
            except ImportError:
                self.backend = "npz"
        elif backend == "orbax":
            _orbax()  # missing: say so now, before anything is written or trained
        self.folder = os.fspath(folder)
        self.fingerprint = fingerprint or {}
        self.every, self.seconds = every, seconds
        self.resume, self.overwrite = resume, overwrite
        self._orbax = None
        self._chunks = 0
        self._last_write = time.perf_counter()

    def open(self) -> None:
        """Claim the folder (``prepare_output_dir``: an earlier run's files are refused,
        removed with ``overwrite``, kept with ``resume``): the run loop calls this after
        its callbacks' ``on_sweep_begin`` checks, so bad input never touches the folder.
        Process 0 alone claims it; its refusal is raised on every process."""

        def claim() -> bytes:
            prepare_output_dir(self.folder, overwrite=self.overwrite, resume=self.resume)
            for name in os.listdir(self.folder):  # a step killed between its npz and JSON
                if name.startswith("ckpt-") and name.endswith(".npz"):
                    if not os.path.exists(os.path.join(self.folder, name[:-4] + ".json")):
                        os.unlink(os.path.join(self.folder, name))
            return b""

        from_writer(claim)
        self._last_write = time.perf_counter()

    # -- writing ------------------------------------------------------------------------

    def due(self, epochs_done: int, epochs: int) -> bool:
        """Whether to write after this chunk (always after the last one)."""
        self._chunks += 1
        if epochs_done >= epochs:
            return True
        if self.seconds is not None:
            return time.perf_counter() - self._last_write >= self.seconds
        return self._chunks % self.every == 0

    def save(self, step: int, arrays: dict[str, np.ndarray], document: dict[str, Any]) -> None:
        """Write checkpoint ``step`` (the epochs done) and keep the last two."""
        document = {
            **document,
            "step": step,
            "fingerprint": self.fingerprint,
            "checksum": array_checksum(arrays),
        }
        kill_point("checkpoint")
        if not is_writer():  # process 0 writes; the others wait for it below
            sync_global_devices(f"jaxgd checkpoint {step}")
            return
        if self.backend == "orbax":
            self._save_orbax(step, arrays, document)
        else:
            self._save_npz(step, arrays, document)
        sync_global_devices(f"jaxgd checkpoint {step}")
        self._last_write = time.perf_counter()

    def _save_npz(self, step, arrays, document) -> None:
        stem = os.path.join(self.folder, f"ckpt-{step:08d}")
        atomic_write(stem + ".npz", npz_bytes(arrays))
        atomic_write(stem + ".json", strict_json(encode(document)))
        for old in self._npz_steps()[:-_KEEP]:
            for suffix in (".json", ".npz"):  # the JSON first: a step without it is gone
                path = os.path.join(self.folder, f"ckpt-{old:08d}{suffix}")
                if os.path.exists(path):
                    os.unlink(path)

    def _manager(self):
        if self._orbax is None:
            ocp = _orbax()
            folder = os.path.join(self.folder, "orbax")
            os.makedirs(folder, exist_ok=True)  # orbax's create= refuses active_processes
            options = ocp.CheckpointManagerOptions(
                max_to_keep=_KEEP,
                create=False,
                enable_async_checkpointing=False,
                cleanup_tmp_directories=True,
                # Process 0 alone reads and writes (the arrays are whole on every
                # process), so orbax must not wait for the others at its barriers.
                multiprocessing_options=ocp.options.MultiprocessingOptions(
                    primary_host=0, active_processes={0}
                ),
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # orbax's notices about its own defaults
                self._orbax = (ocp, ocp.CheckpointManager(os.path.abspath(folder), options=options))
            record_output(folder)
        return self._orbax

    def _save_orbax(self, step, arrays, document) -> None:
        ocp, manager = self._manager()
        # orbax refuses zero-size arrays: their shapes travel in the document instead.
        empty = {k: [v.dtype.str, list(v.shape)] for k, v in arrays.items() if v.size == 0}
        stored = {k: v for k, v in arrays.items() if v.size}
        args = ocp.args.Composite(
            arrays=ocp.args.StandardSave(stored),
            meta=ocp.args.JsonSave(json.loads(strict_json(encode({**document, "empty": empty})))),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if step in manager.all_steps():  # a damaged one, skipped when resuming
                manager.delete(step)
            manager.save(step, args=args, force=True)
            manager.wait_until_finished()

    # -- reading ------------------------------------------------------------------------

    def _npz_steps(self) -> list[int]:
        names = os.listdir(self.folder) if os.path.isdir(self.folder) else []
        return sorted(int(m.group(1)) for m in map(_NPZ.match, names) if m)

    def _read_npz(self, step: int) -> Saved:
        stem = os.path.join(self.folder, f"ckpt-{step:08d}")
        with open(stem + ".json", encoding="utf-8") as f:
            document = decode(json.load(f))
        with np.load(stem + ".npz", allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        return Saved(arrays, document)

    def _read_orbax(self, step: int) -> Saved:
        ocp, manager = self._manager()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            restored = manager.restore(
                step,
                args=ocp.args.Composite(
                    arrays=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()
                ),
            )
        document = decode(restored["meta"])
        arrays = {k: np.asarray(v) for k, v in restored["arrays"].items()}
        for name, (dtype, shape) in document.pop("empty").items():
            arrays[name] = np.zeros(shape, np.dtype(dtype))
        return Saved(arrays, document)

    def _steps(self) -> list[int]:
        if self.backend == "orbax":
            if not os.path.isdir(os.path.join(self.folder, "orbax")):
                return []
            return sorted(self._manager()[1].all_steps())
        return self._npz_steps()

    def latest(self) -> Saved | None:
        """The newest checkpoint that reads back whole and matches its checksum (a
        damaged newest one is skipped for the one before), after checking that it was
        written by this sweep; None if there is none.

        In a multi-process sweep process 0 alone reads the folder and sends what it found
        to the others (``from_writer``), so every process resumes from the same step,
        also when the folder is not shared."""
        if jax.process_count() == 1:
            return self._latest()
        return _unpack(from_writer(lambda: _pack(self._latest())))

    def _latest(self) -> Saved | None:
        self._check_format()
        damaged = []
        for step in reversed(self._steps()):
            try:
                saved = self._read_orbax(step) if self.backend == "orbax" else self._read_npz(step)
            except Exception as error:  # a damaged file fails in many ways
                damaged.append(f"step {step}: {type(error).__name__}")
                continue
            if array_checksum(saved.arrays) != saved.document.get("checksum"):
                damaged.append(f"step {step}: checksum mismatch")
                continue
            self._check_fingerprint(saved.document["fingerprint"])
            if damaged:
                warnings.warn(
                    f"checkpoints in {self.folder!r} skipped as damaged ({'; '.join(damaged)}); "
                    f"resuming from step {step}",
                    RuntimeWarning,
                    stacklevel=4,
                )
            return saved
        if damaged:
            raise InputError(
                f"checkpoint folder {self.folder!r}: every checkpoint is damaged "
                f"({'; '.join(damaged)}); pass overwrite=True to start afresh"
            )
        return None

    def _check_format(self) -> None:
        other = "npz" if self.backend == "orbax" else "orbax"
        has_other = (
            bool(self._npz_steps())
            if other == "npz"
            else os.path.isdir(os.path.join(self.folder, "orbax"))
        )
        if has_other and not self._steps():
            raise InputError(
                f"checkpoint folder {self.folder!r} holds {other} checkpoints, and this sweep "
                f"writes {self.backend}; pass SweepOptions(checkpoint_format={other!r}) to resume"
            )

    def _check_fingerprint(self, saved: dict[str, Any]) -> None:
        differ = sorted(
            k for k in set(saved) | set(self.fingerprint) if saved.get(k) != self.fingerprint.get(k)
        )
        if differ:
            raise InputError(
                f"resume: the checkpoint in {self.folder!r} was written by a different sweep "
                f"({', '.join(differ)} differ); resume with the same arguments and data, or "
                "pass overwrite=True to start afresh"
            )

    def close(self) -> None:
        if self._orbax is not None:
            self._orbax[1].close()
            self._orbax = None


# A checkpoint travels between processes as one npz: its arrays, and its document as
# UTF-8 JSON bytes under a name no array takes.
_DOCUMENT = "__document__"


def _pack(saved: Saved | None) -> bytes:
    if saved is None:
        return b""
    document = np.frombuffer(strict_json(encode(saved.document)).encode(), np.uint8)
    return npz_bytes({**saved.arrays, _DOCUMENT: document})


def _unpack(payload: bytes) -> Saved | None:
    if not payload:
        return None
    with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    document = decode(json.loads(arrays.pop(_DOCUMENT).tobytes().decode()))
    return Saved(arrays, document)
