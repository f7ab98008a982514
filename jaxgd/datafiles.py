"""Datasets read from files: NumPy ``.npy`` / ``.npz`` (memory-mapped), CSV (pandas) and
the IDX files of MNIST and Fashion-MNIST (gzip or raw). Nothing is downloaded.

Each loader returns NumPy arrays; ``load_dataset`` assembles them into the dataset the
built-in classifiers and regressions expect, ``{"x": inputs [N, d], "y": targets [N]}``.

Memory mapping: a ``.npy`` file is opened with ``numpy.load(mmap_mode="r")``; an ``.npz``
member stored uncompressed (``numpy.savez``) is mapped in place at its offset inside the
zip archive, so opening a large file reads only its headers. A compressed member
(``numpy.savez_compressed``) cannot be mapped and is read into memory.

Example:
    >>> import pathlib, tempfile, numpy as np
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> np.savez(folder / "train.npz", x=np.ones((5, 3), np.float32), y=np.arange(5))
    >>> data = load_dataset(folder / "train.npz", inputs="x", targets="y")
    >>> data["x"].shape, data["y"].tolist()
    ((5, 3), [0, 1, 2, 3, 4])
"""

from __future__ import annotations

import gzip
import os
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._io import optional_import
from .errors import InputError

__all__ = ["load_npy", "load_npz", "load_csv", "load_idx", "load_dataset", "FORMATS"]

FORMATS = ("npz", "npy", "csv", "idx")

# IDX type codes (LeCun et al., "The MNIST database", yann.lecun.com/exdb/mnist/).
_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _exists(path: str | os.PathLike, what: str) -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        reason = "is a folder" if os.path.isdir(path) else "does not exist"
        raise InputError(f"{what}={path!r}: {reason}; expected a readable data file")
    return path


def file_format(path: str | os.PathLike) -> str:
    """The format named by a file's extension: "npz", "npy", "csv" or "idx".

    IDX files are recognised by ``-idx<k>-ubyte`` or ``.idx<k>`` in the name, gzipped or
    not (``train-images-idx3-ubyte.gz``).

    Example:
        >>> file_format("train-labels-idx1-ubyte.gz"), file_format("data.NPZ")
        ('idx', 'npz')
    """
    name = os.path.basename(os.fspath(path)).lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if "idx" in name and ("ubyte" in name or name.rsplit(".", 1)[-1].startswith("idx")):
        return "idx"
    extension = name.rsplit(".", 1)[-1] if "." in name else ""
    if extension in ("npz", "npy", "csv"):
        return extension
    raise InputError(
        f"data file {os.fspath(path)!r}: cannot tell its format from the name; expected "
        ".npz, .npy, .csv or an MNIST-style IDX file (*-idx3-ubyte, optionally .gz)"
    )


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """One array from a ``.npy`` file, memory-mapped read-only."""
    path = _exists(path, "path")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as error:
        raise InputError(f"path={path!r}: not a NumPy .npy file ({error})") from error


def _mapped_member(path: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo):
    """A stored (uncompressed) ``.npy`` member of a zip archive, memory-mapped in place."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)  # the zip local file header: name and extra lengths at 26, 28
        name_length = int.from_bytes(local[26:28], "little")
        extra_length = int.from_bytes(local[28:30], "little")
        start = info.header_offset + 30 + name_length + extra_length
        f.seek(start)
        major, _ = np.lib.format.read_magic(f)
        read_header = (
            np.lib.format.read_array_header_1_0
            if major == 1
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
    if dtype.hasobject:
        return None
    order = "F" if fortran else "C"
    if not shape or 0 in shape:
        return None
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` archive; uncompressed members are memory-mapped."""
    path = _exists(path, "path")
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:
        raise InputError(f"path={path!r}: not a NumPy .npz archive ({error})") from error
    arrays: dict[str, np.ndarray] = {}
    with archive, np.load(path, allow_pickle=False) as loaded:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[: -len(".npy")]
            mapped = None
            if info.compress_type == zipfile.ZIP_STORED:
                mapped = _mapped_member(path, archive, info)
            arrays[name] = mapped if mapped is not None else loaded[name]
    return arrays


def load_csv(path: str | os.PathLike) -> Any:
    """A CSV file as a ``pandas.DataFrame`` (needs pandas: ``pip install 'jaxgd[pandas]'``)."""
    pandas = optional_import("pandas", extra="pandas", feature="reading CSV data files")
    path = _exists(path, "path")
    try:
        return pandas.read_csv(path)
    except (ValueError, pandas.errors.ParserError) as error:
        raise InputError(f"path={path!r}: not a readable CSV file ({error})") from error


def load_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX array (the MNIST / Fashion-MNIST format), gzipped or raw.

    The header is two zero bytes, a type code, the number of dimensions k, then k
    big-endian uint32 sizes; the values follow, big-endian.
    """
    path = _exists(path, "path")
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    opener = gzip.open if gzipped else open
    try:
        with opener(path, "rb") as f:
            content = f.read()
    except (OSError, EOFError) as error:
        raise InputError(f"path={path!r}: a damaged gzip file ({error})") from error
    if len(content) < 4 or content[:2] != b"\0\0" or content[2] not in _IDX_TYPES:
        raise InputError(
            f"path={path!r}: not an IDX file (expected two zero bytes and a type code "
            "0x08-0x0E, as in MNIST's train-images-idx3-ubyte)"
        )
    dtype, ndim = _IDX_TYPES[content[2]], content[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(content) - header != expected:
        raise InputError(
            f"path={path!r}: the IDX header says shape {shape} ({expected} bytes of data) but "
            f"the file holds {len(content) - header}; is it truncated?"
        )
    return (
        np.frombuffer(content, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))
    )


def _as_inputs(array: np.ndarray, flatten: bool, scale: float | None) -> np.ndarray:
    """Inputs as floats ``[N, d]``: integer pixels become float32 (times ``scale``)."""
    if array.ndim > 2 and flatten:
        array = array.reshape(array.shape[0], -1)
    if not np.issubdtype(array.dtype, np.floating):
        array = np.asarray(array, np.float32)
    if scale is not None:
        array = np.asarray(array, np.float32) * np.float32(scale)
    return array


def _as_targets(array: np.ndarray, num_classes: int | None, where: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]  # an [N, 1] column: per-example losses must be scalars
    if num_classes is None:
        return array
    if not np.issubdtype(array.dtype, np.integer):
        whole = np.issubdtype(array.dtype, np.floating) and np.all(array == np.round(array))
        if not whole:
            raise InputError(
                f"{where}: num_classes={num_classes} but the targets are {array.dtype}, not "
                "integer class labels; drop num_classes for a regression"
            )
    labels = array.astype(np.int32)
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise InputError(
            f"{where}: label {labels[bad[0]]} of example {bad[0]} is outside 0..{num_classes - 1} "
            f"(num_classes={num_classes}); fix num_classes or the labels"
        )
    return labels


def load_dataset(
    path: str | os.PathLike | None = None,
    *,
    inputs: str | Sequence[str] | None = None,
    targets: str | None = None,
    num_classes: int | None = None,
    flatten: bool = True,
    scale: float | None = None,
) -> dict[str, np.ndarray]:
    """``{"x": inputs, "y": targets}`` from data files.

    Either ``path`` names one container and ``inputs`` / ``targets`` name what is in it
    (an ``.npz`` archive: array names; a CSV file: column names, ``inputs`` a list or,
    when omitted, every column but the targets), or there is no ``path`` and ``inputs``
    and ``targets`` are paths of single arrays (``.npy`` or IDX files, e.g.
    ``train-images-idx3-ubyte.gz`` and ``train-labels-idx1-ubyte.gz``).

    Inputs with more than two axes (images) are flattened to ``[N, d]`` unless
    ``flatten=False``; integer inputs become float32, and IDX images are scaled to
    [0, 1] (``scale`` overrides: the inputs are multiplied by it). Targets shaped
    ``[N, 1]`` become ``[N]``. With ``num_classes``, targets must be integer labels in
    ``0..num_classes-1`` (a CSV column of strings is mapped to the codes of its sorted
    values).

    Raises:
        jaxgd.InputError: a missing file, an unknown format or array name, mismatched
            example counts, labels out of range.
    """
    where = "data"
    if path is not None:
        fmt = file_format(path)
        if fmt == "npz":
            arrays = load_npz(path)
            names = [inputs, targets]
            for key, name in (("inputs", inputs), ("targets", targets)):
                if not isinstance(name, str):
                    raise InputError(
                        f"data.{key}={name!r}: name one array of {os.fspath(path)!r}; it has "
                        f"{sorted(arrays)}"
                    )
                if name not in arrays:
                    raise InputError(
                        f"data.{key}={name!r}: {os.fspath(path)!r} has no array {name!r}; it "
                        f"has {sorted(arrays)}"
                    )
            x, y = (arrays[n] for n in names)
        elif fmt == "csv":
            frame = load_csv(path)
            x, y = _csv_columns(frame, inputs, targets, num_classes, os.fspath(path))
        else:
            raise InputError(
                f"data.path={os.fspath(path)!r} is a single {fmt} array: give it as "
                "data.inputs (and the targets file as data.targets), without data.path"
            )
        default_scale = None
    else:
        for key, name in (("inputs", inputs), ("targets", targets)):
            if not isinstance(name, (str, os.PathLike)):
                raise InputError(
                    f"data.{key}={name!r}: without data.path, give the path of a .npy or IDX file"
                )
        fmt = file_format(inputs)
        single = {"npy": load_npy, "idx": load_idx}
        loaders = [single.get(file_format(p)) for p in (inputs, targets)]
        for key, p, loader in zip(("inputs", "targets"), (inputs, targets), loaders):
            if loader is None:
                raise InputError(
                    f"data.{key}={os.fspath(p)!r}: a {file_format(p)} container; name it as "
                    f"data.path and the arrays in it as data.inputs and data.targets"
                )
        x, y = (loader(p) for loader, p in zip(loaders, (inputs, targets)))
        default_scale = 1 / 255 if fmt == "idx" and x.dtype == np.uint8 else None
    if len(x) != len(y):
        raise InputError(
            f"data: the inputs hold {len(x)} examples and the targets {len(y)}; they must "
            "match one to one"
        )
    x = _as_inputs(x, flatten, scale if scale is not None else default_scale)
    return {"x": x, "y": _as_targets(y, num_classes, where)}


def _csv_columns(frame, inputs, targets, num_classes, path):
    columns = [str(c) for c in frame.columns]
    if not isinstance(targets, str) or targets not in columns:
        raise InputError(f"data.targets={targets!r}: name one column of {path!r}; it has {columns}")
    if inputs is None:
        inputs = [c for c in columns if c != targets]
    elif isinstance(inputs, str):
        inputs = [inputs]
    missing = [c for c in inputs if c not in columns]
    if missing or not inputs:
        raise InputError(
            f"data.inputs={inputs!r}: {path!r} has no column {missing}; it has {columns}"
        )
    features = frame[inputs]
    is_numeric = optional_import("pandas", extra="pandas", feature="CSV").api.types.is_numeric_dtype
    non_numeric = [c for c in inputs if not is_numeric(features[c].dtype)]
    if non_numeric:
        raise InputError(
            f"data.inputs: columns {non_numeric} of {path!r} are not numeric; encode them or "
            "leave them out of data.inputs"
        )
    x = features.to_numpy(np.float32)
    column = frame[targets]
    if num_classes is not None and not is_numeric(column.dtype):
        categories = sorted(column.astype(str).unique())
        codes = {c: i for i, c in enumerate(categories)}
        y = column.astype(str).map(codes).to_numpy(np.int32)
    else:
        y = column.to_numpy()
    return x, y
