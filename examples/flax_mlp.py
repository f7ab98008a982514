"""A Flax MLP (64-32-10) on the 8x8 digits, written with NNX and with linen.

``Problem.from_flax`` takes an NNX module factory (``rngs -> module``: each seed its own
weights; split into parameters and graph with ``nnx.split``, rebuilt with ``nnx.merge``
inside the loss) or a linen module (``module.init`` / ``module.apply``). Each is checked
against the same network written as a dict of arrays from the same initial weights.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen, nnx

import jaxgd


class NNXMLP(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(64, 32, rngs=rngs)
        self.out = nnx.Linear(32, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(x)))


class LinenMLP(linen.Module):
    @linen.compact
    def __call__(self, x):
        return linen.Dense(10, name="out")(jax.nn.relu(linen.Dense(32, name="hidden")(x)))


def cross_entropy(model, example):
    return optax.softmax_cross_entropy_with_integer_labels(model(example["x"]), example["y"])


def accuracy(model, example):
    return {"accuracy": (model(example["x"]).argmax() == example["y"]).astype(np.float32)}


data = jaxgd.problems.load_digits()
space = jaxgd.grid(learning_rate=[1e-3, 3e-3, 1e-2], seed=[0, 1])
settings = dict(optimizer="adam", space=space, batch_size=64, epochs=8)
dict_model = jaxgd.problems.mlp((64, 32, 10))


def dict_twin(layers_of):
    """The network as a dict of arrays, starting from the weights ``layers_of(key)``."""

    def init(key):
        return [{"w": layer["kernel"], "b": layer["bias"]} for layer in layers_of(key)]

    return jaxgd.Problem(init, dict_model.loss, dict_model.metrics)


def nnx_layers(key):
    _, params = nnx.split(NNXMLP(nnx.Rngs(key)))
    return [{k: v[...] for k, v in params[name].items()} for name in ("hidden", "out")]


def linen_layers(key):
    params = LinenMLP().init(key, jnp.zeros(64))["params"]
    return [params["hidden"], params["out"]]


problems = {
    "nnx": (jaxgd.Problem.from_flax(NNXMLP, cross_entropy, accuracy), nnx_layers),
    "linen": (
        jaxgd.Problem.from_flax(LinenMLP(), cross_entropy, accuracy, inputs=(jnp.zeros(64),)),
        linen_layers,
    ),
}
for api, (problem, layers_of) in problems.items():
    result = jaxgd.sweep(problem, data, **settings)
    twin = jaxgd.sweep(dict_twin(layers_of), data, **settings)
    difference = np.abs(result.history["val_loss"] - twin.history["val_loss"]).max()
    assert difference < 1e-4
    best = result.best("val_accuracy")
    print(f"{api}:")
    print(result.format_table(["learning_rate", "seed", "final_val_loss", "final_val_accuracy"]))
    print(
        f"{api}: same as the dict-of-arrays model (max |val_loss difference| {difference:.1e}); "
        f"best: learning rate {best['learning_rate']:g}, validation accuracy "
        f"{best['final_val_accuracy']:.3f}"
    )
