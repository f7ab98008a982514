"""The persistent compilation cache: where it goes, that it leaves a user's own cache
alone, and that a second process loads what the first compiled."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import pytest

import jaxgd
from jaxgd.core.disk_cache import default_cache_dir, use_disk_cache

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

    events = []
    jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
    problem, data = jaxgd.problems.linear_regression()
    result = jaxgd.sweep(problem, data, space=jaxgd.grid(learning_rate=[0.1, 0.05]),
                         batch_size=10, epochs=2, validation=None)
    print(json.dumps({
        "hits": events.count("/jax/compilation_cache/cache_hits"),
        "misses": events.count("/jax/compilation_cache/cache_misses"),
        "loss": result.history["train_loss"].tolist(),
    }))
    """
)


@pytest.mark.slow
def test_a_second_process_loads_what_the_first_compiled(tmp_path):
    env = {**os.environ, "JAXGD_CACHE_DIR": str(tmp_path / "xla"), "PYTHONPATH": str(ROOT)}
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
    assert runs[0]["hits"] == 0 and runs[0]["misses"] >= 2
    # programs compiled faster than MIN_COMPILE_SECONDS are not written, so may miss again
    assert runs[1]["hits"] >= 2 and runs[1]["misses"] < runs[0]["misses"]
    assert runs[1]["loss"] == runs[0]["loss"]
