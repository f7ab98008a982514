"""Learning-rate schedules as sweepable families: equal to optax's schedules driving
optax.sgd / optax.adam in a plain loop; their parameters never recompile."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from reference import DATA, PROBLEM, assert_trees_close, config_params

import jaxgd
from jaxgd.problem import batch_loss

LR = 0.05
BATCH, EPOCHS = 32, 3  # 210 or 200 examples: 7 updates per epoch, 21 in all
# The optax comparison on a small linear model: ten programs compile quickly.
LINEAR, LINEAR_DATA = jaxgd.problems.multiple_regression()

# family: (its parameters in the space, the optax schedule they mean)
FAMILIES = {
    "constant": ({}, optax.constant_schedule(LR)),
    "cosine": (
        {"decay_steps": 15, "alpha": 0.1, "exponent": 2.0},
        optax.cosine_decay_schedule(LR, 15, alpha=0.1, exponent=2.0),
    ),
    "linear": (
        {"transition_steps": 10, "end_value": 0.001, "transition_begin": 3},
        optax.linear_schedule(LR, 0.001, 10, transition_begin=3),
    ),
    "exponential": (
        {"transition_steps": 4, "decay_rate": 0.5, "transition_begin": 2},
        optax.exponential_decay(LR, 4, 0.5, transition_begin=2),
    ),
    "warmup_cosine": (
        {"warmup_steps": 5, "decay_steps": 18, "init_value": 0.0, "end_value": 0.001},
        optax.warmup_cosine_decay_schedule(0.0, LR, 5, 18, end_value=0.001),
    ),
}
OPTIMIZERS = {
    "sgd": ({"momentum": 0.9}, lambda schedule: optax.sgd(schedule, momentum=0.9)),
    "adam": ({}, optax.adam),
}


def plain_run(tx, problem, data, seed=0):
    """One config alone in a plain Python loop: jaxgd's data order, optax's optimizer
    (under standard dtype promotion: optax's schedules mix int32 counts and floats)."""
    with jax.numpy_dtype_promotion("standard"):
        return _plain_run(tx, problem, data, seed)


def _plain_run(tx, problem, data, seed):
    init_key, shuffle_key = jax.random.split(jax.random.key(seed))
    params = problem.init(init_key)
    state = tx.init(params)
    n = len(data["y"])
    data = jax.tree.map(jnp.asarray, data)

    @jax.jit
    def step(params, state, batch):
        grads = jax.grad(batch_loss, argnums=1)(problem.loss, params, batch)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    for epoch in range(EPOCHS):
        order = np.asarray(jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), n))
        for start in range(0, n, BATCH):
            index = order[start : start + BATCH]
            params, state = step(params, state, jax.tree.map(lambda a, i=index: a[i], data))
    return params


@pytest.mark.slow
def test_every_family_equals_optax_schedules_in_a_plain_loop():
    cases = [(f, o) for f in FAMILIES for o in OPTIMIZERS]
    space = [
        {
            "optimizer": name,
            "schedule": family,
            "learning_rate": LR,
            **OPTIMIZERS[name][0],
            **FAMILIES[family][0],
        }
        for family, name in cases
    ]
    result = jaxgd.sweep(
        LINEAR,
        LINEAR_DATA,
        space=space,
        batch_size=BATCH,
        epochs=EPOCHS,
        validation=None,
        return_params=True,
    )
    assert result.configs[1]["schedule"] == "constant"
    assert (result.updates == 21).all()
    for i, (family, name) in enumerate(cases):
        expected = plain_run(OPTIMIZERS[name][1](FAMILIES[family][1]), LINEAR, LINEAR_DATA)
        assert_trees_close(config_params(result, i), expected, rtol=1e-5, atol=1e-6)


def test_new_schedule_values_never_recompile():
    def run(decay_steps, alpha):
        space = jaxgd.grid(learning_rate=[0.1, 0.03], decay_steps=decay_steps, alpha=alpha)
        return jaxgd.sweep(
            PROBLEM,
            DATA,
            space=space,
            optimizer=jaxgd.optimizer("sgd", schedule="cosine"),
            batch_size=BATCH,
            epochs=2,
            validation=None,
        )

    first = run([5, 30], 0.0)
    before = jaxgd.compile_count()
    second = run([7, 60], 0.5)
    assert jaxgd.compile_count() == before
    # The values did reach the program: a different schedule, a different loss.
    assert not np.allclose(first.history["train_loss"], second.history["train_loss"])


@pytest.mark.slow
def test_decay_epochs_converts_to_each_configs_own_updates():
    schedule = jaxgd.increase_batch_size(30, factor=2, at=[1])  # 7 updates, then 4 an epoch
    space = [
        {"batch_size": 32, "decay_epochs": 2},  # 200 examples, 7 updates an epoch: 14
        {"batch_size": 32, "decay_steps": 14},
        {"batch_size": 100, "decay_epochs": 1.5},  # 2 updates an epoch: 3
        {"batch_size": schedule, "decay_epochs": 1.5},  # 7 + 4 / 2 = 9
    ]
    result = jaxgd.sweep(
        LINEAR,
        LINEAR_DATA,
        space=[{**c, "learning_rate": 0.1} for c in space],
        optimizer=jaxgd.optimizer("sgd", schedule="cosine"),
        epochs=2,
        validation=None,
    )
    assert [row["decay_steps"] for row in result.configs] == [14.0, 14.0, 3.0, 9.0]
    assert "decay_epochs" not in result.configs[0]
    np.testing.assert_array_equal(result.history["train_loss"][0], result.history["train_loss"][1])


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ([{"learning_rate": 0.1, "schedule": "cosine"}], "needs ['decay_steps']"),
        ([{"learning_rate": 0.1, "schedule": "cosin"}], "schedule='cosin' is not known"),
        (
            [{"learning_rate": 0.1, "schedule": "cosine", "decay_steps": 3, "decay_epochs": 1}],
            "not both",
        ),
        (
            [{"learning_rate": 0.1, "schedule": "linear", "transition_epochs": -1}],
            "transition_epochs=-1",
        ),
        (
            [{"learning_rate": 0.1, "schedule": "cosine", "decay_steps": 0}],
            "decay_steps=0.0 for optimizer 'sgd': must be in (0, inf)",
        ),
    ],
)
def test_bad_schedules_are_refused_before_compiling(space, message):
    before = jaxgd.compile_count()
    with pytest.raises(jaxgd.InputError, match=re.escape(message)):
        jaxgd.sweep(PROBLEM, DATA, space=space, batch_size=BATCH, epochs=1)
    assert jaxgd.compile_count() == before


@pytest.mark.parametrize("strategy", ["nested", "accumulate"])
def test_a_schedule_counts_updates_under_every_strategy(strategy):
    # Accumulation runs micro-steps that do not update: the schedule must not count them.
    space = jaxgd.grid(batch_size=[16, 48], learning_rate=0.05, decay_steps=[9, 20])
    results = [
        jaxgd.sweep(
            LINEAR,
            LINEAR_DATA,
            space=space,
            optimizer=jaxgd.optimizer("sgd", schedule="cosine"),
            epochs=2,
            validation=None,
            return_params=True,
            options=jaxgd.SweepOptions(strategy=s),
        )
        for s in ("grouped", strategy)
    ]
    assert_trees_close(results[0].params, results[1].params, rtol=1e-5, atol=1e-6)
