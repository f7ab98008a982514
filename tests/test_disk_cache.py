"""The persistent compilation cache: where it goes, that it leaves a user's own cache
alone, that a second process loads what the first compiled, and that the programs'
own keys (their traced jaxprs) tell apart every change that changes the executable."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgd
from jaxgd.core import disk_cache
from jaxgd.core.compile import CompiledFunction, compile_count, loaded_count
from jaxgd.core.disk_cache import default_cache_dir, program_key, use_disk_cache

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def restore_cache():
    """Put the suite's cache folder (conftest) back after a test moves it."""
    yield
    jax.config.update("jax_compilation_cache_dir", None)
    use_disk_cache("auto")


def test_default_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("JAXGD_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.setenv("JAXGD_CACHE_DIR", "")
    assert default_cache_dir() is None
    monkeypatch.delenv("JAXGD_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "jaxgd" / "xla"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "jaxgd" / "xla"


def test_sweep_writes_its_programs_to_the_folder_given(tmp_path, restore_cache):
    problem, data = jaxgd.problems.linear_regression()
    jaxgd.sweep(
        problem,
        data,
        space=jaxgd.grid(learning_rate=[0.1, 0.05, 0.025], momentum=[0.0, 0.5, 0.7]),
        batch_size=7,
        epochs=2,
        validation=None,
        options=jaxgd.SweepOptions(cache_dir=tmp_path / "xla"),
    )
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "xla")
    assert any((tmp_path / "xla").iterdir())
    use_disk_cache(None)
    assert jax.config.jax_compilation_cache_dir is None


def test_a_cache_the_user_configured_is_left_alone(tmp_path, restore_cache):
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "theirs"))
    assert use_disk_cache(tmp_path / "ours") == str(tmp_path / "theirs")
    assert use_disk_cache(None) == str(tmp_path / "theirs")
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "theirs")
    assert not (tmp_path / "ours").exists()


def test_cache_dir_must_be_a_path_or_none():
    with pytest.raises(jaxgd.InputError, match="cache_dir=3"):
        jaxgd.SweepOptions(cache_dir=3)


_SWEEP = textwrap.dedent(
    """
    import json, sys
    import jax
    import jaxgd
    from jaxgd.core.compile import compile_count, loaded_count

    events = []
    jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
    problem, data = jaxgd.problems.linear_regression()
    result = jaxgd.sweep(problem, data, space=jaxgd.grid(learning_rate=[0.1, 0.05]),
                         batch_size=10, epochs=2, validation=None)
    devices = jax.devices()[-2:]  # a placement other than the default one
    placed = jaxgd.sweep(problem, data, space=jaxgd.grid(learning_rate=[0.1, 0.05, 0.02]),
                         batch_size=10, epochs=2, validation=None,
                         options=jaxgd.SweepOptions(devices=devices))
    print(json.dumps({
        "misses": events.count("/jax/compilation_cache/cache_misses"),
        "compiled": compile_count(),
        "loaded": loaded_count(),
        "loss": result.history["train_loss"].tolist(),
        "placed": placed.history["train_loss"].tolist(),
    }))
    """
)


@pytest.mark.slow
def test_a_second_process_loads_what_the_first_compiled(tmp_path):
    env = {
        **os.environ,
        "JAXGD_CACHE_DIR": str(tmp_path / "xla"),
        "PYTHONPATH": str(ROOT),
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
    }
    runs = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", _SWEEP],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            ).stdout.splitlines()[-1]
        )
        for _ in range(2)
    ]
    # the second process neither lowers nor compiles jaxgd's programs: it loads each one,
    # on four devices and on the two it was told to use, and gets the same numbers
    assert runs[0]["compiled"] >= 4 and runs[0]["loaded"] == 0
    assert runs[1]["loaded"] == runs[1]["compiled"] == runs[0]["compiled"]
    assert runs[1]["misses"] < runs[0]["misses"]
    assert runs[1]["loss"] == runs[0]["loss"]
    assert runs[1]["placed"] == runs[0]["placed"]
    stored = list((tmp_path / "xla" / disk_cache.PROGRAMS_FOLDER).iterdir())
    assert len(stored) == runs[0]["compiled"]


def _scaled_square(x, *, settings):
    return jnp.sum(jnp.square(x) * settings)


def _keys(fn, *args, settings, options=None):
    traced = jax.jit(fn, static_argnames="settings").trace(*args, settings=settings)
    return program_key(traced, args, options)


def test_program_keys_follow_everything_that_changes_the_executable(tmp_path, restore_cache):
    use_disk_cache(tmp_path)
    x = jnp.arange(4.0)
    key = _keys(_scaled_square, x, settings=2.0)
    assert key == _keys(_scaled_square, x, settings=2.0)  # traced again: same program
    offset = np.arange(4.0, dtype=np.float32)

    def shifted(x, *, settings):  # a closed-over constant: hashed by value
        return jnp.sum(x + offset) * settings

    changed = [
        _keys(_scaled_square, x, settings=2.0000002),  # a literal, to the last bit
        _keys(_scaled_square, jnp.arange(5.0), settings=2.0),  # a shape
        _keys(_scaled_square, x.astype(jnp.int32), settings=2),  # a dtype
        _keys(_scaled_square, x, settings=2.0, options={"xla_backend_optimization_level": 0}),
        _keys(shifted, x, settings=2.0),
    ]
    offset[0] = 1.0
    changed.append(_keys(shifted, x, settings=2.0))
    with jax.default_matmul_precision("highest"):  # the JAX configuration
        changed.append(_keys(_scaled_square, x, settings=2.0))
    assert len({key, *changed}) == len(changed) + 1


def test_a_program_with_a_host_callback_is_not_keyed(tmp_path, restore_cache):
    use_disk_cache(tmp_path)

    def logged(x, *, settings):
        jax.debug.callback(print, x)
        return x * settings

    assert _keys(logged, jnp.ones(2), settings=1.0) is None
    assert _keys(_scaled_square, jnp.ones(2), settings=1.0) is not None
    use_disk_cache(None)
    assert _keys(_scaled_square, jnp.ones(2), settings=1.0) is None  # no folder, no key


def test_a_program_is_loaded_in_place_of_compiling_and_a_bad_file_is_a_miss(
    tmp_path, restore_cache
):
    use_disk_cache(tmp_path)
    x = jnp.arange(6.0)
    compiled, seconds = CompiledFunction("cached_square", _scaled_square).compiled(x, settings=3.0)
    assert seconds > 0 and loaded_count("cached_square") == 0
    (path,) = (tmp_path / disk_cache.PROGRAMS_FOLDER).iterdir()
    fresh = CompiledFunction("cached_square", _scaled_square)  # as in a new process
    loaded, _ = fresh.compiled(x, settings=3.0)
    assert loaded_count("cached_square") == 1 and compile_count("cached_square") == 2
    assert np.array_equal(loaded(x), compiled(x))
    path.write_bytes(b"not an executable")  # e.g. from another jaxlib
    rebuilt, _ = CompiledFunction("cached_square", _scaled_square).compiled(x, settings=3.0)
    assert loaded_count("cached_square") == 1  # compiled again, and the file rewritten
    assert np.array_equal(rebuilt(x), compiled(x))
    assert path.read_bytes() != b"not an executable"


def test_a_program_jax_took_from_its_own_cache_is_not_written_again(tmp_path, restore_cache):
    # Such an executable runs, but serialised again it is not whole: another process
    # loading it failed with "Function add_bitcast_fusion.3 not found".
    use_disk_cache(tmp_path)
    x = jnp.arange(3.0)
    threshold = jax.config.jax_persistent_cache_min_compile_time_secs
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

    def new_function():  # the same code, a new function: no in-memory cache knows it
        def cubed(x, *, settings):
            return jnp.sum(x**3 * settings)

        return cubed

    try:
        CompiledFunction("jax_cached", new_function()).compiled(x, settings=5.0)
        assert any(tmp_path.glob("jit_cubed-*"))  # JAX's entry, keyed on the lowered module
        shutil.rmtree(tmp_path / disk_cache.PROGRAMS_FOLDER)  # jaxgd's entry gone
        compiled, _ = CompiledFunction("jax_cached", new_function()).compiled(x, settings=5.0)
    finally:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", threshold)
    assert loaded_count("jax_cached") == 0
    assert not (tmp_path / disk_cache.PROGRAMS_FOLDER).exists()
    assert float(compiled(x)) == 45.0
