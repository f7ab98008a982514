"""Per-config training state with a status, its initialisation and the guarded update.

A config is RUNNING until its loss turns non-finite or exceeds ``divergence`` times its
first loss (DIVERGED: frozen at the parameters that gave that loss, with the update
index) or a callback stops it (STOPPED: frozen at the parameters it had). Unlike
``optax.apply_if_finite``, which skips a bad update and carries on, a diverged config
never trains again: in a sweep it is a result, not a transient.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ..optimizers import Optimizer
from ..problem import Problem

__all__ = [
    "RUNNING",
    "DIVERGED",
    "STOPPED",
    "STATUS_NAMES",
    "DEFAULT_DIVERGENCE",
    "TrainState",
    "init_train_state",
    "apply_gradient",
    "stop_where",
    "seed_keys",
    "init_states",
]

PyTree = Any

# Status codes, stored as int32 in the state; STATUS_NAMES[code] is the name users see.
RUNNING, DIVERGED, STOPPED = 0, 1, 2
STATUS_NAMES = ("running", "diverged", "stopped")

# A loss above this many times the config's first loss counts as diverged (sweep's
# ``divergence=``): such a config is lost to a too-large step long before it overflows.
DEFAULT_DIVERGENCE = 1e3


class TrainState(NamedTuple):
    """One config's training state (with leading config axes when stacked).

    Attributes:
        params: the model parameters.
        opt_state: the optax state, hyperparameters included.
        updates: how many updates have been applied.
        status: RUNNING, DIVERGED or STOPPED; only a RUNNING config is updated.
        diverged_at: the update index at which the loss turned non-finite or too large, or -1.
        initial_loss: the loss of the first update (NaN before it), the divergence scale.
    """

    params: PyTree
    opt_state: PyTree
    updates: jax.Array
    status: jax.Array
    diverged_at: jax.Array
    initial_loss: jax.Array


def init_train_state(params: PyTree, tx: optax.GradientTransformation) -> TrainState:
    """A fresh state: no updates taken, running."""
    return TrainState(
        params=params,
        opt_state=tx.init(params),
        updates=jnp.zeros([], jnp.int32),
        status=jnp.full([], RUNNING, jnp.int32),
        diverged_at=jnp.full([], -1, jnp.int32),
        initial_loss=jnp.full([], jnp.nan, jnp.result_type(float)),
    )


def apply_gradient(
    state: TrainState,
    grads: PyTree,
    loss: jax.Array,
    tx: optax.GradientTransformation,
    apply: jax.Array | bool = True,
    *,
    keep_optimizer_state: bool = False,
    divergence: float = DEFAULT_DIVERGENCE,
) -> TrainState:
    """θ ← θ + u with ``u, s ← tx.update(g, s, θ)``, if ``apply``, the config is running
    and its loss L(θ) is finite and at most ``divergence`` x |L₀| (L₀: the loss of its
    first update; ``inf`` turns the bound off, an L₀ of 0 gives none); otherwise the config
    is marked DIVERGED and θ is left as is.

    Only the loss is checked. It exists already, so the guard costs nothing, where checking
    every element of the update costs a pass over the parameters each step (8 to 20% of
    a small-batch step: benchmarks/README.md, "the guard"). An update that overflows while
    its loss is still finite shows in the next step's loss: the config is then frozen, one
    update later, at those non-finite parameters.

    A frozen config keeps its parameters and counters bitwise. Its optimizer state is
    kept only with ``keep_optimizer_state`` (gradient accumulation, where most micro-steps
    do not apply): otherwise a step that does not apply is a frozen config's, whose
    optimizer state is never read again, and selecting it would cost a copy each step.
    """
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    active = jnp.asarray(apply) & (state.status == RUNNING)
    initial_loss = jnp.where(
        active & jnp.isnan(state.initial_loss),
        loss.astype(state.initial_loss.dtype),
        state.initial_loss,
    )
    scale = jnp.abs(initial_loss)
    # NaN comparisons are False, so an unset scale or an infinite bound never trips.
    bounded = (scale == 0) | ~(loss > divergence * scale)
    finite = jnp.isfinite(loss) & bounded
    take_update = active & finite
    newly_diverged = active & ~finite
    if keep_optimizer_state:
        opt_state = optax.tree.where(take_update, opt_state, state.opt_state)
    return TrainState(
        params=optax.tree.where(take_update, params, state.params),
        opt_state=opt_state,
        updates=state.updates + take_update.astype(jnp.int32),
        status=jnp.where(newly_diverged, DIVERGED, state.status),
        diverged_at=jnp.where(newly_diverged, state.updates, state.diverged_at),
        initial_loss=initial_loss,
    )


def stop_where(state: TrainState, stop: jax.Array) -> TrainState:
    """Mark running configs STOPPED where ``stop`` (same leading axes as the state)."""
    status = jnp.where(stop & (state.status == RUNNING), STOPPED, state.status)
    return state._replace(status=status)


def seed_keys(seed: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``init_key, shuffle_key = split(key(seed))``: the initial parameters come from the
    first, every epoch's data order from the second (``core.epoch.epoch_orders``)."""
    init_key, shuffle_key = jax.random.split(jax.random.key(seed))
    return init_key, shuffle_key


def init_states(
    seeds: jax.Array, hyperparams: dict[str, jax.Array], *, problem: Problem, optimizer: Optimizer
) -> tuple[TrainState, jax.Array]:
    """States ``[U, M]`` and shuffle keys ``[U]`` from seeds ``[U]`` and hyperparameters
    ``{name: [U, M]}``: the configs of one seed share its initial parameters."""
    init_keys, shuffle_keys = jax.vmap(seed_keys)(seeds)
    params = jax.vmap(problem.init)(init_keys)

    def init_one(params, hyperparams):
        return init_train_state(params, optimizer.transformation(**hyperparams))

    states = jax.vmap(jax.vmap(init_one, in_axes=(None, 0)))(params, hyperparams)
    return states, shuffle_keys
