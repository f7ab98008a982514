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


# The examples split too (a mesh axis "examples"): each device holds 1/n of the training
# set and computes 1/n of each batch. 7 configs (not divisible by the configs axis), 1202
# training examples (1202 / 4 leaves 2: padded rows), batch sizes 1, 10 and 130 (padded
# with masked examples to multiples of 2n for the noise's halves; the epoch's last batch
# is partial: 2 and 32 examples), the noise measured, device data and HostData.
_EXAMPLES = textwrap.dedent(
    """
    import json
    import re

    import jax
    import numpy as np
    import jaxgd
    from jaxgd.core.layout import Placement

    assert jax.device_count() == 4, jax.devices()
    problem, data = jaxgd.problems.linear_regression(num_examples=1502)
    space = [
        {"learning_rate": lr, "momentum": m, "seed": s}
        for lr, m, s in [(0.1, 0.0, 0), (0.05, 0.5, 0), (0.02, 0.9, 1), (0.1, 0.5, 1),
                         (0.01, 0.0, 0), (0.2, 0.0, 0), (0.05, 0.9, 0)]
    ]
    meshes = {
        "1": None,
        "2x2": jax.make_mesh((2, 2), ("configs", "examples")),
        "1x4": jax.make_mesh((1, 4), ("configs", "examples")),
        "4x1": jax.make_mesh((4, 1), ("configs", "examples")),
    }
    out = {}
    # the programs a sweep runs (not "init": compiled once per layout shape, so cached
    # from an earlier sweep of the same mesh)
    programs = ("grouped_chunk", "stream_orders", "stream_window", "stream_epoch_end")
    for source in ("grouped", "streamed"):
        for batch_size in (1, 10, 130):
            for name, mesh in meshes.items():
                options = (jaxgd.SweepOptions(strategy=source, devices=jax.devices()[:1])
                           if mesh is None else jaxgd.SweepOptions(strategy=source, mesh=mesh))
                given = data if source == "grouped" else jaxgd.HostData(
                    jax.tree.map(np.asarray, data), window_steps=3)
                compiles = {name: jaxgd.compile_count(name) for name in programs}
                result = jaxgd.sweep(
                    problem, given, space=space, batch_size=batch_size, epochs=3,
                    return_params=True, measure=["noise_scale"], options=options,
                )
                hlo = "".join(e.as_text() for e in result.compiled)
                out[f"{source}/{batch_size}/{name}"] = {
                    "strategy": result.strategy,
                    "history": {k: np.nan_to_num(v, nan=-1.0).tolist()
                                for k, v in result.history.items()},
                    "params": [leaf.tolist() for leaf in jax.tree.leaves(result.params)],
                    "updates": result.updates.tolist(),
                    "compiles": {name: jaxgd.compile_count(name) - compiles[name]
                                 for name in programs},
                    "all_gathered": max(
                        [int(np.prod([int(d) for d in dims.split(",")])) for dims in
                         re.findall(r"= \\w+\\[([\\d,]+)\\][^ ]* all-gather\\(", hlo)],
                        default=0,
                    ),
                    "argument_bytes": max(e.memory_analysis().argument_size_in_bytes
                                          for e in result.compiled),
                }
    # 'auto' picks grouped for mixed batch sizes (nested would not split them)
    mixed = [{**space[0], "batch_size": 10}, {**space[1], "batch_size": 20}]
    result = jaxgd.sweep(problem, data, space=mixed, epochs=1,
                         options=jaxgd.SweepOptions(mesh=meshes["2x2"]))
    out["auto"] = result.strategy
    out["num_train"] = int(result.history["examples_seen"][0, 0])
    # where the training set lives: 1502 examples as 4 shards of 376 (2 padded rows)
    placed = Placement(meshes["1x4"]).training_data(jaxgd.data.as_dataset(data))
    out["shards"] = {
        name: [list(shard.data.shape) for shard in leaf.addressable_shards]
        for name, leaf in placed.items()
    }
    placed = Placement(meshes["2x2"]).training_data(jaxgd.data.as_dataset(data))
    out["shards-2x2"] = [list(shard.data.shape) for shard in placed["x"].addressable_shards]
    out["data"] = {name: list(np.shape(leaf)) for name, leaf in data.items()}
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def example_split():
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "PYTHONPATH": str(ROOT),
    }
    run = subprocess.run(
        [sys.executable, "-c", _EXAMPLES], env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.splitlines()[-1])


def _close_split(got, want, name):
    if name in ("b_simple", "grad_trace", "grad_sq_norm"):
        # differences of squared gradient norms amplify the rounding (measured 7e-5)
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-6, err_msg=name)
    else:
        # Each step's gradient is summed in n partial sums, then added across devices:
        # another order of float32 additions, a few ulp (1e-7) per step, measured at most
        # 8e-7 relative after 3 epochs of up to 1202 steps on this contracting problem.
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("source", ["grouped", "streamed"])
@pytest.mark.parametrize("batch_size", [1, 10, 130])
@pytest.mark.parametrize("mesh", ["2x2", "1x4", "4x1"])
def test_examples_split_gives_the_one_device_result(example_split, source, batch_size, mesh):
    one = example_split[f"grouped/{batch_size}/1"]
    many = example_split[f"{source}/{batch_size}/{mesh}"]
    assert many["strategy"] == source
    assert many["updates"] == one["updates"]
    for name, values in one["history"].items():
        _close_split(many["history"][name], values, name)
    for got, want in zip(many["params"], one["params"], strict=True):
        _close_split(got, want, "params")
    # one program as on one device (streamed: its orders, window and epoch-end programs)
    on_one = example_split[f"{source}/{batch_size}/1"]["compiles"]
    assert many["compiles"] == on_one, (many["compiles"], on_one)
    # the gather from split data is a local gather of the batch's indices on each device
    # and a sum over the examples axis: at most the batch's indices of every seed (2 seeds,
    # the batch padded to a multiple of 8 for the noise's halves) are all-gathered, never
    # the training set
    assert many["all_gathered"] <= 2 * -(-batch_size // 8) * 8


@pytest.mark.slow
def test_examples_split_divides_the_data_on_each_device(example_split):
    n, features = example_split["data"]["x"]
    assert example_split["shards"] == {"x": [[376, features]] * 4, "y": [[376]] * 4}
    assert example_split["shards-2x2"] == [[751, features]] * 4  # split 2, copied 2
    # the chunk program's arguments on one device (states, keys, training and validation
    # sets): on 1x4 every device trains every config, as on one, and holds a quarter of
    # the training set's rows (rounded up), float32 x and y
    train = example_split["num_train"]
    one = example_split["grouped/130/1"]["argument_bytes"]
    split = example_split["grouped/130/1x4"]["argument_bytes"]
    assert one - split == (train - -(-train // 4)) * (features + 1) * 4


@pytest.mark.slow
def test_auto_picks_grouped_on_an_examples_axis(example_split):
    assert example_split["auto"] == "grouped"


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


def test_an_examples_axis_of_one_device_gives_the_default_result():
    problem, data = jaxgd.problems.linear_regression(num_examples=61)
    kwargs = dict(space=jaxgd.grid(learning_rate=[0.1, 0.05]), batch_size=7, epochs=2)
    mesh = jax.make_mesh((1, 1), ("configs", "examples"))
    default = jaxgd.sweep(problem, data, **kwargs)
    meshed = jaxgd.sweep(problem, data, **kwargs, options=jaxgd.SweepOptions(mesh=mesh))
    np.testing.assert_array_equal(meshed.history["train_loss"], default.history["train_loss"])
    assert meshed.meta["options"]["mesh"]["axes"] == {"configs": 1, "examples": 1}


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
