"""JAX's persistent compilation cache, on by default in a user cache folder.

A compiled program is written to disk keyed on its HLO, the backend and the JAX version,
so a second process running the same sweep loads executables instead of compiling them
(measured: ``benchmarks/cold_start.py``). jaxgd configures it through ``jax.config``
(``jax_compilation_cache_dir`` and the two thresholds) and never overrides a cache
directory the user set themselves. The folder is, in order: ``SweepOptions.cache_dir``
when a path, else ``$JAXGD_CACHE_DIR`` (empty: off), else ``$XDG_CACHE_HOME/jaxgd/xla``,
else ``~/.cache/jaxgd/xla``.

The cache is trusted code: do not point it at a folder others can write (JAX's warning).
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache

__all__ = ["MIN_COMPILE_SECONDS", "default_cache_dir", "use_disk_cache"]

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
