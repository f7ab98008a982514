"""The oracle several test files share: one config trained alone by a plain Python loop,
and tree comparisons that check structure before values."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxgd
from jaxgd.problem import batch_loss

PROBLEM = jaxgd.problems.mlp((8, 16, 3))
DATA = jaxgd.problems.synthetic_classification(num_examples=210, num_features=8, num_classes=3)


_REFERENCE_TX = optax.inject_hyperparams(optax.sgd)(learning_rate=0.0, momentum=0.0)


@functools.partial(jax.jit, static_argnums=0)
def _reference_step(problem, params, opt_state, batch):
    loss, grads = jax.value_and_grad(batch_loss, argnums=1)(problem.loss, params, batch)
    updates, opt_state = _REFERENCE_TX.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def reference_run(
    problem,
    data,
    *,
    learning_rate,
    momentum,
    seed,
    batch_size,
    epochs,
    shuffle=True,
    drop_last=False,
):
    """One config trained alone by a plain Python loop over batches: the semantics jaxgd
    promises. Parameters from split(key(seed))[0]; epoch e visits
    permutation(fold_in(split(key(seed))[1], e)); each batch's update is the mean over its
    real examples; the partial last batch is kept unless drop_last."""
    init_key, shuffle_key = jax.random.split(jax.random.key(seed))
    params = problem.init(init_key)
    # Hyperparameters injected so that one compiled step serves every config.
    opt_state = _REFERENCE_TX.init(params)
    opt_state.hyperparams["learning_rate"] = jnp.asarray(learning_rate, jnp.float32)
    opt_state.hyperparams["momentum"] = jnp.asarray(momentum, jnp.float32)
    n = len(data["y"])
    data = jax.tree.map(jnp.asarray, data)

    def step(params, opt_state, batch):
        return _reference_step(problem, params, opt_state, batch)

    epoch_losses, updates = [], 0
    for epoch in range(epochs):
        if shuffle:
            order = np.asarray(jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), n))
        else:
            order = np.arange(n)
        total, seen = 0.0, 0
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            if drop_last and len(index) < batch_size:
                break
            params, opt_state, loss = step(
                params, opt_state, jax.tree.map(lambda a, i=index: a[i], data)
            )
            total += float(loss) * len(index)
            seen += len(index)
            updates += 1
        epoch_losses.append(total / seen)
    return params, np.array(epoch_losses), updates


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    """Same tree structure, then every leaf close (optax's test_utils does the same)."""
    assert jax.tree.structure(a) == jax.tree.structure(b), (
        f"{jax.tree.structure(a)} != {jax.tree.structure(b)}"
    )
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


# The older name, used throughout the sweep tests.
assert_params_close = assert_trees_close


def config_params(result, i):
    return jax.tree.map(lambda leaf: leaf[i], result.params)


ENGINE_KNOBS = {field.name for field in dataclasses.fields(jaxgd.SweepOptions)}


def sweep(problem, data, **kwargs):
    """``jaxgd.sweep`` with the engine knobs (strategy=, epochs_per_chunk=, ...) gathered
    into ``options=jaxgd.SweepOptions(...)``, so tests can vary them like any keyword."""
    knobs = {name: kwargs.pop(name) for name in list(kwargs) if name in ENGINE_KNOBS}
    return jaxgd.sweep(problem, data, options=jaxgd.SweepOptions(**knobs), **kwargs)
