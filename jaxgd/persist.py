"""Save and load ``SweepResult`` folders; strict JSON for everything jaxgd writes.

A saved result is a folder:

- ``result.json``: configs (typed: see ``encode``), strategy, groups, ``meta``, the
  names of the arrays; strictly valid JSON.
- ``arrays.npz``: every array exactly (histories, counters, statuses, timings, params),
  no pickles.
- ``COMPLETE``: written last, with the SHA-256 of the two files: a folder without it is
  incomplete (a run killed before it finished saving, or still saving).

JSON has no NaN or infinity: ``strict_json`` writes them as null. Config values that are
not JSON types are tagged objects (``{"$type": "BatchSchedule", ...}``), so that a config
loads back with the types it had.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._io import (
    atomic_write,
    kill_point,
    prepare_output_dir,
    record_output,
    remove_temporaries,
)
from .columns import ConfigRows
from .distributed import is_writer
from .errors import InputError
from .schedules import BatchSchedule

if TYPE_CHECKING:
    from .results import SweepResult

__all__ = [
    "FORMAT",
    "COMPLETE",
    "strict_json",
    "encode",
    "encode_configs",
    "decode",
    "save_result",
    "load_result",
    "is_complete",
    "sha256",
]

FORMAT = "jaxgd.SweepResult/1"
COMPLETE = "COMPLETE"
_FILES = ("arrays.npz", "result.json")

# The per-config arrays of a SweepResult, saved under their own names.
_ARRAYS = (
    "updates",
    "examples_seen",
    "diverged",
    "diverged_step",
    "status",
    "stopped_epoch",
    "seconds",
    "compile_seconds",
)


def _nulls(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _nulls(value.item())
    if isinstance(value, dict):
        return {k: _nulls(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nulls(v) for v in value]
    return value


def strict_json(document: Any, indent: int | None = 1) -> str:
    """JSON text with NaN and ±inf written as null (JSON has no such tokens), NumPy
    scalars as numbers; raises on anything else that is not JSON.

    Example:
        >>> strict_json({"loss": [0.5, float("nan"), float("inf")]}, indent=None)
        '{"loss": [0.5, null, null]}'
    """
    try:  # a document with nothing to replace is written as it is, without a walk
        return json.dumps(document, indent=indent, allow_nan=False)
    except (TypeError, ValueError):  # NaN, ±inf or NumPy scalars: replaced, then written
        return json.dumps(_nulls(document), indent=indent, allow_nan=False)


def encode(value: Any) -> Any:
    """A config value as JSON, keeping its type: floats that are not finite, tuples,
    dicts with keys other than strings and ``BatchSchedule`` become tagged objects
    (``{"$type": ...}``); NumPy scalars their Python value.

    Example:
        >>> encode({"lr": 0.1, "theta": float("inf"), "batch_size": (8, 16)})
        {'lr': 0.1, 'theta': {'$type': 'float', 'value': 'inf'}, 'batch_size': {'$type': 'tuple', 'items': [8, 16]}}
    """  # noqa: E501
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$type": "float", "value": repr(value)}
    if isinstance(value, BatchSchedule):
        return {
            "$type": "BatchSchedule",
            "boundaries": list(value.boundaries),
            "sizes": list(value.sizes),
        }
    if isinstance(value, tuple):
        return {"$type": "tuple", "items": [encode(v) for v in value]}
    if isinstance(value, ConfigRows):  # configs held as columns: encoded column by column
        return encode_configs(value)
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and "$type" not in value:
            return {k: encode(v) for k, v in value.items()}
        return {"$type": "dict", "items": [[encode(k), encode(v)] for k, v in value.items()]}
    raise InputError(
        f"config value {value!r} ({type(value).__name__}) cannot be saved: configs hold "
        "numbers, strings, booleans, None, tuples, lists, dicts and BatchSchedules"
    )


def decode(value: Any) -> Any:
    """The inverse of ``encode``."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "$type" not in value:
        return {k: decode(v) for k, v in value.items()}
    kind = value["$type"]
    if kind == "float":
        return float(value["value"])
    if kind == "BatchSchedule":
        return BatchSchedule(tuple(value["boundaries"]), tuple(value["sizes"]))
    if kind == "tuple":
        return tuple(decode(v) for v in value["items"])
    if kind == "dict":
        return {decode(k): decode(v) for k, v in value["items"]}
    raise ValueError(f"unknown tagged value {value!r}")


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """``arrays`` as the bytes of an uncompressed ``.npz`` (written atomically by callers)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _params_structure(params: Any, prefix: str, arrays: dict[str, np.ndarray]) -> Any:
    """Dicts, lists and tuples of arrays as JSON, each leaf stored under a name in
    ``arrays``; other containers (Flax, Equinox) are flattened to their key paths."""
    if isinstance(params, dict):
        return {
            "$type": "dict",
            "items": [
                [k, _params_structure(v, f"{prefix}/{k}", arrays)] for k, v in params.items()
            ],
        }
    if isinstance(params, (list, tuple)):
        items = [_params_structure(v, f"{prefix}/{i}", arrays) for i, v in enumerate(params)]
        return {"$type": type(params).__name__, "items": items}
    if params is None:
        return None
    if isinstance(params, np.ndarray):
        arrays[prefix] = params
        return {"$type": "array", "name": prefix}
    import jax

    leaves = jax.tree_util.tree_leaves_with_path(params)
    names = {}
    for path, leaf in leaves:
        names[jax.tree_util.keystr(path)] = f"{prefix}/{jax.tree_util.keystr(path)}"
        arrays[names[jax.tree_util.keystr(path)]] = np.asarray(leaf)
    return {"$type": "flat", "leaves": names}


def _params_from(structure: Any, arrays: Any) -> Any:
    if structure is None:
        return None
    kind = structure["$type"]
    if kind == "dict":
        return {k: _params_from(v, arrays) for k, v in structure["items"]}
    if kind in ("list", "tuple"):
        items = [_params_from(v, arrays) for v in structure["items"]]
        return items if kind == "list" else tuple(items)
    if kind == "array":
        return arrays[structure["name"]]
    return {path: arrays[name] for path, name in structure["leaves"].items()}


def is_complete(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a saved result that finished saving."""
    return os.path.exists(os.path.join(folder, COMPLETE))


def save_result(result: SweepResult, folder: str | os.PathLike, overwrite: bool = False) -> None:
    """Write ``result`` to ``folder`` (see the module docstring); the marker goes first
    (removed) and last (written), so a half-saved folder is never taken as complete."""
    folder = os.fspath(folder)
    if os.path.exists(os.path.join(folder, "result.json")) and not overwrite:
        raise InputError(
            f"output folder {folder!r} holds a saved result already; pass overwrite=True to "
            "replace it, or choose another folder"
        )
    if os.path.exists(folder) and not os.path.isdir(folder):
        prepare_output_dir(folder)  # refuses a file, with the standard message
    if not is_writer():  # in a multi-process sweep process 0 saves the (same) result
        return
    os.makedirs(folder, exist_ok=True)
    if not os.path.exists(os.path.join(folder, ".jaxgd-files")):
        prepare_output_dir(folder, overwrite=overwrite)
    marker = os.path.join(folder, COMPLETE)
    if os.path.exists(marker):
        os.unlink(marker)
    remove_temporaries(folder)
    arrays: dict[str, np.ndarray] = {}
    for name, values in result.history.items():
        arrays[f"history/{name}"] = np.asarray(values)
    for name in _ARRAYS:
        arrays[name] = np.asarray(getattr(result, name))
    params = _params_structure(
        None if result.params is None else _to_numpy(result.params), "params", arrays
    )
    document = {
        "format": FORMAT,
        "configs": encode_configs(result.configs),
        "strategy": result.strategy,
        "groups": result.groups,
        "history": list(result.history),
        "params": params,
        "meta": encode(result.meta),
    }
    atomic_write(os.path.join(folder, "arrays.npz"), npz_bytes(arrays))
    kill_point("result")
    # (one line: JSON's C encoder writes only unindented text; a million configs'
    # rows indented took minutes)
    atomic_write(os.path.join(folder, "result.json"), strict_json(document, indent=None))
    kill_point("result")
    sums = {name: sha256(os.path.join(folder, name)) for name in _FILES}
    atomic_write(marker, strict_json({"format": FORMAT, "sha256": sums}))
    record_output(marker)


def encode_configs(configs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``encode(list(configs))``: column by column for configs held as columns
    (``ConfigRows``), row by row for a list of dicts."""
    if isinstance(configs, ConfigRows):
        return configs.to_dicts(_encoded_column)
    return [{k: encode(v) for k, v in row.items()} for row in configs]


def _encoded_column(values: np.ndarray) -> list[Any]:
    """``[encode(v) for v in values]`` for one column: numbers pass as they are (only
    the floats that are not finite are tagged), a constant column is encoded once."""
    if values.dtype.kind == "i":
        return values.tolist()
    if values.dtype.kind == "f":
        out = values.tolist()
        for index in np.flatnonzero(~np.isfinite(values)).tolist():
            out[index] = encode(out[index])
        return out
    if values.ndim == 1 and values.size > 1 and values.strides == (0,):  # a broadcast value
        return [encode(values[0])] * values.size
    return [encode(v) for v in values.tolist()]


def _to_numpy(tree: Any) -> Any:
    import jax

    from .core.layout import to_host

    return jax.tree.map(np.asarray, to_host(tree))


def load_result(folder: str | os.PathLike) -> SweepResult:
    """The ``SweepResult`` saved in ``folder``, exactly as it was saved."""
    from .results import SweepResult

    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise InputError(f"{folder!r} is not a folder: give the folder SweepResult.save wrote")
    if not is_complete(folder):
        raise InputError(
            f"{folder!r} holds no complete result (no {COMPLETE} marker): its run was "
            "interrupted or is still saving; resume it (resume=True / --resume) or run it again"
        )
    with open(os.path.join(folder, COMPLETE), encoding="utf-8") as f:
        marker = json.load(f)
    for name, expected in marker["sha256"].items():
        if sha256(os.path.join(folder, name)) != expected:
            raise InputError(
                f"{folder!r}: {name} does not match the checksum written when it was saved "
                "(the file was changed or damaged); save the result again"
            )
    with open(os.path.join(folder, "result.json"), encoding="utf-8") as f:
        document = json.load(f)
    if document.get("format") != FORMAT:
        raise InputError(f"{folder!r}: format {document.get('format')!r}, expected {FORMAT!r}")
    with np.load(os.path.join(folder, "arrays.npz"), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    return SweepResult(
        configs=[{k: decode(v) for k, v in row.items()} for row in document["configs"]],
        history={name: arrays[f"history/{name}"] for name in document["history"]},
        params=_params_from(document["params"], arrays),
        strategy=document["strategy"],
        groups=document["groups"],
        meta=decode(document["meta"]),
        **{name: arrays[name] for name in _ARRAYS},
    )


@functools.cache
def git_commit() -> str | None:
    """The commit of the jaxgd checkout this runs from (None when installed from a
    wheel or git is missing); ``+dirty`` when it has uncommitted changes. Asked once per
    process."""
    import subprocess

    folder = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(
            ["git", "-C", folder, "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", folder, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "") if commit else None


def run_meta(settings: dict[str, Any]) -> dict[str, Any]:
    """What a result records of how it was run: versions, backend, device, ``settings``."""
    import platform

    import jax
    import optax

    from . import __version__

    device = jax.devices()[0]
    return {
        "jaxgd": __version__,
        "jax": jax.__version__,
        "optax": optax.__version__,
        "python": platform.python_version(),
        "backend": jax.default_backend(),
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "git_commit": git_commit(),
        **settings,
    }
