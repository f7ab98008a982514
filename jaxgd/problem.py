"""The problem contract and the masked batch means built on it.

A problem is ``init(key) -> params`` (any pytree: dicts, Flax, Equinox) and a
per-example ``loss(params, example) -> scalar``, optionally per-example
``metrics(params, example) -> {name: scalar}``. jaxgd vmaps over examples and takes a
masked mean, so a padded partial batch, per-example gradients and the batch gradient
all come from the same two functions:

    L_B(θ) = Σ_i m_i ℓ(θ, x_i) / Σ_i m_i,      ∇L_B(θ) = Σ_i m_i ∇ℓ(θ, x_i) / Σ_i m_i

where ``m_i`` is 1 for a real example and 0 for padding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

__all__ = [
    "Problem",
    "example_losses",
    "masked_mean",
    "batch_loss",
    "batch_gradient",
    "per_example_gradients",
    "evaluate",
]

PyTree = Any


@dataclasses.dataclass(frozen=True)
class Problem:
    """A model and its per-example loss.

    Attributes:
        init: ``init(key) -> params``.
        loss: ``loss(params, example) -> scalar`` for ONE example (a pytree of arrays
            without the example axis).
        metrics: optional ``metrics(params, example) -> {name: scalar}``, averaged like
            the loss (e.g. accuracy).
        name: shown in tables and reports.
        num_classes: for a classifier, the number of classes: every integer leaf of the
            data is then a label, checked to lie in ``[0, num_classes)`` before training
            (JAX indexing would clamp an out-of-range label to the last class silently).
    """

    init: Callable[[jax.Array], PyTree]
    loss: Callable[[PyTree, PyTree], jax.Array]
    metrics: Callable[[PyTree, PyTree], dict[str, jax.Array]] | None = None
    name: str = "problem"
    num_classes: int | None = None


def example_losses(loss: Callable, params: PyTree, batch: PyTree) -> jax.Array:
    """Per-example losses ``[B]`` of a batch with a leading example axis."""
    return jax.vmap(loss, in_axes=(None, 0))(params, batch)


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """``Σ m_i v_i / Σ m_i`` over the leading axis; 0 when the mask is empty."""
    weights = mask.astype(values.dtype)
    count = jnp.sum(weights)
    total = jnp.sum(jnp.where(mask, values, jnp.zeros_like(values)))
    return total / jnp.maximum(count, jnp.ones_like(count))


def batch_loss(loss: Callable, params: PyTree, batch: PyTree, mask: jax.Array | None = None):
    """Mean loss over the real examples of a (possibly padded) batch."""
    losses = example_losses(loss, params, batch)
    if mask is None:
        return jnp.mean(losses)
    return masked_mean(losses, mask)


def batch_gradient(loss: Callable, params: PyTree, batch: PyTree, mask: jax.Array | None = None):
    """Gradient of ``batch_loss``: the mean of the real examples' gradients."""
    return jax.grad(batch_loss, argnums=1)(loss, params, batch, mask)


def per_example_gradients(loss: Callable, params: PyTree, batch: PyTree) -> PyTree:
    """Gradients of each example's loss, stacked: every leaf gets a leading ``[B]`` axis.

    Their mean over the batch equals ``batch_gradient(loss, params, batch)``.

    Example:
        >>> import jax.numpy as jnp
        >>> loss = lambda w, ex: (ex["x"] @ w - ex["y"]) ** 2
        >>> batch = {"x": jnp.ones((4, 2)), "y": jnp.arange(4.0)}
        >>> per_example_gradients(loss, jnp.zeros(2), batch).shape
        (4, 2)
    """
    return jax.vmap(jax.grad(loss), in_axes=(None, 0))(params, batch)


def evaluate(problem: Problem, params: PyTree, batch: PyTree, mask: jax.Array) -> dict:
    """Masked sums of the loss and metrics over a batch, and the real-example count.

    Sums (not means) so that an evaluation split into batches adds up exactly.
    """
    weights = mask.astype(jnp.result_type(float))
    losses = example_losses(problem.loss, params, batch)
    sums = {"loss": jnp.sum(jnp.where(mask, losses, 0).astype(weights.dtype))}
    if problem.metrics is not None:
        values = jax.vmap(problem.metrics, in_axes=(None, 0))(params, batch)
        for name, value in values.items():
            value = jnp.asarray(value).astype(weights.dtype)
            sums[name] = jnp.sum(jnp.where(mask, value, jnp.zeros_like(value)))
    return {"sums": sums, "count": jnp.sum(weights)}
