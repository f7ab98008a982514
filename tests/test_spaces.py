"""Spaces beyond grids: scipy.stats distributions in sample(), quasi-random spaces."""

import numpy as np
import pytest

import jaxgd

stats = pytest.importorskip("scipy.stats")


def test_sample_draws_scipy_distributions_from_the_seeded_generator():
    space = jaxgd.sample(
        6,
        sample_seed=3,
        learning_rate=stats.loguniform(1e-4, 1e-1),
        batch_size=stats.randint(16, 65),
        momentum=[0.0, 0.9],
        optimizer="sgd",
    )
    rng = np.random.default_rng(3)  # dimensions are drawn in the order given
    expected_lr = stats.loguniform(1e-4, 1e-1).rvs(size=6, random_state=rng)
    expected_batch = stats.randint(16, 65).rvs(size=6, random_state=rng)
    assert [c["learning_rate"] for c in space] == expected_lr.tolist()
    assert [c["batch_size"] for c in space] == expected_batch.tolist()
    assert all(type(c["batch_size"]) is int and type(c["learning_rate"]) is float for c in space)
    assert {c["optimizer"] for c in space} == {"sgd"}
    assert (
        space.configs
        == jaxgd.sample(
            6,
            sample_seed=3,
            learning_rate=stats.loguniform(1e-4, 1e-1),
            batch_size=stats.randint(16, 65),
            momentum=[0.0, 0.9],
            optimizer="sgd",
        ).configs
    )


@pytest.mark.parametrize("method", ["halton", "sobol"])
def test_quasi_random_maps_scrambled_sequences_through_each_inverse_cdf(method):
    space = jaxgd.quasi_random(
        8,
        1,
        method=method,
        learning_rate=jaxgd.loguniform(1e-3, 1.0),
        momentum=(0.0, 0.99),
        batch_size=[32, 128],
        weight_decay=stats.norm(0.0, 1.0),
        optimizer="adamw",
    )
    engine = {"halton": stats.qmc.Halton, "sobol": stats.qmc.Sobol}[method]
    u = engine(d=4, scramble=True, seed=1).random(8)
    np.testing.assert_allclose(
        [c["learning_rate"] for c in space], np.exp(np.log(1e-3) + u[:, 0] * np.log(1e3))
    )
    np.testing.assert_allclose([c["momentum"] for c in space], 0.99 * u[:, 1])
    assert [c["batch_size"] for c in space] == [[32, 128][int(v * 2)] for v in u[:, 2]]
    np.testing.assert_allclose([c["weight_decay"] for c in space], stats.norm.ppf(u[:, 3]))
    assert {c["optimizer"] for c in space} == {"adamw"}
    # Low discrepancy: 8 points put exactly one in each eighth of the first axis, and
    # split a two-value choice evenly; 8 random draws rarely do either.
    log_lr = np.log([c["learning_rate"] for c in space])
    eighths = np.floor((log_lr - np.log(1e-3)) / np.log(1e3) * 8).astype(int)
    assert sorted(eighths) == list(range(8))
    assert sorted(c["batch_size"] for c in space).count(32) == 4


def test_quasi_random_refuses_bad_input():
    with pytest.raises(jaxgd.InputError, match="method='grid'"):
        jaxgd.quasi_random(4, 0, method="grid", learning_rate=(0.1, 1.0))
    with pytest.raises(jaxgd.InputError, match="sample_seed=None"):
        jaxgd.quasi_random(4, None, learning_rate=(0.1, 1.0))
    with pytest.raises(jaxgd.InputError, match="num=0"):
        jaxgd.quasi_random(0, 0, learning_rate=(0.1, 1.0))
