"""Checkpoint and resume: bitwise the uninterrupted sweep, for every strategy and format,
with early stopping and successive halving; damaged checkpoints; the kill test."""

import os
import pathlib
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

import jaxgd

ROOT = pathlib.Path(__file__).resolve().parent.parent
problem, data = jaxgd.problems.linear_regression(num_examples=48)
SPACE = jaxgd.grid(learning_rate=[0.3, 0.1, 0.03, 0.01], batch_size=[4, 16], seed=[0, 1])


class Interrupt(jaxgd.Callback):
    """Raises after the chunk that ends at epoch ``at``, as a crash there would."""

    stops_configs = False

    def __init__(self, at: int):
        self.at = at

    def on_chunk(self, report):
        if report.epochs_done == self.at:
            raise KeyboardInterrupt(f"interrupted after epoch {self.at}")


def run(folder, *, strategy, checkpoint_format, interrupt=-1, resume=False, epochs=6, data=data):
    callbacks = [
        jaxgd.SuccessiveHalving(metric="val_loss", eta=2, min_epochs=1),
        jaxgd.EarlyStopping(metric="val_loss", patience=2),
        Interrupt(interrupt),
    ]
    return jaxgd.sweep(
        problem,
        data,
        space=SPACE,
        epochs=epochs,
        callbacks=callbacks,
        return_params=True,
        checkpoint_dir=folder,
        resume=resume,
        options=jaxgd.SweepOptions(
            strategy=strategy, rebuild=True, checkpoint_format=checkpoint_format
        ),
    )


def assert_bitwise(a: jaxgd.SweepResult, b: jaxgd.SweepResult) -> None:
    assert list(a.history) == list(b.history)
    for name in a.history:
        np.testing.assert_array_equal(a.history[name], b.history[name], err_msg=name)
    for name in ("status", "stopped_epoch", "updates", "examples_seen", "diverged_step"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(x, y)
    assert [g["configs"] for g in a.groups] == [g["configs"] for g in b.groups]


@pytest.mark.slow
@pytest.mark.parametrize(
    "strategy, checkpoint_format",
    [("grouped", "npz"), ("nested", "orbax"), ("accumulate", "npz"), ("grouped", "orbax")],
)
def test_resume_is_bitwise_the_uninterrupted_sweep(tmp_path, strategy, checkpoint_format):
    reference = run(tmp_path / "ref", strategy=strategy, checkpoint_format=checkpoint_format)
    assert (reference.status == "stopped").sum() >= 8  # halving and patience both acted
    assert len(reference.groups) > 2  # and programs were rebuilt
    for at in (2, 3, 5):
        folder = tmp_path / f"at{at}"
        with pytest.raises(KeyboardInterrupt):
            run(folder, strategy=strategy, checkpoint_format=checkpoint_format, interrupt=at)
        resumed = run(folder, strategy=strategy, checkpoint_format=checkpoint_format, resume=True)
        assert_bitwise(reference, resumed)
    # A finished sweep resumes to its result without training again.
    compiles = jaxgd.compile_count("init")
    again = run(folder, strategy=strategy, checkpoint_format=checkpoint_format, resume=True)
    assert_bitwise(reference, again)
    assert jaxgd.compile_count("init") == compiles


@pytest.mark.slow
def test_host_data_resumes_bitwise_and_a_changed_file_is_refused(tmp_path):
    """HostData memory-mapped from .npy files: interrupted and resumed with a fresh
    HostData of the same files (other windows: they do not change the result), bitwise
    the uninterrupted sweep; one changed value in a file and the resume is refused."""
    for name, values in data.items():
        np.save(tmp_path / f"{name}.npy", np.asarray(values))

    def host(window_steps):
        paths = {name: tmp_path / f"{name}.npy" for name in data}
        return jaxgd.HostData(paths, window_steps=window_steps)

    kwargs = dict(strategy="streamed", checkpoint_format="npz")
    reference = run(tmp_path / "ref", data=host(5), **kwargs)
    assert reference.strategy == "streamed" and len(reference.groups) > 2
    for at in (2, 5):
        folder = tmp_path / f"at{at}"
        with pytest.raises(KeyboardInterrupt):
            run(folder, data=host(5), interrupt=at, **kwargs)
        assert_bitwise(reference, run(folder, data=host(3), resume=True, **kwargs))
    changed = np.load(tmp_path / "y.npy")
    changed[7] += 1.0
    np.save(tmp_path / "changed.npy", changed)  # a new file, not the one mapped above
    os.replace(tmp_path / "changed.npy", tmp_path / "y.npy")
    with pytest.raises(jaxgd.InputError, match=r"different sweep \(data differ\)"):
        run(tmp_path / "at2", data=host(5), resume=True, **kwargs)


def test_checkpoint_every_and_keep_two(tmp_path):
    folder = tmp_path / "ckpt"
    jaxgd.sweep(
        problem,
        data,
        space=SPACE,
        epochs=6,
        checkpoint_dir=folder,
        options=jaxgd.SweepOptions(checkpoint_every=4, checkpoint_format="npz"),
    )
    # chunks 4 and 6 (the last is always written); two kept
    assert sorted(p.name for p in folder.iterdir()) == [
        ".jaxgd-files",
        "ckpt-00000004.json",
        "ckpt-00000004.npz",
        "ckpt-00000006.json",
        "ckpt-00000006.npz",
    ]


def test_checkpoint_seconds_writes_when_due_and_always_at_the_end(tmp_path):
    options = jaxgd.SweepOptions(checkpoint_seconds=1e9, checkpoint_format="npz")
    jaxgd.sweep(
        problem, data, space=SPACE, epochs=3, checkpoint_dir=tmp_path / "c", options=options
    )
    assert sorted(p.name for p in (tmp_path / "c").glob("ckpt-*")) == [
        "ckpt-00000003.json",
        "ckpt-00000003.npz",
    ]


def test_auto_format_is_orbax_when_installed_else_npz(tmp_path, monkeypatch):
    kwargs = dict(space=list(SPACE)[:2], epochs=2, options=jaxgd.SweepOptions(checkpoint_every=1))
    jaxgd.sweep(problem, data, checkpoint_dir=tmp_path / "orbax", **kwargs)
    assert (tmp_path / "orbax" / "orbax" / "2").is_dir()
    monkeypatch.setitem(sys.modules, "orbax.checkpoint", None)  # as if not installed
    jaxgd.sweep(problem, data, checkpoint_dir=tmp_path / "npz", **kwargs)
    assert (tmp_path / "npz" / "ckpt-00000002.npz").is_file()
    with pytest.raises(ImportError, match=r"pip install 'jaxgd\[checkpoint\]'"):
        jaxgd.sweep(
            problem,
            data,
            checkpoint_dir=tmp_path / "refused",
            space=list(SPACE)[:2],
            epochs=2,
            options=jaxgd.SweepOptions(checkpoint_format="orbax"),
        )


def damage_newest(folder: pathlib.Path, checkpoint_format: str) -> None:
    if checkpoint_format == "npz":
        newest = sorted(folder.glob("ckpt-*.npz"))[-1]
    else:
        step = max(int(p.name) for p in (folder / "orbax").iterdir() if p.name.isdigit())
        files = [p for p in (folder / "orbax" / str(step) / "arrays").rglob("*") if p.is_file()]
        newest = max(files, key=lambda p: p.stat().st_size)
    payload = bytearray(newest.read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    newest.write_bytes(bytes(payload))


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint_format", ["npz", "orbax"])
def test_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, checkpoint_format):
    kwargs = dict(strategy="grouped", checkpoint_format=checkpoint_format)
    reference = run(tmp_path / "ref", **kwargs)
    folder = tmp_path / "damaged"
    with pytest.raises(KeyboardInterrupt):
        run(folder, interrupt=4, **kwargs)
    damage_newest(folder, checkpoint_format)
    with pytest.warns(
        RuntimeWarning, match=r"skipped as damaged \(step 3: .*\); resuming from step 2"
    ):
        resumed = run(folder, resume=True, **kwargs)
    assert_bitwise(reference, resumed)


def leftovers(folder: pathlib.Path) -> list[str]:
    """Temporary files, and checkpoint steps written in part (an npz without its JSON)."""
    return [
        str(p)
        for p in folder.rglob("*")
        if p.name.startswith(".tmp-")
        or "orbax-checkpoint-tmp" in p.name
        or (
            p.suffix == ".npz"
            and p.name.startswith("ckpt-")
            and not p.with_suffix(".json").exists()
        )
    ]


def worker(tmp_path, name, kill_at=None, checkpoint_format="npz", data_dir=""):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("JAXGD_KILL_AT", None)
    if kill_at is not None:
        env["JAXGD_KILL_AT"] = kill_at
    # One persistent compilation cache for every attempt: the compiles are the cost of
    # a fresh process, and a cached executable computes what a fresh compile does.
    env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path / "jax-cache")
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    command = [
        sys.executable,
        str(ROOT / "tests" / "resume_worker.py"),
        str(tmp_path / name / "ckpt"),
        str(tmp_path / name / "result"),
        checkpoint_format,
        str(data_dir),
    ]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def kill_moments(rng: np.random.Generator) -> list[str]:
    """Ten moments: eight drawn among chunks running, checkpoints about to be written and
    files half-written (bytes on disk, not renamed in: checkpoint files and the folder's
    manifest), then two in the final result write."""
    points = [("chunk", 2), ("checkpoint", 2), ("write", 5)]
    moments = []
    for _ in range(8):
        point, most = points[rng.integers(len(points))]
        moments.append(f"{point}:{rng.integers(1, most + 1)}")
    return moments + ["result:1", "result:2"]


@pytest.mark.slow
def test_kill_test(tmp_path):
    """SIGKILL the sweep at ten moments, resuming each time: the saved result is bitwise
    the uninterrupted run's, and no temporary file is left. Then twice more with orbax
    checkpoints (the reference's were npz: the format does not change the result)."""
    clean = worker(tmp_path, "clean")
    assert clean.returncode == 0, clean.stderr[-3000:]
    reference = jaxgd.SweepResult.load(tmp_path / "clean" / "result")
    assert (reference.status == "stopped").any() and len(reference.groups) > 2

    moments = kill_moments(np.random.default_rng(20261122))
    for moment in moments:
        attempt = worker(tmp_path, "killed", kill_at=moment)
        assert attempt.returncode == -signal.SIGKILL, (moment, attempt.stderr[-3000:])
        assert not jaxgd.SweepResult.is_complete(tmp_path / "killed" / "result")
    last = worker(tmp_path, "killed")
    assert last.returncode == 0, last.stderr[-3000:]
    resumed = jaxgd.SweepResult.load(tmp_path / "killed" / "result")
    assert_bitwise(reference, resumed)
    assert leftovers(tmp_path / "killed") == []

    # The orbax format across processes: killed while training and before a checkpoint.
    for moment in ("chunk:2", "checkpoint:3"):
        attempt = worker(tmp_path, "orbax", kill_at=moment, checkpoint_format="orbax")
        assert attempt.returncode == -signal.SIGKILL, (moment, attempt.stderr[-3000:])
    last = worker(tmp_path, "orbax", checkpoint_format="orbax")
    assert last.returncode == 0, last.stderr[-3000:]
    assert_bitwise(reference, jaxgd.SweepResult.load(tmp_path / "orbax" / "result"))
    assert leftovers(tmp_path / "orbax") == []


@pytest.mark.slow
def test_kill_test_streaming_npy_files(tmp_path):
    """HostData from .npy files, windows of 3 steps: SIGKILL while a window trains (the
    next not yet put on the device), while a chunk runs, before a checkpoint and while
    one is written; resumed each time, the result is bitwise the uninterrupted streamed
    run's."""
    problem, data = jaxgd.problems.linear_regression(num_examples=48, seed=3)
    (tmp_path / "data").mkdir()
    for name, values in data.items():
        np.save(tmp_path / "data" / f"{name}.npy", values)
    clean = worker(tmp_path, "clean", data_dir=tmp_path / "data")
    assert clean.returncode == 0, clean.stderr[-3000:]
    reference = jaxgd.SweepResult.load(tmp_path / "clean" / "result")
    assert reference.strategy == "streamed" and len(reference.groups) > 2
    for moment in ("window:4", "chunk:3", "checkpoint:2", "write:2", "window:9"):
        attempt = worker(tmp_path, "killed", kill_at=moment, data_dir=tmp_path / "data")
        assert attempt.returncode == -signal.SIGKILL, (moment, attempt.stderr[-3000:])
        assert not jaxgd.SweepResult.is_complete(tmp_path / "killed" / "result")
    last = worker(tmp_path, "killed", data_dir=tmp_path / "data")
    assert last.returncode == 0, last.stderr[-3000:]
    assert_bitwise(reference, jaxgd.SweepResult.load(tmp_path / "killed" / "result"))
    assert leftovers(tmp_path / "killed") == []
