"""Problem contract (masked means, per-example gradients) and batch plans."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgd
from jaxgd.data import batch_indices, epoch_order, split
from jaxgd.problem import masked_mean


def squared_error(params, example):
    return (example["x"] @ params["w"] + params["b"] - example["y"]) ** 2


def regression_batch(n=16, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "x": jnp.asarray(rng.normal(size=(n, d)), jnp.float32),
        "y": jnp.asarray(rng.normal(size=n), jnp.float32),
    }


PARAMS = {"w": jnp.array([0.5, -1.0, 2.0]), "b": jnp.array(0.3)}


def test_per_example_gradients_mean_is_the_batch_gradient():
    batch = regression_batch()
    per_example = jaxgd.per_example_gradients(squared_error, PARAMS, batch)
    assert per_example["w"].shape == (16, 3) and per_example["b"].shape == (16,)
    full = jaxgd.batch_gradient(squared_error, PARAMS, batch)
    for name in PARAMS:
        np.testing.assert_allclose(per_example[name].mean(0), full[name], rtol=1e-5, atol=1e-6)


def test_batch_gradient_matches_numpy_closed_form():
    """∇_w mean (x·w + b − y)² = 2 Xᵀ r / n, ∇_b = 2 mean r."""
    batch = regression_batch()
    x, y = np.asarray(batch["x"], np.float64), np.asarray(batch["y"], np.float64)
    residual = x @ np.asarray(PARAMS["w"], np.float64) + 0.3 - y
    grads = jaxgd.batch_gradient(squared_error, PARAMS, batch)
    np.testing.assert_allclose(grads["w"], 2 * x.T @ residual / len(y), rtol=1e-5)
    np.testing.assert_allclose(grads["b"], 2 * residual.mean(), rtol=1e-5)


def test_masked_batch_equals_the_real_examples_alone():
    batch = regression_batch(n=10)
    mask = jnp.arange(10) < 6
    real = jax.tree.map(lambda a: a[:6], batch)
    np.testing.assert_allclose(
        jaxgd.batch_loss(squared_error, PARAMS, batch, mask),
        jaxgd.batch_loss(squared_error, PARAMS, real),
        rtol=1e-6,
    )
    masked = jaxgd.batch_gradient(squared_error, PARAMS, batch, mask)
    alone = jaxgd.batch_gradient(squared_error, PARAMS, real)
    for name in PARAMS:
        np.testing.assert_allclose(masked[name], alone[name], rtol=1e-5, atol=1e-7)


def test_masked_mean_of_an_empty_mask_is_zero():
    assert float(masked_mean(jnp.ones(4), jnp.zeros(4, bool))) == 0.0


def test_partial_last_batch_plan():
    plan = jaxgd.BatchPlan(num_examples=1050, batch_size=100)
    assert (plan.steps_per_epoch, plan.last_batch_size, plan.examples_per_epoch) == (11, 50, 1050)
    dropped = jaxgd.BatchPlan(1050, 100, drop_last=True)
    assert (dropped.steps_per_epoch, dropped.examples_per_epoch) == (10, 1000)
    assert jaxgd.BatchPlan(1050, 1).steps_per_epoch == 1050
    assert jaxgd.BatchPlan(1050, 1050).steps_per_epoch == 1


def test_batch_indices_cover_the_epoch_once_and_mask_the_padding():
    plan = jaxgd.BatchPlan(1050, 100)
    order = epoch_order(jax.random.key(3), 1050)
    indices, mask = batch_indices(plan, order)
    assert indices.shape == mask.shape == (11, 100)
    assert mask[:10].all() and int(mask[10].sum()) == 50
    assert sorted(np.asarray(indices)[np.asarray(mask)].tolist()) == list(range(1050))


def test_epoch_order_without_shuffle_is_the_identity():
    np.testing.assert_array_equal(epoch_order(jax.random.key(0), 7, shuffle=False), np.arange(7))


@pytest.mark.parametrize("size", [0, -3, 1051, 2.5, True])
def test_bad_batch_size_is_refused(size):
    with pytest.raises(ValueError, match="batch_size"):
        jaxgd.BatchPlan(1050, size)


def test_validation_split_is_seeded_and_disjoint():
    data = {"x": np.arange(100.0)[:, None], "y": np.arange(100)}
    train, val = split(data, 0.2, seed=7)
    again, _ = split(data, 0.2, seed=7)
    assert len(val["y"]) == 20 and len(train["y"]) == 80
    assert not set(train["y"]) & set(val["y"])
    np.testing.assert_array_equal(train["y"], again["y"])
    with pytest.raises(ValueError, match="fraction"):
        split(data, 1.5)


def test_leaves_must_share_the_example_axis():
    with pytest.raises(ValueError, match="leading example axis"):
        jaxgd.data.num_examples({"x": np.zeros((5, 2)), "y": np.zeros(4)})
