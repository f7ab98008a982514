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
    import sys

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
    # HostData streamed (the grouped programs, their windows of batches put on every
    # device) with noise measured every 4th (batch 128) and 2nd step (256, from epoch 2
    # on): windows of one step widen to two measurement groups. On one device this is
    # tests/test_streaming.py's (bitwise).
    problem, data = jaxgd.problems.linear_regression(num_examples=1200)
    space = [{**config, "batch_size": b} for config in space[:7]
             for b in (128, jaxgd.batch_schedule(128, {2: 256}))]

    class Interrupt(jaxgd.Callback):
        stops_configs = False

        def __init__(self, at):
            self.at = at

        def on_chunk(self, report):
            if report.epochs_done == self.at:
                raise KeyboardInterrupt

    def noise_sweep(source, count, **kwargs):
        given = data if source == "grouped" else jaxgd.HostData(data, window_steps=1)
        result = jaxgd.sweep(
            problem, given, space=space, epochs=3, return_params=True,
            measure=["noise_scale"], **kwargs,
            options=jaxgd.SweepOptions(strategy=source, devices=jax.devices()[:count],
                                       checkpoint_format="npz"),
        )
        assert result.strategy == source
        return {
            "history": {k: v.tolist() for k, v in result.history.items()},
            "params": [leaf.tolist() for leaf in jax.tree.leaves(result.params)],
            "updates": result.updates.tolist(),
            "slots": [g["slots"] for g in result.groups],
        }

    for source, count in (("grouped", 1), ("grouped", 4), ("streamed", 2), ("streamed", 4)):
        out[f"noise-{source}/{count}"] = noise_sweep(source, count)
    # killed after epoch 2 (where the schedule switches) and resumed on four devices
    resume = dict(checkpoint_dir=sys.argv[1])
    try:
        noise_sweep("streamed", 4, callbacks=[Interrupt(2)], **resume)
    except KeyboardInterrupt:
        out["noise-resumed/4"] = noise_sweep(
            "streamed", 4, callbacks=[Interrupt(-1)], resume=True, **resume
        )
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory):
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "PYTHONPATH": str(ROOT),
    }
    folder = tmp_path_factory.mktemp("checkpoints")
    run = subprocess.run(
        [sys.executable, "-c", _DEVICES, str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
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
@pytest.mark.parametrize("count", [2, 4])
def test_streamed_host_data_with_noise_and_a_schedule_on_two_and_four_devices(four_devices, count):
    one, many = four_devices["noise-grouped/1"], four_devices[f"noise-streamed/{count}"]
    assert many["updates"] == one["updates"]
    assert np.all(np.asarray(many["history"]["grad_trace"]) > 0)
    for name, values in one["history"].items():
        if name in ("b_simple", "grad_trace", "grad_sq_norm"):
            # estimated from differences of squared gradient norms (core.step
            # GradientNoise): the rounding of a wider row, amplified (measured 8e-5)
            np.testing.assert_allclose(many["history"][name], values, rtol=1e-3, err_msg=name)
        else:
            _close(many["history"][name], values, bitwise=False)
    for got, want in zip(many["params"], one["params"], strict=True):
        _close(got, want, bitwise=False)


@pytest.mark.slow
@pytest.mark.parametrize("run", ["noise-streamed/4", "noise-resumed/4"])
def test_streamed_equals_device_data_on_the_same_devices_bitwise(four_devices, run):
    # the same programs on the same four devices, the batches streamed a window at a time
    # (and, resumed, after a kill at the schedule's switch): bitwise
    streamed, grouped = four_devices[run], four_devices["noise-grouped/4"]
    assert streamed["slots"] == grouped["slots"]
    assert streamed["updates"] == grouped["updates"]
    for name, values in grouped["history"].items():
        np.testing.assert_array_equal(streamed["history"][name], values, err_msg=name)
    for got, want in zip(streamed["params"], grouped["params"], strict=True):
        np.testing.assert_array_equal(got, want)


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
