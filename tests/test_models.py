"""Model objects as problems: Equinox, Flax linen and NNX modules train exactly like a
hand-written dict-of-arrays model with the same initial weights."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from reference import DATA, PROBLEM, assert_trees_close

import jaxgd

eqx = pytest.importorskip("equinox")
linen = pytest.importorskip("flax.linen")
nnx = pytest.importorskip("flax.nnx")

SPACE = jaxgd.grid(learning_rate=[0.1, 0.5], momentum=0.9, seed=[0, 1])


def cross_entropy(model, example):
    return optax.softmax_cross_entropy_with_integer_labels(model(example["x"]), example["y"])


def accuracy(model, example):
    return {"accuracy": (jnp.argmax(model(example["x"])) == example["y"]).astype(jnp.float32)}


def dict_twin(layers_of):
    """The hand-written model (jaxgd.problems.mlp: [{"w": [in, out], "b": [out]}, ...], ReLU,
    cross-entropy) starting from the weights ``layers_of(key)`` gives."""
    return jaxgd.Problem(
        init=lambda key: [{"w": w, "b": b} for w, b in layers_of(key)],
        loss=PROBLEM.loss,
        metrics=PROBLEM.metrics,
    )


def train(problem):
    return jaxgd.sweep(problem, DATA, space=SPACE, batch_size=32, epochs=2, return_params=True)


def assert_same_training(model_result, dict_result, to_layers):
    for name in ("train_loss", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(
            model_result.history[name], dict_result.history[name], rtol=1e-5, atol=1e-6
        )
    expected = [{"w": w, "b": b} for w, b in to_layers(model_result.params)]
    assert_trees_close(expected, dict_result.params, rtol=1e-5, atol=1e-6)


def dict_logits(x, layers):
    """The MLP of jaxgd.problems.mlp on layers [(w [in, out], b), ...]."""
    for w, b in layers[:-1]:
        x = jax.nn.relu(x @ w + b)
    w, b = layers[-1]
    return x @ w + b


@pytest.mark.slow
def test_equinox_mlp_equals_the_dict_model():
    def make_model(key):
        return eqx.nn.MLP(8, 3, width_size=16, depth=1, key=key)

    def layers(model):  # Equinox keeps weights [out, in]
        return [(layer.weight.swapaxes(-1, -2), layer.bias) for layer in model.layers]

    problem = jaxgd.Problem.from_equinox(make_model, cross_entropy, accuracy)
    result = train(problem)
    assert_same_training(result, train(dict_twin(lambda key: layers(make_model(key)))), layers)
    # The trained model comes back whole: one config's arrays with the fixed parts.
    model = problem.assemble(jax.tree.map(lambda leaf: leaf[3], result.params))
    assert isinstance(model, eqx.nn.MLP) and model.activation is jax.nn.relu
    np.testing.assert_allclose(
        jax.vmap(model)(DATA["x"][:5]),
        jax.vmap(lambda x: dict_logits(x, layers(model)))(DATA["x"][:5]),
        rtol=1e-5,
    )


class LinenMLP(linen.Module):
    @linen.compact
    def __call__(self, x):
        return linen.Dense(3, name="out")(jax.nn.relu(linen.Dense(16, name="hidden")(x)))


@pytest.mark.slow
def test_flax_linen_module_equals_the_dict_model():
    module = LinenMLP()

    def layers(params):
        return [(params[n]["kernel"], params[n]["bias"]) for n in ("hidden", "out")]

    problem = jaxgd.Problem.from_flax(module, cross_entropy, accuracy, inputs=(jnp.zeros(8),))
    twin = dict_twin(lambda key: layers(module.init(key, jnp.zeros(8))["params"]))
    assert_same_training(train(problem), train(twin), layers)


class NNXMLP(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(8, 16, rngs=rngs)
        self.out = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(x)))


def nnx_layers(state):
    return [(state[n]["kernel"][...], state[n]["bias"][...]) for n in ("hidden", "out")]


@pytest.mark.slow
def test_flax_nnx_module_equals_the_dict_model():
    def layers_of(key):
        _, params = nnx.split(NNXMLP(nnx.Rngs(key)))
        return nnx_layers(params)

    problem = jaxgd.Problem.from_flax(NNXMLP, cross_entropy, accuracy)
    result = train(problem)
    assert_same_training(result, train(dict_twin(layers_of)), lambda p: nnx_layers(p[1]))
    assert isinstance(problem.assemble(jax.tree.map(lambda leaf: leaf[0], result.params)), NNXMLP)


def test_an_nnx_instance_starts_every_seed_from_its_weights():
    module = NNXMLP(nnx.Rngs(3))
    problem = jaxgd.Problem.from_flax(module, cross_entropy)
    first, second = (problem.init(jax.random.key(seed)) for seed in (0, 1))
    assert_trees_close(first, second)
    assert_trees_close(nnx_layers(first[1]), nnx_layers(nnx.split(module)[1]))


def test_from_model_keeps_fixed_leaves_out_of_the_params():
    def make_model(key):
        return {
            "w": jax.random.normal(key, (3,)),
            "scale": np.array([2], np.int32),
            "act": jnp.tanh,
        }

    def loss(model, example):
        return (
            model["act"](example["x"] @ model["w"]) * model["scale"][0].astype(jnp.float32)
            - example["y"]
        ) ** 2

    problem = jaxgd.Problem.from_model(make_model, loss)
    params = problem.init(jax.random.key(0))
    assert jax.tree.leaves(params) == [params["w"]]
    data = {"x": np.ones((8, 3), np.float32), "y": np.zeros(8, np.float32)}
    result = jaxgd.sweep(
        problem,
        data,
        space=jaxgd.grid(learning_rate=[0.01]),
        batch_size=4,
        epochs=1,
        validation=None,
    )
    assert np.isfinite(result.history["train_loss"]).all()


def test_models_that_cannot_be_split_are_refused_with_a_reason():
    with pytest.raises(jaxgd.InputError, match="must not depend on the key"):
        jaxgd.Problem.from_model(
            lambda key: {"w": jnp.zeros(2), "count": jax.random.randint(key, (), 0, 3)},
            lambda m, ex: jnp.sum(m["w"]),
        )
    with pytest.raises(jaxgd.InputError, match=r"needs inputs=\(x,\)"):
        jaxgd.Problem.from_flax(LinenMLP(), cross_entropy)
    with pytest.raises(jaxgd.InputError, match="expected a flax.linen.Module"):
        jaxgd.Problem.from_flax("mlp", cross_entropy)
