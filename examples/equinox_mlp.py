"""An Equinox MLP (64-32-10) on the 8x8 digits, as it is: no hand partitioning.

``Problem.from_equinox`` trains the module's float arrays (one copy per config, vmapped)
and keeps its activation functions and flags fixed. Checked against the same network
written as a dict of arrays starting from the same weights.
"""

import equinox as eqx
import jax
import numpy as np
import optax

import jaxgd


def make_model(key):
    return eqx.nn.MLP(64, 10, width_size=32, depth=1, key=key)


def cross_entropy(model, example):
    return optax.softmax_cross_entropy_with_integer_labels(model(example["x"]), example["y"])


def accuracy(model, example):
    return {"accuracy": (model(example["x"]).argmax() == example["y"]).astype(np.float32)}


problem = jaxgd.Problem.from_equinox(make_model, cross_entropy, accuracy, name="equinox_mlp")
data = jaxgd.problems.load_digits()
space = jaxgd.grid(learning_rate=[1e-3, 3e-3, 1e-2], seed=[0, 1])
settings = dict(optimizer="adam", space=space, batch_size=64, epochs=8, return_params=True)
result = jaxgd.sweep(problem, data, **settings)
print(result.format_table(["learning_rate", "seed", "final_val_loss", "final_val_accuracy"]))

# The same network as a dict of arrays (jaxgd.problems.mlp), from the same initial weights.
dict_model = jaxgd.problems.mlp((64, 32, 10))


def dict_init(key):
    layers = make_model(key).layers
    return [{"w": layer.weight.T, "b": layer.bias} for layer in layers]


twin = jaxgd.sweep(jaxgd.Problem(dict_init, dict_model.loss, dict_model.metrics), data, **settings)
difference = np.abs(result.history["val_loss"] - twin.history["val_loss"]).max()
print(f"same as the dict-of-arrays model: max |val_loss difference| {difference:.1e}")
assert difference < 1e-4

index = int(np.argmax(result.history["val_accuracy"][:, -1]))
best = result.table()[index]
model = problem.assemble(jax.tree.map(lambda leaf: leaf[index], result.params))
print(
    f"best: learning rate {best['learning_rate']:g}, seed {best['seed']}: validation accuracy "
    f"{best['final_val_accuracy']:.3f}; trained model back as {type(model).__name__}"
)
