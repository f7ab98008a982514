"""The one masked training step, and per-step measurements (probes).

    L_B(θ) = Σ_i m_i ℓ(θ, x_i) / Σ_i m_i,    g = ∇L_B(θ),    θ, s ← update(g, s, θ)

A step returns sums (not means) of what it measured, so that an epoch's mean over its
examples is exact whatever the batch size and however the last batch was padded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import optax

from ..problem import Problem, example_losses, masked_mean, per_example_gradients
from .state import DEFAULT_DIVERGENCE, TrainState, apply_gradient

__all__ = ["StepMetrics", "Probe", "GradientSquaredNorms", "train_step", "zero_metrics"]

PyTree = Any


class StepMetrics(NamedTuple):
    """Per-step sums: the masked loss sum, the real-example count, and each probe's sum."""

    loss_sum: jax.Array
    count: jax.Array
    probes: dict[str, jax.Array]


class Probe(Protocol):
    """A per-step measurement: ``probe(problem, params, batch, mask)`` returns a sum over
    the batch's real examples; the epoch's history records ``name`` as that sum over the
    epoch divided by the examples seen."""

    name: str

    def __call__(
        self, problem: Problem, params: PyTree, batch: PyTree, mask: jax.Array
    ) -> jax.Array: ...


class GradientSquaredNorms:
    """``Σ_i m_i ||∇ℓ(θ, x_i)||²``: the per-example gradient norms that the norm test
    (Byrd et al. 2012) and the gradient noise scale (McCandlish et al. 2018,
    arXiv:1812.06162) compare with the norm of the batch gradient."""

    name = "grad_sq_norm"

    def __call__(self, problem, params, batch, mask):
        grads = per_example_gradients(problem.loss, params, batch)
        norms = sum(
            jnp.sum(leaf.reshape(leaf.shape[0], -1) ** 2, axis=1) for leaf in jax.tree.leaves(grads)
        )
        return jnp.sum(jnp.where(mask, norms, jnp.zeros_like(norms)))

    def __eq__(self, other):
        return type(other) is type(self)

    def __hash__(self):
        return hash(type(self))


def zero_metrics(shape: tuple[int, ...], probes: Sequence[Probe] = ()) -> StepMetrics:
    """Sums of zero with leading axes ``shape``: the start of an epoch's accumulation."""
    zero = jnp.zeros(shape, jnp.result_type(float))
    return StepMetrics(zero, zero, {probe.name: zero for probe in probes})


def train_step(
    state: TrainState,
    batch: PyTree,
    mask: jax.Array,
    *,
    problem: Problem,
    tx: optax.GradientTransformation,
    probes: Sequence[Probe] = (),
    divergence: float = DEFAULT_DIVERGENCE,
) -> tuple[TrainState, StepMetrics]:
    """One mini-batch update: g = ∇ [Σ m_i ℓ(θ, x_i) / Σ m_i], then the optimizer's update.

    Returns the new state and the batch's sums measured *before* the update, from which
    the epoch's mean training loss is the usual running average.
    """

    def loss_and_sum(params):
        losses = example_losses(problem.loss, params, batch)
        return masked_mean(losses, mask), jnp.sum(jnp.where(mask, losses, 0))

    (loss, loss_sum), grads = jax.value_and_grad(loss_and_sum, has_aux=True)(state.params)
    count = jnp.sum(mask.astype(loss.dtype))
    measured = {probe.name: probe(problem, state.params, batch, mask) for probe in probes}
    return apply_gradient(state, grads, loss, tx, divergence=divergence), StepMetrics(
        loss_sum, count, measured
    )
