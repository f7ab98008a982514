"""jaxgd.science: the noise scale against closed forms and NumPy, the two-batch algebra,
the in-sweep measurement, steps-to-result, the critical-batch fit, time-to-target.

The closed form (McCandlish et al. 2018, arXiv:1812.06162): Gaussian linear regression,
x ~ N(0, H), y = w*·x + ε, Var ε = σ², loss ½(x·w − y)², δ = w − w*, has

    |G|² = ||Hδ||²,   tr Σ = ||Hδ||² + (δᵀHδ + σ²) tr H,
    B_simple = 1 + tr H (δᵀHδ + σ²) / ||Hδ||².
"""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxgd
from jaxgd import science
from jaxgd.core.state import init_train_state
from jaxgd.core.step import MEASUREMENTS, sample_noise, scan_steps, train_step

H = np.array([1.0, 2.0, 0.5, 3.0])  # diagonal of the covariance of x
W_TRUE = np.array([1.0, -2.0, 0.5, 1.5])
SIGMA = 0.5


def closed_form(w):
    delta = np.asarray(w) - W_TRUE
    h_delta = H * delta
    g2 = h_delta @ h_delta
    trace = g2 + (delta @ h_delta + SIGMA**2) * H.sum()
    return g2, trace, trace / g2


def regression_data(count, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(count, H.size)) * np.sqrt(H)
    y = x @ W_TRUE + SIGMA * rng.normal(size=count)
    return {"x": x.astype(dtype), "y": y.astype(dtype)}


def half_squared_error(w, example):
    return 0.5 * (example["x"] @ w - example["y"]) ** 2


PROBLEM = jaxgd.Problem(
    init=lambda key: jnp.zeros(H.size), loss=half_squared_error, name="gaussian_regression"
)


def per_example(w, data):
    """NumPy reference: g_i = x_i (x_i·w − y_i)."""
    return data["x"] * (data["x"] @ w - data["y"])[:, None]


def test_closed_form_formula_matches_a_monte_carlo_of_the_population():
    data = regression_data(400_000, seed=1)
    w = np.zeros(H.size)
    g = per_example(w, data)
    g2, trace, _ = closed_form(w)
    mean = g.mean(0)
    np.testing.assert_allclose(mean @ mean, g2, rtol=0.02)
    np.testing.assert_allclose(((g - mean) ** 2).sum(1).mean(), trace, rtol=0.02)


@pytest.mark.usefixtures("x64")
def test_gradient_noise_is_the_unbiased_sample_estimate_exactly():
    data = regression_data(1000, seed=2)
    w = np.array([0.3, -1.0, 0.2, 0.5])
    g = per_example(w, data)
    mean = g.mean(0)
    trace = ((g - mean) ** 2).sum() / (len(g) - 1)  # Bessel
    g2 = mean @ mean - trace / len(g)
    for batch_size in (None, 1000, 333, 7):  # one pass in batches, merged: the same numbers
        noise = science.gradient_noise(PROBLEM, jnp.asarray(w), data, batch_size=batch_size)
        np.testing.assert_allclose(noise.grad_trace, trace, rtol=1e-12)
        np.testing.assert_allclose(noise.grad_sq_norm, g2, rtol=1e-10)
        np.testing.assert_allclose(noise.b_simple, trace / g2, rtol=1e-10)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("w", [np.zeros(4), np.array([0.8, -1.5, 0.4, 1.0])])
def test_gradient_noise_recovers_the_closed_form(w):
    data = regression_data(200_000, seed=3)
    noise = science.gradient_noise(PROBLEM, jnp.asarray(w), data, batch_size=50_000)
    g2, trace, b_simple = closed_form(w)
    np.testing.assert_allclose(noise.grad_sq_norm, g2, rtol=0.03)
    np.testing.assert_allclose(noise.grad_trace, trace, rtol=0.03)
    np.testing.assert_allclose(noise.b_simple, b_simple, rtol=0.05)


@pytest.mark.usefixtures("x64")
def test_two_batch_estimate_reduces_to_bessel_at_one_and_n():
    rng = np.random.default_rng(4)
    g = rng.normal(size=(9, 5)) + 0.7
    n = len(g)
    mean = g.mean(0)
    small = (g**2).sum(1).mean()  # |G_small|² averaged over the n "batches" of one
    big = mean @ mean
    g2, trace = science.two_batch_estimate(small, big, 1, n)
    np.testing.assert_allclose(trace, ((g - mean) ** 2).sum() / (n - 1), rtol=1e-12)
    np.testing.assert_allclose(g2, big - trace / n, rtol=1e-12)
    # the form the norm test and the accumulate strategy use is the same estimate
    np.testing.assert_allclose(sample_noise(big, (g**2).sum(), float(n)), (g2, trace), rtol=1e-12)


def test_two_batch_estimate_is_unbiased_over_many_draws():
    """Over 4000 draws of batches of 8 and 64 from the Gaussian regression, the averages of
    |G_small|² and |G_big|² give B_simple within 5% (the ratio of the averages)."""
    rng = np.random.default_rng(5)
    w = np.zeros(H.size)
    draws, b_small, b_big = 4000, 8, 64
    x = rng.normal(size=(draws, b_big, H.size)) * np.sqrt(H)
    y = x @ W_TRUE + SIGMA * rng.normal(size=(draws, b_big))
    g = x * (x @ w - y)[..., None]
    small = (g[:, :b_small].mean(1) ** 2).sum(-1).mean()
    big = (g.mean(1) ** 2).sum(-1).mean()
    g2, trace = science.two_batch_estimate(small, big, b_small, b_big)
    want_g2, want_trace, want_b = closed_form(w)
    np.testing.assert_allclose(g2, want_g2, rtol=0.05)
    np.testing.assert_allclose(trace, want_trace, rtol=0.05)
    np.testing.assert_allclose(trace / g2, want_b, rtol=0.05)


def test_ema_is_bias_corrected_and_skips_nan():
    values = np.array([[3.0, 1.0, np.nan, 5.0], [np.nan, 2.0, 2.0, 2.0]])
    out = science.ema(values, decay=0.8)
    assert out[0, 0] == 3.0  # the first value is the first observation
    assert np.isnan(out[1, 0]) and out[1, 1] == 2.0
    # reference: the recursion over the finite observations, divided by 1 - β^t
    m, t, ref = 0.0, 0, []
    for x in (3.0, 1.0, 5.0):
        t += 1
        m = 0.8 * m + 0.2 * x
        ref.append(m / (1 - 0.8**t))
    np.testing.assert_allclose(out[0, [0, 1, 3]], ref)
    assert out[0, 2] == out[0, 1]  # a NaN epoch carries the average on
    np.testing.assert_allclose(out[1, 1:], 2.0)
    ratio = science.noise_scale_ema(np.array([1.0, 3.0]), np.array([10.0, 10.0]), decay=0.5)
    np.testing.assert_allclose(ratio, [10.0, 10.0 / ((0.25 + 1.5) / 0.75)])
    with pytest.raises(jaxgd.InputError, match="decay=1"):
        science.ema(values, decay=1)


def test_adascale_gain_limits_and_the_noise_scale():
    assert science.adascale_gain(2.0, 1.0, 1.0) == 1.0  # no scaling, no gain
    np.testing.assert_allclose(science.adascale_gain(2.0, 0.0, 8.0), 8.0)  # pure noise: S
    np.testing.assert_allclose(science.adascale_gain(0.0, 1.0, 8.0), 1.0)  # no noise: 1
    b_simple, b0, scale = 120.0, 16.0, 4.0  # σ² = tr Σ / B0 with |G|² = 1
    gain = science.adascale_gain(b_simple / b0, 1.0, scale)
    np.testing.assert_allclose(gain, (1 + b_simple / b0) / (1 + b_simple / (scale * b0)))


# --- measured during sweeps -------------------------------------------------------------

SWEEP_DATA = regression_data(4096, seed=6, dtype=np.float32)
# SGD that accepts learning rate 0: the parameters stay where they started
FROZEN_SGD = jaxgd.optimizer("sgd", ranges={"learning_rate": "[0, inf)"})


@functools.cache
def frozen_sweep(strategy, batch_sizes=(16, 64)):
    """Learning rate 0: the parameters stay at w = 0, so every measured step estimates the
    same |G|² and tr Σ, those of the training set at w = 0 (grouped and nested measure one
    step in 512 // B, accumulate one micro-step of 16 in 32: 8 per epoch here, 192 in
    all)."""
    space = jaxgd.grid(batch_size=list(batch_sizes), learning_rate=[0.0])
    return jaxgd.sweep(
        PROBLEM,
        SWEEP_DATA,
        space=space,
        optimizer=FROZEN_SGD,
        epochs=24,
        validation=None,
        measure=["noise_scale"],
        options=jaxgd.SweepOptions(strategy=strategy),
    )


@pytest.mark.parametrize("strategy", ["grouped", "accumulate"])
def test_sweep_measures_the_noise_scale_of_the_training_set(strategy):
    result = frozen_sweep(strategy)
    reference = science.gradient_noise(PROBLEM, jnp.zeros(H.size), SWEEP_DATA)
    history = result.history
    for name in ("b_simple", "grad_sq_norm", "grad_trace"):
        assert history[name].shape == (2, 24) and np.isfinite(history[name]).all()
    # b_simple per epoch is the ratio of the epoch's averages
    np.testing.assert_allclose(
        history["b_simple"], history["grad_trace"] / history["grad_sq_norm"], rtol=1e-5
    )
    # averaged over the epochs (the ratio of the averages of 192 two-half estimates):
    # within 10% of the training set's exact value, and of the population's closed form
    b_simple = history["grad_trace"].mean(1) / history["grad_sq_norm"].mean(1)
    np.testing.assert_allclose(b_simple, reference.b_simple, rtol=0.1)
    np.testing.assert_allclose(b_simple, closed_form(np.zeros(H.size))[2], rtol=0.1)
    np.testing.assert_allclose(history["grad_sq_norm"].mean(1), reference.grad_sq_norm, rtol=0.1)


def test_nested_measures_what_grouped_measures():
    """The same steps; only the epoch's sums are added in another order (outer steps,
    then the tail)."""
    grouped, nested = frozen_sweep("grouped"), frozen_sweep("nested")
    assert nested.strategy == "nested"
    for name in ("b_simple", "grad_sq_norm", "grad_trace", "train_loss"):
        np.testing.assert_allclose(nested.history[name], grouped.history[name], rtol=1e-5)


@pytest.mark.parametrize(
    ("length", "every", "first"),
    [(10, 1, 0), (10, 3, 0), (10, 3, 1), (2, 4, 1), (7, 4, 3), (8, 4, 0)],
)
def test_scan_steps_measures_the_steps_of_index_zero_mod_every(length, every, first):
    """In order, each step once, the measuring ones where (first + i) % every == 0."""
    xs = jnp.arange(1.0, length + 1)

    def step(carry, x, measure_now):
        assert isinstance(measure_now, bool)  # static: no branch in the program
        out = {"x": x, "measured": x if measure_now else jnp.zeros_like(x)}
        return 0.5 * carry + x, out  # order-sensitive

    carry, sums = scan_steps(step, jnp.float32(0), xs, noise_every=every, first=first)
    want, measured = 0.0, 0.0
    for i, x in enumerate(np.arange(1.0, length + 1)):
        want = 0.5 * want + x
        measured += x if (first + i) % every == 0 else 0.0
    np.testing.assert_allclose(carry, want, rtol=1e-6)
    np.testing.assert_allclose(sums["x"], xs.sum())
    np.testing.assert_allclose(sums["measured"], measured)


def test_a_step_that_knows_whether_it_measures_has_no_cond():
    """A ``lax.cond`` in every step copied the parameters into its operands on every step,
    measuring or not (1.3-1.4x the step at B = 64 to 128): a static ``measure_now`` avoids it."""
    state = init_train_state(jnp.zeros(H.size), optax.sgd(0.1))
    batch = {k: jnp.asarray(v[:8]) for k, v in SWEEP_DATA.items()}
    mask = jnp.ones(8, bool)

    def program(measure_now):
        return str(
            jax.make_jaxpr(
                lambda s: train_step(
                    s,
                    batch,
                    mask,
                    problem=PROBLEM,
                    tx=optax.sgd(0.1),
                    probes=MEASUREMENTS["noise_scale"],
                    noise_every=4,
                    measure_now=measure_now,
                )
            )(state)
        )

    assert "cond" not in program(True) and "cond" not in program(False)
    assert "cond" in program(jnp.bool_(True))


def test_measuring_leaves_training_unchanged_up_to_rounding():
    data = {k: v[:1000] for k, v in SWEEP_DATA.items()}
    space = jaxgd.grid(batch_size=[33], learning_rate=[0.01, 0.03])  # odd: a padded half
    kwargs = {"space": space, "epochs": 2, "validation": 0.2}
    plain = jaxgd.sweep(PROBLEM, data, **kwargs)
    measured = jaxgd.sweep(PROBLEM, data, measure=["noise_scale"], **kwargs)
    for name in ("train_loss", "val_loss"):
        np.testing.assert_allclose(measured.history[name], plain.history[name], rtol=1e-4)
    assert "b_simple" not in plain.history
    assert (measured.history["b_simple"] > 0).all()


def test_batch_size_one_has_no_noise_estimate():
    result = jaxgd.sweep(
        PROBLEM,
        {k: v[:32] for k, v in SWEEP_DATA.items()},
        space=jaxgd.grid(batch_size=[1, 2], learning_rate=[0.01]),
        epochs=1,
        validation=None,
        measure=["noise_scale"],
    )
    assert np.isnan(result.history["b_simple"][0]).all()
    assert np.isnan(result.history["grad_sq_norm"][0]).all()
    assert np.isfinite(result.history["b_simple"][1]).all()


@pytest.mark.parametrize("measure", ["noise_scale", ["noise"], [3]])
def test_unknown_measurements_are_refused_before_compiling(measure):
    before = jaxgd.compile_count()
    with pytest.raises(jaxgd.InputError, match="measure="):
        jaxgd.sweep(
            PROBLEM,
            SWEEP_DATA,
            space=[{"learning_rate": 0.1}],
            epochs=1,
            batch_size=64,
            measure=measure,
        )
    assert jaxgd.compile_count() == before


# --- steps to result, the fit, time to target -------------------------------------------


def hand_made(values, sizes, status=None, updates=None):
    values = np.asarray(values, float)
    count, epochs = values.shape
    if updates is None:
        updates = np.array([[1000 // b * (e + 1) for e in range(epochs)] for b in sizes])
    status = np.array(status or ["running"] * count)
    return jaxgd.SweepResult(
        configs=[{"batch_size": b} for b in sizes],
        history={"val_loss": values, "updates": np.asarray(updates)},
        updates=np.asarray(updates)[:, -1],
        examples_seen=np.zeros(count),
        diverged=status == "diverged",
        diverged_step=np.full(count, -1),
        seconds=np.zeros(count),
        compile_seconds=np.zeros(count),
        status=status,
    )


def test_steps_to_result_takes_the_best_config_per_batch_size():
    result = hand_made(
        [
            [0.9, 0.5, 0.3, 0.2],  # B=10: crosses 0.4 at epoch 3 -> 300 updates
            [0.8, 0.35, 0.2, 0.1],  # B=10: epoch 2 -> 200 (the best of B=10)
            [0.6, 0.3, 0.2, 0.1],  # B=100: epoch 2 -> 20
            [0.2, 0.1, 0.1, 0.1],  # B=100 but diverged: nothing
            [0.5, 0.4, 0.4, 0.45],  # B=250: touches 0.4, never strictly below: no entry
            [0.3, 0.2, 0.1, 0.1],  # B=500 stopped by a callback: nothing
        ],
        [10, 10, 100, 100, 250, 500],
        status=["running", "running", "running", "diverged", "running", "stopped"],
    )
    found = science.steps_to_result(result, "val_loss", 0.4)
    assert found.as_dict() == {10: 200, 100: 20}
    assert found.config.tolist() == [1, 2] and found.epochs.tolist() == [2, 2]
    assert found.missing == (250, 500)
    maximised = science.steps_to_result(result, "val_loss", 0.55, mode="max")
    assert maximised.as_dict() == {10: 100, 100: 10}
    assert science.steps_to_result(result, "val_loss", 0.01).as_dict() == {}


def test_steps_to_result_refuses_bad_input():
    result = hand_made([[0.5]], [10])
    with pytest.raises(jaxgd.InputError, match="metric='val_acc'"):
        science.steps_to_result(result, "val_acc", 0.4)
    with pytest.raises(jaxgd.InputError, match="mode='lower'"):
        science.steps_to_result(result, "val_loss", 0.4, mode="lower")
    with pytest.raises(jaxgd.InputError, match="target=nan"):
        science.steps_to_result(result, "val_loss", float("nan"))
    scheduled = hand_made([[0.5]], [10])
    scheduled.configs[0]["batch_size"] = jaxgd.increase_batch_size(10, factor=2, at=[1])
    with pytest.raises(jaxgd.InputError, match="fixed integer batch sizes"):
        science.steps_to_result(scheduled, "val_loss", 0.4)


def test_fit_recovers_the_critical_batch_size():
    sizes = np.array([8, 16, 32, 64, 128, 256, 512, 1024])
    exact = 40.0 * (1 + 150.0 / sizes)
    fit = science.fit_critical_batch(sizes, exact)
    np.testing.assert_allclose([fit.s_min, fit.b_crit, fit.e_min], [40, 150, 6000], rtol=1e-9)
    np.testing.assert_allclose(fit.residuals, 0, atol=1e-9)
    np.testing.assert_allclose(fit.predict([150.0]), [80.0])
    rng = np.random.default_rng(7)
    estimates = []
    for _ in range(20):  # 10% multiplicative noise on every point
        noisy = exact * np.exp(0.1 * rng.normal(size=sizes.size))
        estimates.append(science.fit_critical_batch(sizes, noisy).b_crit)
    assert 110 < np.median(estimates) < 200
    np.testing.assert_allclose(np.median(estimates), 150, rtol=0.15)


def test_fit_refuses_too_little_data():
    with pytest.raises(jaxgd.InputError, match="two distinct"):
        science.fit_critical_batch([64, 64], [10, 12])
    with pytest.raises(jaxgd.InputError, match="equal"):
        science.fit_critical_batch([8, 16, 32], [10, 12])


def test_time_to_target_recommends_the_fastest_and_the_most_frugal():
    result = hand_made([[0.3], [0.3], [0.3]], [10, 100, 1000], updates=[[500], [60], [40]])
    found = science.steps_to_result(result, "val_loss", 0.4)
    ttt = science.time_to_target(found, {10: 1.0, 100: 2.0, 1000: 10.0})
    np.testing.assert_allclose(ttt.seconds, [500, 120, 400])
    assert ttt.fastest == 100 and ttt.fewest_examples == 10
    with pytest.raises(jaxgd.InputError, match=r"batch sizes \[1000\]"):
        science.time_to_target(found, {10: 1.0, 100: 2.0})


@pytest.mark.slow
def test_science_command_quick_writes_its_report(tmp_path, capsys):
    from jaxgd.cli import main

    out = tmp_path / "science"
    assert main(["science", "--quick", "--out", str(out)]) == 0
    assert "B_crit" in capsys.readouterr().out
    names = {p.name for p in out.iterdir()}
    assert {"report.md", "summary.json", "b_simple.png", "steps_to_result.png"} <= names
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["steps_to_result"]
    assert len(rows) >= 2 and summary["fit"]["b_crit"] > 0
    assert summary["measured"]["reached_target"]
    assert summary["fastest"] in [row["batch_size"] for row in rows]
    assert "B_crit" in (out / "report.md").read_text()


@pytest.mark.usefixtures("x64")
def test_grouped_noise_generalises_both_estimators():
    from jaxgd.core.step import grouped_noise

    rng = np.random.default_rng(8)
    g = rng.normal(size=(10, 3)) + 0.5
    n = len(g)
    mean = g.mean(0)
    halves = [g[0::2].sum(0), g[1::2].sum(0)]  # two groups of 5
    group_sq = sum(s @ s / 5 for s in halves)
    small = np.mean([(s / 5) @ (s / 5) for s in halves])
    want = science.two_batch_estimate(small, mean @ mean, 5, 10)
    np.testing.assert_allclose(grouped_noise(group_sq, 2.0, mean @ mean, 10.0), want, rtol=1e-12)
    difference = halves[0] / 5 - halves[1] / 5
    np.testing.assert_allclose(want[1], difference @ difference / (1 / 5 + 1 / 5), rtol=1e-12)
    per_example = grouped_noise((g**2).sum(), float(n), mean @ mean, float(n))
    np.testing.assert_allclose(per_example, sample_noise(mean @ mean, (g**2).sum(), float(n)))


def test_accumulate_with_the_norm_test_shares_its_per_example_norms():
    """With the norm test on, the noise scale comes from the per-example norms the test
    computes (B_small = 1); without it, from two halves per micro-batch: both estimate
    the same B_simple at fixed parameters."""
    space = [
        {"batch_size": 64, "learning_rate": 0.0, "norm_test": 1e6},  # always passes: never grows
        {"batch_size": 64, "learning_rate": 0.0},
    ]
    result = jaxgd.sweep(
        PROBLEM,
        SWEEP_DATA,
        space=space,
        optimizer=FROZEN_SGD,
        epochs=2,
        validation=None,
        measure=["noise_scale"],
    )
    assert result.strategy == "accumulate"
    b_simple = result.history["grad_trace"].mean(1) / result.history["grad_sq_norm"].mean(1)
    reference = science.gradient_noise(PROBLEM, jnp.zeros(H.size), SWEEP_DATA).b_simple
    np.testing.assert_allclose(b_simple, reference, rtol=0.1)
    assert result.history["batch_size"][0, -1] == 64


@pytest.mark.slow
def test_readme_example_runs_as_is(tmp_path):
    from test_readme import python_block, run

    completed = run(python_block("Which batch size?"), tmp_path)
    assert completed.returncode == 0, completed.stderr[-4000:]
    lines = completed.stdout.splitlines()
    assert lines[-2].startswith("{32: ") and ", 128: " in lines[-2]


def test_science_command_is_registered(capsys):
    from jaxgd.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["science", "--help"])
    assert exit_info.value.code == 0
    assert "--quick" in capsys.readouterr().out
