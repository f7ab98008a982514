"""JAX's persistent compilation cache, on by default in a user cache folder, and jaxgd's
own programs beside it, keyed on their traced jaxprs.

A compiled program is written to disk keyed on its HLO, the backend and the JAX version,
so a second process running the same sweep loads executables instead of compiling them
(measured: ``benchmarks/cold_start.py``). jaxgd's ``CompiledFunction`` programs are also
stored under ``PROGRAMS_FOLDER`` keyed before lowering (``program_key``), so that a second
process skips lowering too. jaxgd configures it through ``jax.config``
(``jax_compilation_cache_dir`` and the two thresholds) and never overrides a cache
directory the user set themselves. The folder is, in order: ``SweepOptions.cache_dir``
when a path, else ``$JAXGD_CACHE_DIR`` (empty: off), else ``$XDG_CACHE_HOME/jaxgd/xla``,
else ``~/.cache/jaxgd/xla``.

The cache is trusted code: do not point it at a folder others can write (JAX's warning).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import tempfile
import threading
from pathlib import Path

import jax
import jaxlib
import numpy as np
from jax.experimental import serialize_executable
from jax.experimental.compilation_cache import compilation_cache

__all__ = [
    "MIN_COMPILE_SECONDS",
    "default_cache_dir",
    "load_program",
    "compile_and_store",
    "program_key",
    "use_disk_cache",
]

# Programs that compile faster than this are not written: eager operations compile
# one tiny program each, and files for those would cost more to read than to rebuild.
# jaxgd's init programs compile in 0.05-0.2 s and its chunk programs in 0.3-10 s.
MIN_COMPILE_SECONDS = 0.05

# The directory jaxgd itself set, so that it can tell it from one the user set.
_ours: str | None = None


def default_cache_dir() -> Path | None:
    """The folder ``cache_dir="auto"`` means (None: turned off by ``JAXGD_CACHE_DIR=``)."""
    env = os.environ.get("JAXGD_CACHE_DIR")
    if env is not None:
        return Path(env).expanduser() if env else None
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxgd" / "xla"


def use_disk_cache(cache_dir: str | os.PathLike | None = "auto") -> str | None:
    """Point JAX's persistent compilation cache at ``cache_dir`` (``"auto"``: the default
    folder; None: off) unless the user configured one; returns the folder in use."""
    global _ours
    configured = jax.config.jax_compilation_cache_dir
    if configured is not None and configured != _ours:
        return configured  # the user's own: theirs to manage
    path = default_cache_dir() if cache_dir == "auto" else cache_dir
    wanted = None if path is None else str(Path(path).expanduser().resolve())
    if wanted == configured:
        return configured
    if wanted is not None:
        Path(wanted).mkdir(parents=True, exist_ok=True)
        if jax.config.jax_persistent_cache_min_compile_time_secs == 1.0:  # JAX's default
            jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
        if jax.config.jax_persistent_cache_min_entry_size_bytes == 0:
            jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    jax.config.update("jax_compilation_cache_dir", wanted)
    _ours = wanted
    # JAX decides once per process whether a cache is in use (at its first compile);
    # resetting makes the new folder take effect even after earlier compiles.
    compilation_cache.reset_cache()
    return wanted


# Programs keyed on their traced jaxpr. JAX's cache above is keyed on the lowered module,
# so a second process still traces and lowers each program before it can look it up
# (about half of what that process spends compiling, measured: benchmarks/cold_start.py).
# A jaxpr is the program itself (literals printed in full, closed-over constants hashed
# by value), so together with what JAX's own key covers (arguments' shapes and
# shardings, compile options, the JAX configuration, XLA flags, backend, devices,
# versions) it decides the executable: the lowering is skipped, never guessed.
PROGRAMS_FOLDER = "jaxgd-programs"

# The printed text is not a faithful key where a parameter holds a Python object: JAX
# prints its address masked (``at 0xXXXX``), and a host callback's function is not in the
# executable at all. Such programs go through JAX's own path.
_NOT_KEYABLE = re.compile(r"callback|at 0x")


def _programs_folder() -> Path | None:
    folder = jax.config.jax_compilation_cache_dir
    if folder is None or not jax.config.jax_enable_compilation_cache:
        return None
    if jax.process_count() > 1:
        return None  # multi-controller programs are left to JAX's own cache
    return Path(folder) / PROGRAMS_FOLDER


def _constant_bytes(constant) -> bytes:
    if jax.dtypes.issubdtype(constant.dtype, jax.dtypes.prng_key):
        constant = jax.random.key_data(constant)
    array = np.asarray(constant)
    return repr((array.dtype.str, array.shape)).encode() + array.tobytes()


def program_key(traced: jax.stages.Traced, args: tuple, options: dict | None) -> str | None:
    """The sha256 of everything that decides ``traced``'s executable, or None when no
    cache folder is in use or the program cannot be keyed by its text (``_NOT_KEYABLE``)."""
    if _programs_folder() is None:
        return None
    text = str(traced.jaxpr)
    if _NOT_KEYABLE.search(text):
        return None
    devices = jax.devices()
    digest = hashlib.sha256()
    for part in (
        text,
        str(traced.in_tree),
        str(traced.out_tree),
        repr(traced.donate_argnums),
        repr([getattr(leaf, "sharding", None) for leaf in jax.tree.leaves(args)]),
        repr(sorted((options or {}).items())),
        repr(sorted(jax.config.values.items())),
        os.environ.get("XLA_FLAGS", ""),
        os.environ.get("LIBTPU_INIT_ARGS", ""),
        jax.__version__,
        jaxlib.__version__,
        devices[0].client.platform_version,
        repr([(d.platform, d.device_kind, d.id, d.process_index) for d in devices]),
    ):
        digest.update(part.encode())
        digest.update(b"\0")
    for constant in traced.jaxpr.consts:
        digest.update(_constant_bytes(constant))
    return digest.hexdigest()


def load_program(traced: jax.stages.Traced, key: str) -> jax.stages.Compiled | None:
    """The executable stored under ``key``, or None when there is none (or it is unreadable:
    a file from an interrupted write or another jaxlib is treated as missing)."""
    folder = _programs_folder()
    path = None if folder is None else folder / key
    if path is None or not path.exists():
        return None
    try:
        device_ids, serialized = pickle.loads(path.read_bytes())
        by_id = {device.id: device for device in jax.devices()}
        # the devices in the order the program was compiled for: XLA aborts the process
        # (it does not raise) when a program is loaded onto another device list
        devices = [by_id[i] for i in device_ids]
        return serialize_executable.deserialize_and_load(
            serialized, traced.in_tree, traced.out_tree, execution_devices=devices
        )
    except Exception:  # noqa: BLE001 - a bad file is a cache miss, not an error
        return None


# Executables JAX took from its own cache, counted per thread: such an executable runs,
# but written out again it is not whole (measured: loaded in another process, it failed
# with "Function add_bitcast_fusion.3 not found"), so only fresh compiles are stored.
_jax_cache_hits = threading.local()


def _count_jax_cache_hit(event: str, **kwargs) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _jax_cache_hits.count = getattr(_jax_cache_hits, "count", 0) + 1


jax.monitoring.register_event_listener(_count_jax_cache_hit)


def compile_and_store(traced: jax.stages.Traced, options: dict | None, key: str | None):
    """``traced`` lowered and compiled, and written under ``key`` (when not None) unless
    JAX's own cache supplied the executable."""
    hits = getattr(_jax_cache_hits, "count", 0)
    executable = traced.lower().compile(options)
    if key is not None and getattr(_jax_cache_hits, "count", 0) == hits:
        _store_program(executable, key)
    return executable


def _store_program(executable: jax.stages.Compiled, key: str) -> None:
    """Write ``executable`` under ``key`` (atomically: a reader sees all of it or nothing);
    programs that cannot be serialised, or a folder that cannot be written, are skipped."""
    folder = _programs_folder()
    if folder is None:
        return
    try:
        serialized, _, _ = serialize_executable.serialize(executable)
    except (ValueError, NotImplementedError):
        return
    device_ids = [device.id for device in executable.runtime_executable().local_devices()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, delete=False, suffix=".tmp") as file:
            pickle.dump((device_ids, serialized), file, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(file.name, folder / key)
    except OSError:  # a full or read-only disk costs the next process a compile, no more
        return
