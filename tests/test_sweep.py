"""The sweep: exact per-config semantics, independence, bitwise repeatability, compile
counts, input refused before compiling, result writers."""

import json

import jax
import numpy as np
import pytest
from reference import DATA, PROBLEM, assert_params_close, config_params, reference_run, sweep

import jaxgd

SPACE = jaxgd.grid(learning_rate=[0.05, 0.2], momentum=[0.0, 0.9], seed=[0, 1])


def run(space=SPACE, **kwargs):
    options = dict(batch_size=32, epochs=3, validation=None, return_params=True)
    options.update(kwargs)
    return sweep(PROBLEM, DATA, space=space, **options)


def test_sweep_equals_independent_runs_with_partial_last_batch():
    result = run()
    for i, config in enumerate(result.configs):
        params, losses, updates = reference_run(
            PROBLEM,
            DATA,
            learning_rate=config["learning_rate"],
            momentum=config["momentum"],
            seed=config["seed"],
            batch_size=32,
            epochs=3,
        )
        assert_params_close(config_params(result, i), params)
        np.testing.assert_allclose(result.history["train_loss"][i], losses, rtol=1e-5)
        assert result.updates[i] == updates == 3 * 7  # 210 = 6 x 32 + 18


def test_drop_last_and_no_shuffle_follow_the_reference():
    result = run(jaxgd.grid(learning_rate=0.1, momentum=0.5), drop_last=True, shuffle=False)
    params, losses, updates = reference_run(
        PROBLEM,
        DATA,
        learning_rate=0.1,
        momentum=0.5,
        seed=0,
        batch_size=32,
        epochs=3,
        shuffle=False,
        drop_last=True,
    )
    assert result.updates[0] == updates == 3 * 6
    assert result.examples_seen[0] == 3 * 192
    assert_params_close(config_params(result, 0), params)
    np.testing.assert_allclose(result.history["train_loss"][0], losses, rtol=1e-5)


def test_1050_examples_batch_100_is_11_updates_per_epoch_and_10_with_drop_last():
    problem, data = jaxgd.problems.multiple_regression(num_examples=1050)
    space = jaxgd.grid(learning_rate=0.01)
    kept = jaxgd.sweep(problem, data, space=space, batch_size=100, epochs=2, validation=None)
    dropped = jaxgd.sweep(
        problem, data, space=space, batch_size=100, epochs=2, validation=None, drop_last=True
    )
    assert kept.history["updates"][0].tolist() == [11, 22]
    assert dropped.history["updates"][0].tolist() == [10, 20]
    assert kept.examples_seen[0] == 2100 and dropped.examples_seen[0] == 2000


def test_batch_size_one_is_sgd_with_one_update_per_example():
    problem, data = jaxgd.problems.linear_regression()
    result = jaxgd.sweep(
        problem,
        data,
        space=jaxgd.grid(learning_rate=0.05),
        batch_size=1,
        epochs=2,
        validation=None,
        return_params=True,
    )
    params, losses, updates = reference_run(
        problem, data, learning_rate=0.05, momentum=0.0, seed=0, batch_size=1, epochs=2
    )
    assert result.updates[0] == updates == 40
    assert_params_close(config_params(result, 0), params)


def test_full_batch_equals_hand_written_gradient_descent():
    """Batch size N: θ ← θ − η · 2/N Xᵀ(Xθ − y) on linear regression, in NumPy."""
    problem, data = jaxgd.problems.linear_regression()
    result = jaxgd.sweep(
        problem,
        data,
        space=jaxgd.grid(learning_rate=0.1),
        batch_size=20,
        epochs=50,
        validation=None,
        return_params=True,
    )
    init = problem.init(jax.random.split(jax.random.key(0))[0])
    x = np.concatenate([np.ones((20, 1)), np.asarray(data["x"], np.float64)], axis=1)
    y = np.asarray(data["y"], np.float64)
    theta = np.array([float(init["b"]), float(init["w"][0])])
    for _ in range(50):
        theta = theta - 0.1 * 2 / 20 * x.T @ (x @ theta - y)
    np.testing.assert_allclose(result.params["b"][0], theta[0], rtol=1e-5)
    np.testing.assert_allclose(result.params["w"][0, 0], theta[1], rtol=1e-5)


def test_linear_regression_approaches_least_squares():
    problem, data = jaxgd.problems.linear_regression()
    exact = jaxgd.problems.least_squares(data)
    result = jaxgd.sweep(
        problem,
        data,
        space=jaxgd.grid(learning_rate=0.1),
        batch_size=20,
        epochs=500,
        validation=None,
        return_params=True,
    )
    np.testing.assert_allclose(result.params["w"][0, 0], exact["w"][0], rtol=1e-3)
    np.testing.assert_allclose(result.params["b"][0], exact["b"], rtol=1e-3)
    # The classic exercise (lr 0.1, batch 10, 10 epochs) gets most of the way there.
    classic = jaxgd.sweep(
        problem,
        data,
        space=jaxgd.grid(learning_rate=0.1),
        batch_size=10,
        epochs=10,
        validation=None,
    )
    initial_loss = classic.history["train_loss"][0, 0]
    final = classic.history["train_loss"][0, -1]
    x = np.concatenate([np.ones((20, 1)), data["x"]], axis=1)
    optimum = np.mean((x @ np.array([exact["b"], exact["w"][0]]) - data["y"]) ** 2)
    assert final - optimum < 0.2 * (initial_loss - optimum)


def test_a_config_does_not_depend_on_the_others_in_the_sweep():
    alone = run(jaxgd.grid(learning_rate=0.2, momentum=0.9, seed=1))
    crowd = run(SPACE)
    index = next(
        i
        for i, c in enumerate(crowd.configs)
        if (c["learning_rate"], c["momentum"], c["seed"]) == (0.2, 0.9, 1)
    )
    assert_params_close(config_params(alone, 0), config_params(crowd, index))
    np.testing.assert_allclose(
        alone.history["train_loss"][0], crowd.history["train_loss"][index], rtol=1e-5
    )


def test_uneven_seed_counts_are_padded_and_dropped():
    space = jaxgd.grid(learning_rate=[0.05, 0.2], seed=0) + jaxgd.grid(learning_rate=0.1, seed=5)
    result = run(space)
    assert result.history["train_loss"].shape == (3, 3)
    alone = run(jaxgd.grid(learning_rate=0.1, seed=5))
    assert_params_close(config_params(result, 2), config_params(alone, 0))


def test_chunk_size_does_not_change_results():
    one = run(epochs=4, epochs_per_chunk=1)
    two = run(epochs=4, epochs_per_chunk=2)
    assert_params_close(one.params, two.params, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(one.history["train_loss"], two.history["train_loss"], rtol=1e-6)


def test_same_seed_same_result_bitwise():
    first, second = run(), run()
    for a, b in zip(jax.tree.leaves(first.params), jax.tree.leaves(second.params)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first.history["train_loss"], second.history["train_loss"])


def test_compiles_once_per_group_and_never_for_new_values_or_more_chunks():
    space = jaxgd.grid(learning_rate=[0.011, 0.022], momentum=[0.0, 0.5])
    before = jaxgd.compile_count("grouped_chunk")
    run(space, batch_size=24, epochs=2)
    assert jaxgd.compile_count("grouped_chunk") == before + 1
    other_values = jaxgd.grid(learning_rate=[0.3, 0.001], momentum=[0.99, 0.1])
    run(other_values, batch_size=24, epochs=5)
    assert jaxgd.compile_count("grouped_chunk") == before + 1
    run(other_values, batch_size=25, epochs=1)  # a new batch size is a new group
    assert jaxgd.compile_count("grouped_chunk") == before + 2


def test_divergent_config_is_frozen_and_flagged_and_others_untouched():
    space = jaxgd.grid(learning_rate=[0.05, 1e6], momentum=0.9)
    result = run(space, epochs=3)
    alone = run(jaxgd.grid(learning_rate=0.05, momentum=0.9), epochs=3)
    assert result.diverged.tolist() == [False, True]
    assert result.diverged_step[0] == -1 and 0 <= result.diverged_step[1] < result.updates.max()
    assert result.updates[1] == result.diverged_step[1]
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(config_params(result, 1)))
    assert_params_close(config_params(result, 0), config_params(alone, 0))
    assert result.best("train_loss")["learning_rate"] == 0.05


def test_validation_metrics_and_result_writers(tmp_path):
    problem, data = jaxgd.problems.digits_mlp(hidden=(16,))
    result = jaxgd.sweep(
        problem,
        data,
        optimizer="adam",
        batch_size=128,
        epochs=3,
        space=jaxgd.grid(learning_rate=[1e-3, 1e-2]),
        validation=0.2,
        eval_data=jax.tree.map(lambda a: a[:100], data),
    )
    assert {"train_loss", "val_loss", "val_accuracy", "eval_loss", "eval_accuracy"} <= set(
        result.history
    )
    assert result.history["val_loss"].shape == (2, 3)
    assert 0.0 <= result.history["val_accuracy"].min() <= result.history["val_accuracy"].max() <= 1
    assert result.updates.tolist() == [3 * 12, 3 * 12]  # 1438 training examples / 128
    best = result.best("val_accuracy")
    assert best["final_val_accuracy"] == result.history["val_accuracy"][:, -1].max()
    result.to_csv(tmp_path / "results.csv")
    result.to_json(tmp_path / "results.json")
    assert (tmp_path / "results.csv").read_text().count("\n") == 3
    document = json.loads((tmp_path / "results.json").read_text())
    assert len(document["rows"]) == 2 and len(document["history"]["val_loss"][0]) == 3
    frame = result.to_pandas()
    assert list(frame["learning_rate"]) == [1e-3, 1e-2]


def test_bad_input_is_refused_before_anything_compiles():
    before = jaxgd.compile_count()
    with pytest.raises(ValueError, match="batch_size=0"):
        run(batch_size=0)
    with pytest.raises(ValueError, match="learning_rate"):
        run(jaxgd.grid(momentum=[0.9]))
    with pytest.raises(ValueError, match="epochs"):
        run(epochs=0)
    with pytest.raises(ValueError, match="not a number"):
        run(jaxgd.grid(learning_rate=["fast"]))
    with pytest.raises(ValueError, match="no batch_size"):
        run(batch_size=None)
    with pytest.raises(TypeError, match=r"jaxgd.grid\(\*\*space\)"):
        run({"learning_rate": [0.1, 0.01]})
    assert jaxgd.compile_count() == before


def test_sample_space_is_seeded():
    a = jaxgd.sample(
        6, sample_seed=3, learning_rate=jaxgd.loguniform(1e-4, 1e-1), momentum=[0.0, 0.9]
    )
    b = jaxgd.sample(
        6, sample_seed=3, learning_rate=jaxgd.loguniform(1e-4, 1e-1), momentum=[0.0, 0.9]
    )
    assert list(a) == list(b)
    assert all(1e-4 <= c["learning_rate"] <= 1e-1 for c in a)


@pytest.mark.parametrize("config_block", [1, 3, "auto"])
def test_configs_in_blocks_give_the_same_results(config_block):
    space = jaxgd.grid(learning_rate=[0.05, 0.2], momentum=[0.0, 0.9], seed=[0, 1])
    whole = run(space, config_block=None)
    blocked = run(space, config_block=config_block)
    assert_params_close(whole.params, blocked.params, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        whole.history["train_loss"], blocked.history["train_loss"], rtol=1e-5
    )
