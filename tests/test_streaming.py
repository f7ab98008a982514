"""Data streamed from host memory (``jaxgd.HostData``) trains exactly as device data: the
same orders, batches, masks and steps, so the same results, bitwise on the CPU, whatever
the window of steps, the chunk size or the file the data is mapped from."""

import textwrap

import jax
import numpy as np
import pytest

import jaxgd
from jaxgd import runfile
from jaxgd.cli import main
from jaxgd.configs import resolve_configs
from jaxgd.core.memory import config_bytes
from jaxgd.data import HostData, host_batch_indices
from jaxgd.strategies.streamed import stream_bytes

PROBLEM = jaxgd.problems.mlp((4, 8, 3))
RNG = np.random.default_rng(0)
# 103 examples, 82 after the validation split: batch 10 gives 9 steps, the last over 2.
DATA = {
    "x": RNG.normal(size=(103, 4)),  # float64 on the host, float32 on the device
    "y": (np.arange(103) % 3).astype(np.int64),
}
SPACE = jaxgd.grid(learning_rate=[0.1, 0.03], momentum=[0.0, 0.9], seed=[0, 1, 2])


def run(data, **kwargs):
    options = dict(space=SPACE, epochs=4, batch_size=10, validation=0.2, return_params=True)
    options.update(kwargs)
    return jaxgd.sweep(PROBLEM, data, **options)


def assert_same(streamed, on_device):
    assert streamed.history.keys() == on_device.history.keys()
    for name, values in on_device.history.items():
        np.testing.assert_array_equal(streamed.history[name], values, err_msg=name)
    for a, b in zip(jax.tree.leaves(streamed.params), jax.tree.leaves(on_device.params)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(streamed.updates, on_device.updates)
    np.testing.assert_array_equal(streamed.status, on_device.status)


@pytest.fixture(scope="module")
def on_device():
    return run(DATA)


@pytest.mark.parametrize("window_steps", [None, 9, 4, 1])
def test_streamed_equals_device_data_bitwise(on_device, window_steps):
    # 9 steps per epoch: one window; windows of 4 and 5 (a last window of one step joins
    # the one before); of 2, 2, 2 and 3 (a window has two steps or more)
    streamed = run(HostData(DATA, window_steps=window_steps))
    assert streamed.strategy == "streamed" and on_device.strategy == "grouped"
    assert_same(streamed, on_device)


def test_a_batch_of_16_sums_as_on_the_device():
    # Once 1 ulp apart (the bias, 2.4e-7): XLA:CPU vectorized the batch sums of the step
    # that gathers its batch (8 lanes) but not those of a step reading a window slice;
    # the window program now gathers by position too (strategies/streamed.py)
    problem, data = jaxgd.problems.linear_regression(num_examples=48)
    kwargs = dict(space=[{"learning_rate": 0.1}], epochs=1, batch_size=16, return_params=True)
    assert_same(
        jaxgd.sweep(problem, HostData(data), **kwargs), jaxgd.sweep(problem, data, **kwargs)
    )


def _grid_case(name):
    if name == "mlp":
        data = {"x": RNG.normal(size=(77, 5)).astype(np.float32), "y": np.arange(77) % 2}
        return jaxgd.problems.mlp((5, 2)), data  # logistic regression (softmax, 2 classes)
    if name == "multiple_regression":
        return jaxgd.problems.multiple_regression(num_examples=90)
    return jaxgd.problems.linear_regression(num_examples=int(name.split("_")[-1]))


@pytest.mark.parametrize(
    "name, batch_size, validation, window_steps",
    [
        # from a search over problems, sizes, batch sizes and windows (92 cases, all
        # bitwise now): the first four were 1 ulp or more apart before the window
        # program gathered its batches and scanned two steps or more
        ("linear_regression_48", 16, None, 1),
        ("linear_regression_100", 32, 0.2, 3),
        ("linear_regression_20", 16, None, 3),
        ("multiple_regression", 32, 0.2, 1),
        ("mlp", 16, 0.2, 1),
        ("linear_regression_48", 7, None, 3),
    ],
)
def test_bitwise_over_problems_batch_sizes_and_windows(name, batch_size, validation, window_steps):
    problem, data = _grid_case(name)
    space = jaxgd.grid(learning_rate=[0.1, 0.01], momentum=[0.0, 0.9], seed=[0, 1])
    kwargs = dict(space=space, epochs=2, batch_size=batch_size, validation=validation)
    kwargs.update(return_params=True, eval_data=data if validation is None else None)
    streamed = jaxgd.sweep(problem, HostData(data, window_steps=window_steps), **kwargs)
    assert_same(streamed, jaxgd.sweep(problem, data, **kwargs))


def test_chunk_size_and_no_shuffle_drop_last(on_device):
    options = jaxgd.SweepOptions(epochs_per_chunk=2)
    assert_same(run(HostData(DATA, window_steps=4), options=options), on_device)
    kwargs = dict(shuffle=False, drop_last=True, validation=None, eval_data=DATA)
    assert_same(run(HostData(DATA, window_steps=2), **kwargs), run(DATA, **kwargs))


def test_memory_mapped_npy_files(tmp_path, on_device):
    np.save(tmp_path / "x.npy", DATA["x"])
    np.save(tmp_path / "y.npy", DATA["y"])
    from_paths = HostData({"x": str(tmp_path / "x.npy"), "y": tmp_path / "y.npy"})
    assert isinstance(from_paths.arrays["x"], np.memmap)
    assert_same(run(from_paths), on_device)
    loaded = jaxgd.datafiles.load_dataset(inputs=tmp_path / "x.npy", targets=tmp_path / "y.npy")
    assert_same(run(HostData(loaded, window_steps=3)), on_device)


def test_strategy_streamed_streams_arrays_and_measures_noise():
    kwargs = dict(measure=["noise_scale"], epochs=2, batch_size=4)
    options = jaxgd.SweepOptions(strategy="streamed")
    assert_same(run(DATA, options=options, **kwargs), run(DATA, **kwargs))


def test_noise_measured_every_other_step_in_windows_of_whole_groups():
    # B = 256 measures every 2nd step (core.step.noise_every); 9 steps an epoch: a window
    # of 1 step widens to two groups (4 steps), so that windows start where a group does
    # and scan two groups or more: windows of 4, 4 and the rest, 1
    rng = np.random.default_rng(1)
    data = {"x": rng.normal(size=(2100, 4)), "y": (np.arange(2100) % 3).astype(np.int64)}
    kwargs = dict(measure=["noise_scale"], epochs=2, batch_size=256, validation=None)
    assert jaxgd.core.step.noise_every(256) == 2
    assert HostData(data, window_steps=1).windows(jaxgd.BatchPlan(2100, 256), 1, 2) == [
        (0, 4),
        (4, 4),
        (8, 1),
    ]
    streamed = run(HostData(data, window_steps=1), **kwargs)
    assert np.all(streamed.history["grad_trace"] > 0)
    assert_same(streamed, run(data, **kwargs))


def test_mixed_batch_sizes_and_callbacks_with_rebuild():
    space = jaxgd.grid(learning_rate=[0.1, 0.03, 0.01, 0.3], batch_size=[10, 16], seed=[0, 1])

    def halving():
        return [jaxgd.SuccessiveHalving("val_loss", eta=2)]

    options = dict(strategy="grouped", rebuild=True)
    on_device = run(DATA, space=space, callbacks=halving(), options=jaxgd.SweepOptions(**options))
    options["strategy"] = "streamed"
    streamed = run(
        HostData(DATA, window_steps=3),
        space=space,
        callbacks=halving(),
        options=jaxgd.SweepOptions(**options),
    )
    assert len(streamed.groups) > 2  # the two batch sizes' programs, then rebuilt ones
    assert_same(streamed, on_device)


def test_compiles_once_per_program_shape():
    problem = jaxgd.problems.mlp((4, 7, 3))  # a model no other test compiles
    names = ("stream_window", "stream_epoch_end", "stream_orders", "grouped_chunk")
    before = {name: jaxgd.compile_count(name) for name in names}
    # five seeds: an orders program of a shape no other test compiles (it depends on the
    # seeds, the examples and shuffling only, so other problems' sweeps share it)
    space = jaxgd.grid(learning_rate=[0.1, 0.03], seed=[0, 1, 2, 3, 4])
    kwargs = dict(space=space, epochs=3, batch_size=10, validation=0.2)
    jaxgd.sweep(problem, HostData(DATA, window_steps=4), **kwargs)
    counts = {name: jaxgd.compile_count(name) - before[name] for name in names}
    # windows of 4 and 5 steps, one epoch end, one orders program, no device-data chunk
    assert counts == {
        "stream_window": 2,
        "stream_epoch_end": 1,
        "stream_orders": 1,
        "grouped_chunk": 0,
    }
    total = jaxgd.compile_count()
    jaxgd.sweep(problem, HostData(DATA, window_steps=4), **kwargs)
    assert jaxgd.compile_count() == total


def test_host_batch_indices_are_batch_indices():
    plan = jaxgd.BatchPlan(23, 5)
    orders = np.stack([RNG.permutation(23), RNG.permutation(23)]).astype(np.int32)
    indices, masks = jax.vmap(lambda o: jaxgd.data.batch_indices(plan, o))(orders)
    host_indices, host_masks = host_batch_indices(plan, orders, 1, 4)
    np.testing.assert_array_equal(host_indices, np.swapaxes(indices, 0, 1)[1:5])
    np.testing.assert_array_equal(host_masks, np.swapaxes(masks, 0, 1)[1:5])


def test_windows_fit_their_bytes_and_the_memory_plan_leaves_the_data_out():
    problem = jaxgd.problems.mlp((16, 8, 3))
    big = {"x": np.zeros((100_000, 16), np.float32), "y": np.zeros(100_000, np.int32)}
    data = HostData(big, window_bytes=2**16)
    plan = jaxgd.BatchPlan(100_000, 100)
    steps = data.steps_per_window(plan, seeds=3)
    assert steps == 2**16 // (3 * 100 * (68 + 4 + 1) + 4) == 2
    assert data.window_nbytes(plan, 3) <= 2**16
    # the budget holds the configs, two windows, two epochs' orders (400 kB each) and the
    # orders program's sort temporaries (XLA:CPU: four orders, which the compiled check
    # reads), 2.6 MB, not the 6.8 MB training set
    budget = config_bytes(problem, jaxgd.optimizer("sgd"), data.example, 100, 1024, 0)
    budget += 2 * data.window_nbytes(plan, 1) + (2 + 4) * 100_000 * 4 + 1000
    assert budget < sum(v.nbytes for v in big.values())
    kwargs = dict(space=[{"learning_rate": 0.1}], epochs=1, batch_size=100, validation=None)
    options = jaxgd.SweepOptions(max_memory=budget)
    result = jaxgd.sweep(problem, data, **kwargs, options=options)
    assert result.updates[0] == 1000
    with pytest.raises(jaxgd.InputError, match="max_memory"):
        jaxgd.sweep(problem, big, **kwargs, options=options)


def test_stream_bytes_count_each_programs_window_and_orders():
    # 1300 examples of 4 float32 and an int32 label (20 bytes), a position (int32) and a
    # mask each; two programs (batch 128 and 256: 11 and 6 steps) of two seeds. Windows of
    # one step widen to two noise groups (every 4th and every 2nd step measures): 8 steps
    # and a rest of 3; 4 steps, and the last window, one group, joins it: 6. Unmeasured,
    # to two steps: 2, 2, 2, 2 and 3 (a last of one step joins the one before); 2, 2, 2
    data = HostData(
        {"x": np.zeros((1300, 4), np.float32), "y": np.zeros(1300, np.int32)}, window_steps=1
    )
    space = jaxgd.grid(learning_rate=[0.1, 0.03], batch_size=[128, 256], seed=[0, 1])
    configs = resolve_configs(space, "sgd", None, 1300, False)
    step = {b: 2 * b * (20 + 4 + 1) + 4 for b in (128, 256)}  # examples, positions, masks
    orders = 2 * 2 * 1300 * 4  # two epochs' [U, N] int32
    noisy = {128: 8 * step[128], 256: 6 * step[256]}
    expected = noisy[128] + orders + noisy[256] + orders + max(noisy.values())
    assert stream_bytes(data, configs, epochs=2, noise_measured=True) == expected
    quiet = 3 * step[128] + orders + 2 * step[256] + orders + 2 * step[256]
    assert stream_bytes(data, configs, epochs=2, noise_measured=False) == quiet
    # a schedule (one seed) counts the wider of its epochs' windows: 8 steps of 128
    schedule = jaxgd.grid(learning_rate=[0.1], batch_size=[jaxgd.batch_schedule(128, {1: 256})])
    configs = resolve_configs(schedule, "sgd", None, 1300, False)
    widest = max(8 * (128 * 25 + 4), 6 * (256 * 25 + 4))
    assert stream_bytes(data, configs, epochs=2, noise_measured=True) == 2 * widest + 2 * 1300 * 4


def test_run_file_streams_with_stream_true(tmp_path, on_device):
    np.save(tmp_path / "x.npy", DATA["x"])
    np.save(tmp_path / "y.npy", DATA["y"])
    text = """\
        [problem]
        name = "mlp"
        options = {layer_sizes = [4, 8, 3]}

        [data]
        inputs = "x.npy"
        targets = "y.npy"
        num_classes = 3
        stream = true

        [sweep]
        epochs = 4
        batch_size = 10
        validation = 0.2

        [space.parameters]
        learning_rate = [0.1, 0.03]
        momentum = [0.0, 0.9]
        seed = [0, 1, 2]
        """
    (tmp_path / "sweep.toml").write_text(textwrap.dedent(text))
    plan = runfile.load(tmp_path / "sweep.toml")
    assert isinstance(plan.data, HostData) and isinstance(plan.data.arrays["x"], np.memmap)
    assert main(["run", str(tmp_path / "sweep.toml"), "--quiet", "--out", str(tmp_path / "o")]) == 0
    saved = jaxgd.SweepResult.load(tmp_path / "o" / "result")
    assert saved.strategy == "streamed"
    np.testing.assert_array_equal(saved.history["val_loss"], on_device.history["val_loss"])


def test_digest_reads_a_small_set_whole_and_a_large_one_in_sampled_runs():
    x = np.arange(64_000, dtype=np.float32).reshape(16_000, 4)  # 16-byte rows, 256 kB

    def digest(values, **kwargs):
        return HostData({"x": values}).digest(**kwargs)

    def changed(row):
        values = x.copy()
        values[row, 1] += 1
        return values

    whole = digest(x)
    assert digest(x.copy()) == whole and digest(changed(8000)) != whole
    assert digest(x.astype(np.float64)) != whole and digest(x[:-1]) != whole
    # over max_bytes (64 kB): 64 evenly spaced runs of 64 rows, the first and last among
    # them; row 8000 lies between two runs, so a change there goes unseen
    sampled = digest(x, max_bytes=2**16)
    assert sampled != whole
    assert digest(changed(8000), max_bytes=2**16) == sampled
    for row in (0, 63, 15_999):
        assert digest(changed(row), max_bytes=2**16) != sampled
    assert digest(x.astype(np.float64), max_bytes=2**16) != sampled
    # a subset digests its own rows
    assert HostData({"x": x}).subset(np.arange(100)).digest() == digest(x[:100])
