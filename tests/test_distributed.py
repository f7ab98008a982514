"""Two processes on 127.0.0.1 (CPU collectives over gloo) train the sweep of one process,
and a two-process sweep killed and resumed by two new processes ends as one process's."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxgd

ROOT = Path(__file__).resolve().parents[1]

SPACE = jaxgd.grid(learning_rate=[0.1, 0.05, 0.02], momentum=[0.0, 0.9], seed=[0, 1])
SWEEP = dict(batch_size=8, epochs=3, return_params=True)

_PROCESS = textwrap.dedent(
    """
    import json, sys
    import jaxgd

    jaxgd.distributed.initialize(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
    import jax

    problem, data = jaxgd.problems.linear_regression(num_examples=120)
    space = jaxgd.grid(learning_rate=[0.1, 0.05, 0.02], momentum=[0.0, 0.9], seed=[0, 1])
    out = {"devices": jax.device_count(), "process": jax.process_index()}
    for strategy in ("grouped", "accumulate", "streamed"):
        # streamed: each process gathers the windows from its own copy of the data
        given = jaxgd.HostData(data, window_steps=4) if strategy == "streamed" else data
        result = jaxgd.sweep(problem, given, space=space, batch_size=8, epochs=3,
                             return_params=True, options=jaxgd.SweepOptions(strategy=strategy))
        out[strategy] = {
            "history": {k: v.tolist() for k, v in result.history.items()},
            "params": [leaf.tolist() for leaf in jax.tree.leaves(result.params)],
            "slots": [g["slots"] for g in result.groups],
        }
    print(json.dumps(out))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path):
    address = f"127.0.0.1:{_free_port()}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("XLA_FLAGS", None)
    logs = [tmp_path / f"process{i}.txt" for i in range(2)]
    processes = []
    try:
        for i, log in enumerate(logs):
            with log.open("w") as stderr:
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-c", _PROCESS, address, str(i)],
                        env=env,
                        stdout=subprocess.PIPE,
                        stderr=stderr,
                        text=True,
                    )
                )
        outputs = [p.communicate(timeout=240)[0] for p in processes]
    finally:
        for p in processes:  # a hung peer must not outlive the test
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, log in zip(processes, logs):
        assert p.returncode == 0, log.read_text()[-3000:]
    runs = [json.loads(out.splitlines()[-1]) for out in outputs]
    assert [r["process"] for r in runs] == [0, 1] and runs[0]["devices"] == 2

    problem, data = jaxgd.problems.linear_regression(num_examples=120)
    ones = {}
    for strategy in ("grouped", "accumulate", "streamed"):
        # streamed: the grouped programs, so the one-process grouped result, bitwise
        if strategy == "streamed":
            one = ones["grouped"]
        else:
            options = jaxgd.SweepOptions(strategy=strategy)
            one = ones[strategy] = jaxgd.sweep(problem, data, space=SPACE, **SWEEP, options=options)
        assert runs[0][strategy]["slots"] == [g["slots"] for g in one.groups]
        for run in runs:  # every process holds the whole result, bitwise that of one process
            for name, values in one.history.items():
                np.testing.assert_array_equal(run[strategy]["history"][name], values)
            for got, want in zip(run[strategy]["params"], jax.tree.leaves(one.params)):
                np.testing.assert_array_equal(got, want)


def two_processes(tmp_path, name, checkpoint_format, kill_at=None):
    """Run tests/distributed_resume_worker.py as processes 0 and 1 (each killed at
    ``kill_at`` if given); process 1 is handed folders of its own, which it must never
    read or write. Returns the processes' return codes and outputs."""
    address = f"127.0.0.1:{_free_port()}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("XLA_FLAGS", None)
    env.pop("JAXGD_KILL_AT", None)
    if kill_at is not None:
        env["JAXGD_KILL_AT"] = kill_at
    env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path / "jax-cache")  # fresh processes
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    processes, logs = [], []
    try:
        for i in range(2):
            folder = tmp_path / name if i == 0 else tmp_path / f"{name}-process1"
            logs.append(tmp_path / f"{name}-{kill_at}-{i}.txt")
            command = [
                sys.executable,
                str(ROOT / "tests" / "distributed_resume_worker.py"),
                address,
                str(i),
                str(folder / "ckpt"),
                str(folder / "result"),
                checkpoint_format,
            ]
            with logs[-1].open("w") as stderr:
                processes.append(
                    subprocess.Popen(
                        command, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
                    )
                )
        outputs = [p.communicate(timeout=240)[0] for p in processes]
    finally:
        for p in processes:  # a peer left waiting for a killed one must not outlive the test
            if p.poll() is None:
                p.kill()
                p.communicate()
    return [p.returncode for p in processes], outputs, [log.read_text() for log in logs]


@pytest.mark.slow
def test_two_processes_killed_and_resumed_equal_one_uninterrupted(tmp_path):
    """Killed while a chunk runs and again before a checkpoint is written, the two-process
    sweep resumed by two new processes saves the result of the uninterrupted two-process
    sweep, bitwise, and that of one process to float rounding (the same decisions); both
    processes hold it; process 1 never touches a folder. In npz and in orbax checkpoints:
    the format changes no number, so both resumed sweeps equal the one uninterrupted run."""
    from resume_worker import main
    from test_resume import assert_bitwise

    one = main(str(tmp_path / "one" / "ckpt"), str(tmp_path / "one" / "result"))
    codes, _, logs = two_processes(tmp_path, "uninterrupted", "npz")
    assert codes == [0, 0], (logs[0][-3000:], logs[1][-3000:])
    uninterrupted = jaxgd.SweepResult.load(tmp_path / "uninterrupted" / "result")
    assert not (tmp_path / "uninterrupted-process1").exists()
    for checkpoint_format in ("npz", "orbax"):
        name = f"two-{checkpoint_format}"
        for kill_at in ("chunk:3", "checkpoint:5"):
            codes, _, logs = two_processes(tmp_path, name, checkpoint_format, kill_at)
            assert codes == [-signal.SIGKILL] * 2, (kill_at, logs[0][-3000:], logs[1][-3000:])
        codes, outputs, logs = two_processes(tmp_path, name, checkpoint_format)
        assert codes == [0, 0], (logs[0][-3000:], logs[1][-3000:])
        resumed = jaxgd.SweepResult.load(tmp_path / name / "result")
        assert_bitwise(uninterrupted, resumed)
        digests = [output.splitlines()[-1] for output in outputs]
        assert digests[0] == digests[1]
        assert not (tmp_path / f"{name}-process1").exists()

    # One process: the same configs stopped at the same epochs, the same programs; the
    # numbers to float32 rounding (two devices' programs may sum in another order).
    for name in ("status", "stopped_epoch", "updates", "examples_seen", "diverged_step"):
        np.testing.assert_array_equal(getattr(one, name), getattr(resumed, name), err_msg=name)
    assert [g["configs"] for g in one.groups] == [g["configs"] for g in resumed.groups]
    for name in one.history:
        np.testing.assert_allclose(resumed.history[name], one.history[name], rtol=1e-5)
    for got, want in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(one.params)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, env, match",
    [
        (dict(num_processes=2, process_id=2), {}, "process_id=2: must lie in 0..1"),
        (dict(num_processes=0), {}, "num_processes=0"),
        ({}, {"JAXGD_NUM_PROCESSES": "two"}, "JAXGD_NUM_PROCESSES='two': must be an integer"),
    ],
)
def test_bad_process_settings_are_refused(monkeypatch, kwargs, env, match):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(jaxgd.InputError, match=match):
        jaxgd.distributed.initialize("127.0.0.1:1", **kwargs)
