"""Different batch sizes in one sweep: both strategies equal standalone runs; schedules;
the adaptive norm test against a NumPy reference; compile counts."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import DATA, PROBLEM, assert_params_close, config_params, reference_run, sweep

import jaxgd
from jaxgd.strategies.accumulate import norm_test_multiple

# Step sizes small enough that the trajectories are not chaotic: float32 summation order
# then moves results by ~1e-7, inside the 1e-5 the issue asks for. (Batch size 1 with
# momentum 0.9 amplifies rounding to ~1e-4 over 420 steps in float32, in both strategies
# alike; it is covered in float64 below.)
MIXED = jaxgd.grid(
    batch_size=[8, 24, 48, 210], learning_rate=[0.02, 0.05], momentum=[0.0, 0.9], seed=[0, 1]
)


def mixed_run(strategy, space=MIXED, epochs=2, **kwargs):
    return sweep(
        PROBLEM,
        DATA,
        space=space,
        epochs=epochs,
        validation=None,
        return_params=True,
        strategy=strategy,
        **kwargs,
    )


@pytest.mark.parametrize("strategy", ["grouped", "nested", "accumulate"])
def test_mixed_batch_sizes_equal_standalone_runs(strategy):
    result = mixed_run(strategy)
    assert result.strategy == strategy
    for i, config in enumerate(result.configs):
        params, losses, updates = reference_run(
            PROBLEM,
            DATA,
            learning_rate=config["learning_rate"],
            momentum=config["momentum"],
            seed=config["seed"],
            batch_size=config["batch_size"],
            epochs=2,
        )
        assert result.updates[i] == updates == 2 * math.ceil(210 / config["batch_size"])
        np.testing.assert_allclose(result.history["train_loss"][i], losses, rtol=1e-5)
        assert_params_close(config_params(result, i), params, rtol=1e-5, atol=1e-6)
    # Progress is aligned by examples: every config has seen the same data after each epoch.
    assert (result.history["examples_seen"] == [[210, 420]]).all()


def test_strategies_agree_in_float64(x64):
    space = jaxgd.grid(batch_size=[1, 4, 12, 20], learning_rate=[0.05], momentum=[0.0, 0.9])
    problem, data = jaxgd.problems.multiple_regression(num_examples=100)
    grouped, accumulated = (
        sweep(problem, data, space=space, epochs=3, validation=None, return_params=True, strategy=s)
        for s in ("grouped", "accumulate")
    )
    assert grouped.params["w"].dtype == np.float64
    np.testing.assert_allclose(grouped.params["w"], accumulated.params["w"], rtol=1e-12)
    np.testing.assert_allclose(
        grouped.history["train_loss"], accumulated.history["train_loss"], rtol=1e-12
    )


# nested: lcm(16, 48) = 48 < 210, so the epoch has several outer steps, the last partial;
# accumulate: a micro-batch chosen smaller than the gcd.
@pytest.mark.parametrize(
    "strategy,options", [("nested", {}), ("accumulate", {"micro_batch_size": 8})]
)
def test_drop_last_in_one_program(strategy, options):
    space = jaxgd.grid(batch_size=[16, 48], learning_rate=0.05, momentum=0.9)
    result = mixed_run(strategy, space, drop_last=True, **options)
    for i, size in enumerate([16, 48]):
        params, losses, updates = reference_run(
            PROBLEM,
            DATA,
            learning_rate=0.05,
            momentum=0.9,
            seed=0,
            batch_size=size,
            epochs=2,
            drop_last=True,
        )
        assert result.updates[i] == updates
        np.testing.assert_allclose(result.history["train_loss"][i], losses, rtol=1e-5)
        assert_params_close(config_params(result, i), params)
    assert result.examples_seen.tolist() == [2 * 208, 2 * 192]


def test_one_program_per_strategy_choice():
    space = jaxgd.grid(batch_size=[6, 12, 30], learning_rate=[0.01, 0.03])
    before = jaxgd.compile_count("accumulate_chunk")
    mixed_run("accumulate", space)
    mixed_run("accumulate", jaxgd.grid(batch_size=[6, 12, 30], learning_rate=[0.2, 0.3]))
    assert jaxgd.compile_count("accumulate_chunk") == before + 1
    before = jaxgd.compile_count("grouped_chunk")
    mixed_run("grouped", space)
    assert jaxgd.compile_count("grouped_chunk") == before + 3
    before = jaxgd.compile_count("nested_chunk")
    mixed_run("nested", space)
    mixed_run("nested", jaxgd.grid(batch_size=[6, 12, 30], learning_rate=[0.2, 0.3]))
    assert jaxgd.compile_count("nested_chunk") == before + 1


def test_batch_size_schedule_equals_standalone_segments():
    """Epochs 0-1 at batch 8, then 32: the same as switching by hand between epochs."""
    schedule = jaxgd.increase_batch_size(8, factor=4, at=[2])
    space = jaxgd.grid(batch_size=[schedule, 16], learning_rate=0.05, momentum=0.9)
    results = {s: mixed_run(s, space, epochs=4) for s in ("grouped", "accumulate")}
    for result in results.values():
        assert result.history["batch_size"][0].tolist() == [8, 8, 32, 32]
        assert result.history["batch_size"][1].tolist() == [16, 16, 16, 16]
        assert result.updates[0] == 2 * 27 + 2 * 7
    assert_params_close(results["grouped"].params, results["accumulate"].params)


def test_norm_test_formula_against_numpy():
    rng = np.random.default_rng(0)
    per_example = rng.normal(size=(12, 5)) + 0.3
    mean = per_example.mean(0)
    variance = ((per_example - mean) ** 2).sum() / 11
    theta, micro, cap = 0.5, 4, 64
    passes, multiple = norm_test_multiple(
        {"g": jnp.asarray(per_example.sum(0))},
        jnp.asarray((per_example**2).sum()),
        jnp.asarray(12.0),
        jnp.asarray(theta),
        micro,
        cap // micro,
    )
    assert bool(passes) == (variance / 12 <= theta**2 * mean @ mean)
    wanted = math.ceil(variance / (theta**2 * mean @ mean))
    assert int(multiple) == min(math.ceil(wanted / micro), cap // micro)


def numpy_norm_test_run(data, params, *, lr, theta, batch, cap, epochs):
    """Linear regression with the norm test in float64, no shuffling: each batch's
    per-example gradients g_i = 2 r_i (1, x_i) are known in closed form."""
    x = np.concatenate([np.ones((len(data["y"]), 1)), data["x"]], axis=1).astype(np.float64)
    y = np.asarray(data["y"], np.float64)
    theta_vec = np.array([params["b"], params["w"][0]], np.float64)
    sizes = []
    for _ in range(epochs):
        start = 0
        while start < len(y):
            xs, ys = x[start : start + batch], y[start : start + batch]
            start += len(ys)
            grads = 2 * (xs @ theta_vec - ys)[:, None] * xs
            mean = grads.mean(0)
            theta_vec = theta_vec - lr * mean
            if len(ys) > 1:
                variance = ((grads - mean) ** 2).sum() / (len(ys) - 1)
                if variance / len(ys) > theta**2 * mean @ mean:
                    wanted = math.ceil(variance / (theta**2 * mean @ mean))
                    batch = max(batch, min(math.ceil(wanted / 2) * 2, cap))
        sizes.append(batch)
    return theta_vec, sizes


def test_norm_test_grows_the_batch_like_the_numpy_reference(x64):
    problem, data = jaxgd.problems.linear_regression(num_examples=200)
    space = jaxgd.grid(batch_size=2, norm_test=[0.3, 1.0, math.inf], learning_rate=0.02)
    result = sweep(
        problem,
        data,
        space=space,
        epochs=3,
        validation=None,
        shuffle=False,
        return_params=True,
        max_batch_size=64,
    )
    assert result.strategy == "accumulate"
    init = problem.init(jax.random.split(jax.random.key(0))[0])
    init = jax.tree.map(np.asarray, init)
    for i, theta in enumerate([0.3, 1.0, math.inf]):
        expected, sizes = numpy_norm_test_run(
            data, init, lr=0.02, theta=theta, batch=2, cap=64, epochs=3
        )
        np.testing.assert_allclose(result.params["b"][i], expected[0], rtol=1e-9)
        np.testing.assert_allclose(result.params["w"][i, 0], expected[1], rtol=1e-9)
        assert result.history["batch_size"][i].tolist() == sizes
    grown = result.history["batch_size"][:, -1]
    assert grown[0] >= grown[1] >= grown[2] == 2  # smaller θ asks for larger batches


def test_auto_strategy_and_refusals():
    fine_grid = jaxgd.grid(batch_size=[16, 32, 64], learning_rate=0.1)
    assert mixed_run("auto", fine_grid, epochs=1).strategy == "nested"
    assert mixed_run("auto", jaxgd.grid(batch_size=16, learning_rate=0.1)).strategy == "grouped"
    doubling = jaxgd.grid(batch_size=jaxgd.increase_batch_size(16, 2, at=[1]), learning_rate=0.1)
    assert mixed_run("auto", doubling, epochs=2).strategy == "accumulate"
    coprime = jaxgd.grid(batch_size=[jaxgd.batch_schedule(7, {1: 64})], learning_rate=0.1)
    assert mixed_run("auto", coprime, epochs=2).strategy == "grouped"
    with pytest.raises(ValueError, match="strategy"):
        mixed_run("fastest", fine_grid)
    with pytest.raises(ValueError, match="norm_test"):
        mixed_run("grouped", jaxgd.grid(batch_size=8, norm_test=0.5, learning_rate=0.1))
    with pytest.raises(ValueError, match="schedules"):
        mixed_run(
            "nested", jaxgd.grid(batch_size=jaxgd.batch_schedule(8, {1: 16}), learning_rate=0.1)
        )
    with pytest.raises(ValueError, match="micro_batch_size"):
        mixed_run("accumulate", fine_grid, micro_batch_size=5)
