"""The config axis split over devices: the same results on 1, 2 and 4 devices.

The suite's process has one CPU device and XLA reads ``XLA_FLAGS`` once, when JAX starts,
so the multi-device runs happen in a subprocess with four simulated CPU devices.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxgd
from jaxgd.core.layout import Placement, SeedLayout

ROOT = Path(__file__).resolve().parents[1]

_DEVICES = textwrap.dedent(
    """
    import json
    import jax
    import numpy as np
    import jaxgd

    assert jax.device_count() == 4, jax.devices()
    problem, data = jaxgd.problems.linear_regression(num_examples=120)
    # 7 configs per batch size (not divisible by 4) over two seeds, two batch sizes
    space = [
        {"learning_rate": lr, "momentum": m, "batch_size": b, "seed": s}
        for b in (8, 12)
        for lr, m, s in [(0.1, 0.0, 0), (0.05, 0.5, 0), (0.02, 0.9, 1), (0.1, 0.5, 1),
                         (0.01, 0.0, 0), (0.2, 0.0, 0), (0.05, 0.9, 0)]
    ]
    out = {}
    for strategy in ("grouped", "nested", "accumulate"):
        for count in (1, 2, 4):
            result = jaxgd.sweep(
                problem, data, space=space, epochs=3, return_params=True,
                options=jaxgd.SweepOptions(strategy=strategy, devices=jax.devices()[:count]),
            )
            out[f"{strategy}/{count}"] = {
                "history": {k: v.tolist() for k, v in result.history.items()},
                "params": [leaf.tolist() for leaf in jax.tree.leaves(result.params)],
                "updates": result.updates.tolist(),
                "slots": [g["slots"] for g in result.groups],
            }
    halving = jaxgd.SuccessiveHalving("train_loss", eta=2)
    for count in (1, 4):
        result = jaxgd.sweep(
            problem, data, space=space, epochs=4, callbacks=[halving], validation=None,
            options=jaxgd.SweepOptions(strategy="grouped", rebuild=True,
                                       devices=jax.devices()[:count]),
        )
        out[f"halving/{count}"] = {
            "history": {k: np.nan_to_num(v, nan=-1.0).tolist() for k, v in result.history.items()},
            "status": result.status.tolist(),
        }
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def four_devices():
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "PYTHONPATH": str(ROOT),
    }
    run = subprocess.run(
        [sys.executable, "-c", _DEVICES], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.splitlines()[-1])


def _close(got, want, bitwise):
    if bitwise:
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    else:
        # A wider padded row changes how XLA vectorises the configs: float rounding.
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["grouped", "nested", "accumulate"])
@pytest.mark.parametrize("count", [2, 4])
def test_same_results_on_one_two_and_four_devices(four_devices, strategy, count):
    one, many = four_devices[f"{strategy}/1"], four_devices[f"{strategy}/{count}"]
    assert all(slots % count == 0 for slots in many["slots"])
    same_width = many["slots"] == one["slots"]
    assert many["updates"] == one["updates"]
    for name, values in one["history"].items():
        _close(many["history"][name], values, same_width)
    for got, want in zip(many["params"], one["params"]):
        _close(got, want, same_width)


@pytest.mark.slow
def test_successive_halving_on_four_devices(four_devices):
    one, four = four_devices["halving/1"], four_devices["halving/4"]
    assert four["status"] == one["status"]
    for name, values in one["history"].items():
        _close(four["history"][name], values, bitwise=False)


def test_slots_are_padded_to_a_multiple_of_the_devices():
    placement = Placement()
    assert placement.count == jax.device_count() == 1
    layout = SeedLayout([0, 0, 1, 0, 1], placement=placement)
    assert layout.slots.shape == (2, 3)
    assert placement.width(5) == 5


def test_a_mesh_with_a_configs_axis_gives_the_default_result():
    problem, data = jaxgd.problems.linear_regression(num_examples=60)
    kwargs = dict(space=jaxgd.grid(learning_rate=[0.1, 0.05]), batch_size=8, epochs=2)
    mesh = jax.make_mesh((1,), ("configs",))
    default = jaxgd.sweep(problem, data, **kwargs)
    meshed = jaxgd.sweep(problem, data, **kwargs, options=jaxgd.SweepOptions(mesh=mesh))
    np.testing.assert_array_equal(meshed.history["train_loss"], default.history["train_loss"])


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(devices=[]), "devices=\\[\\]: must be a non-empty list of jax.Device"),
        (dict(devices=["cpu:0"]), "devices=\\['cpu:0'\\]"),
        (dict(mesh="configs"), "mesh='configs': must be a jax.sharding.Mesh"),
        (
            dict(devices=jax.devices(), mesh=jax.make_mesh((1,), ("configs",))),
            "give one of them, not both",
        ),
    ],
)
def test_devices_and_mesh_are_checked(options, match):
    with pytest.raises(jaxgd.InputError, match=match):
        jaxgd.SweepOptions(**options)
