"""Two processes on 127.0.0.1 (CPU collectives over gloo) train the sweep of one process."""

import json
import os
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
    for strategy in ("grouped", "accumulate"):
        result = jaxgd.sweep(problem, data, space=space, batch_size=8, epochs=3,
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
    for strategy in ("grouped", "accumulate"):
        one = jaxgd.sweep(
            problem, data, space=SPACE, **SWEEP, options=jaxgd.SweepOptions(strategy=strategy)
        )
        assert runs[0][strategy]["slots"] == [g["slots"] for g in one.groups]
        for run in runs:  # every process holds the whole result, bitwise that of one process
            for name, values in one.history.items():
                np.testing.assert_array_equal(run[strategy]["history"][name], values)
            for got, want in zip(run[strategy]["params"], jax.tree.leaves(one.params)):
                np.testing.assert_array_equal(got, want)


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
