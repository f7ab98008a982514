"""Optimizers: injected hyperparameters agree with plain optax and the textbook forms."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxgd

# One shared table drives the contract tests: (name, hyperparameters, plain optax twin).
OPTIMIZER_TABLE = [
    ("sgd", {"learning_rate": 0.05, "momentum": 0.0}, lambda: optax.sgd(0.05, momentum=0.0)),
    ("sgd", {"learning_rate": 0.05, "momentum": 0.9}, lambda: optax.sgd(0.05, momentum=0.9)),
    ("adam", {"learning_rate": 0.05}, lambda: optax.adam(0.05)),
    (
        "adamw",
        {"learning_rate": 0.05, "weight_decay": 0.01},
        lambda: optax.adamw(0.05, weight_decay=0.01),
    ),
    (
        "rmsprop",
        {"learning_rate": 0.01, "momentum": 0.5},
        lambda: optax.rmsprop(0.01, momentum=0.5),
    ),
    ("adagrad", {"learning_rate": 0.3}, lambda: optax.adagrad(0.3)),
]
IDS = [f"{name}-{i}" for i, (name, _, _) in enumerate(OPTIMIZER_TABLE)]

# A well-conditioned quadratic f(x) = ½ (x - c)ᵀ A (x - c).
A = jnp.diag(jnp.array([1.0, 2.0, 4.0]))
CENTER = jnp.array([1.0, -2.0, 0.5])


def quadratic(params):
    d = params["x"] - CENTER
    return 0.5 * d @ A @ d


def trajectory(tx, steps=100, jit=True):
    params = {"x": jnp.zeros(3)}
    state = tx.init(params)

    def step(params, state):
        grads = jax.grad(quadratic)(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    step = jax.jit(step) if jit else step
    path = []
    for _ in range(steps):
        params, state = step(params, state)
        path.append(np.asarray(params["x"]))
    return np.stack(path), state


@pytest.mark.parametrize("name,hyperparams,plain", OPTIMIZER_TABLE, ids=IDS)
def test_injected_equals_plain_optax(name, hyperparams, plain):
    # Injected hyperparameters are float32 arrays rather than Python floats folded in as
    # constants, so results may differ by float32 rounding: 1e-6 relative over 100 steps.
    # Tolerance: 1e-6 relative over 100 steps. Adam-family gets 2e-5: its injected b2 is
    # stored as float32 (0.999 -> 0.99900001), and the bias correction 1 - b2^t cancels
    # most digits, while plain optax computes b2^t from a Python double.
    rtol = 2e-5 if name.startswith("adam") else 1e-6
    injected, _ = trajectory(jaxgd.optimizer(name).transformation(**hyperparams))
    # optax's own Adam mixes float and int32 in its bias correction, which strict
    # promotion refuses; jaxgd wraps its transformations, the plain reference needs this.
    with jax.numpy_dtype_promotion("standard"):
        reference, _ = trajectory(plain())
    np.testing.assert_allclose(injected, reference, rtol=rtol, atol=1e-6)


@pytest.mark.parametrize("name,hyperparams,plain", OPTIMIZER_TABLE, ids=IDS)
def test_converges_on_quadratic(name, hyperparams, plain):
    path, _ = trajectory(jaxgd.optimizer(name).transformation(**hyperparams), steps=400)
    assert float(quadratic({"x": jnp.asarray(path[-1])})) < 1e-2 * float(
        quadratic({"x": jnp.zeros(3)})
    )


@pytest.mark.parametrize("name,hyperparams,plain", OPTIMIZER_TABLE, ids=IDS)
def test_jit_equals_eager(name, hyperparams, plain):
    tx = jaxgd.optimizer(name).transformation(**hyperparams)
    jitted, _ = trajectory(tx, steps=20, jit=True)
    eager, _ = trajectory(tx, steps=20, jit=False)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name,hyperparams,plain", OPTIMIZER_TABLE, ids=IDS)
def test_vmap_over_hyperparameters_equals_loop(name, hyperparams, plain):
    opt = jaxgd.optimizer(name)
    rates = jnp.array([0.5, 1.0, 2.0]) * hyperparams["learning_rate"]
    others = {k: v for k, v in hyperparams.items() if k != "learning_rate"}
    params = {"x": jnp.zeros(3)}

    def run(rate):
        tx = opt.transformation(learning_rate=rate, **others)
        state = tx.init(params)

        def body(carry, _):
            p, s = carry
            updates, s = tx.update(jax.grad(quadratic)(p), s, p)
            return (optax.apply_updates(p, updates), s), None

        (final, _), _ = jax.lax.scan(body, (params, state), None, length=30)
        return final["x"]

    batched = jax.jit(jax.vmap(run))(rates)
    looped = np.stack([np.asarray(jax.jit(run)(r)) for r in rates])
    np.testing.assert_allclose(batched, looped, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name,hyperparams,plain", OPTIMIZER_TABLE, ids=IDS)
def test_state_structure_does_not_depend_on_values(name, hyperparams, plain):
    opt = jaxgd.optimizer(name)
    params = {"x": jnp.zeros(3)}
    one = opt.transformation(**hyperparams).init(params)
    doubled = {k: 2 * v for k, v in hyperparams.items()}
    two = opt.transformation(**doubled).init(params)
    assert jax.tree.structure(one) == jax.tree.structure(two)
    assert jax.tree.map(jnp.shape, one) == jax.tree.map(jnp.shape, two)


def test_sgd_momentum_equals_heavy_ball():
    """v ← βv − ηg, x ← x + v, in NumPy float64, over 100 steps."""
    lr, beta = 0.05, 0.9
    path, _ = trajectory(jaxgd.optimizer("sgd").transformation(learning_rate=lr, momentum=beta))
    a, c = np.asarray(A, np.float64), np.asarray(CENTER, np.float64)
    x, v = np.zeros(3), np.zeros(3)
    for t in range(100):
        v = beta * v - lr * (a @ (x - c))
        x = x + v
        np.testing.assert_allclose(path[t], x, rtol=1e-5, atol=1e-6)


def test_momentum_zero_is_a_value_so_structures_match():
    params = {"x": jnp.zeros(3)}
    sgd = jaxgd.optimizer("sgd")
    plain = sgd.transformation(learning_rate=0.1, momentum=0.0).init(params)
    heavy = sgd.transformation(learning_rate=0.1, momentum=0.9).init(params)
    assert jax.tree.structure(plain) == jax.tree.structure(heavy)


def test_nesterov_is_static_and_matches_optax():
    tx = jaxgd.optimizer("sgd", nesterov=True).transformation(learning_rate=0.05, momentum=0.9)
    injected, _ = trajectory(tx)
    reference, _ = trajectory(optax.sgd(0.05, momentum=0.9, nesterov=True))
    np.testing.assert_allclose(injected, reference, rtol=1e-6, atol=1e-6)


def test_any_optax_factory_works_the_same_way():
    lion = jaxgd.optimizer(optax.lion)
    assert "b1" in lion.hyperparameter_names and "weight_decay" in lion.hyperparameter_names
    tx = lion.transformation(learning_rate=0.01, b1=0.8)
    injected, state = trajectory(tx, steps=30)
    reference, _ = trajectory(optax.lion(0.01, b1=0.8), steps=30)
    np.testing.assert_allclose(injected, reference, rtol=1e-6, atol=1e-6)
    assert float(state.hyperparams["b1"]) == pytest.approx(0.8)


def test_bad_optimizer_input_is_refused_with_a_helpful_message():
    with pytest.raises(ValueError, match="not known"):
        jaxgd.optimizer("adamax_typo")
    with pytest.raises(ValueError, match="no static option"):
        jaxgd.optimizer("adam", centered=True)
    with pytest.raises(ValueError, match="learning_rate"):
        jaxgd.optimizer("sgd").transformation(momentum=0.9)
    with pytest.raises(ValueError, match="takes"):
        jaxgd.optimizer("sgd").transformation(learning_rate=0.1, beta=0.9)
