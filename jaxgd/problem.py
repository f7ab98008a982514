"""The problem contract and the masked batch means built on it.

A problem is ``init(key) -> params`` (a pytree of float arrays) and a
per-example ``loss(params, example) -> scalar``, optionally per-example
``metrics(params, example) -> {name: scalar}``. jaxgd vmaps over examples and takes a
masked mean, so a padded partial batch, per-example gradients and the batch gradient
all come from the same two functions:

    L_B(θ) = Σ_i m_i ℓ(θ, x_i) / Σ_i m_i,      ∇L_B(θ) = Σ_i m_i ∇ℓ(θ, x_i) / Σ_i m_i

where ``m_i`` is 1 for a real example and 0 for padding.

A model object (an Equinox module, a Flax linen or NNX module, any pytree with functions or
other fixed leaves in it) becomes a problem through ``Problem.from_model`` and its thin
variants ``from_equinox`` and ``from_flax``: its float-array leaves are the params, trained
and vmapped over configs; every other leaf is fixed, and the loss sees the model rebuilt.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._io import optional_import
from .errors import InputError

__all__ = [
    "Problem",
    "example_losses",
    "masked_mean",
    "batch_loss",
    "batch_gradient",
    "per_example_gradients",
    "evaluate",
    "param_shapes",
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
        assemble: for a problem made by ``from_model`` (or ``from_equinox``,
            ``from_flax``), ``assemble(params)`` is the model the loss sees: the trained
            arrays put back with the fixed parts. None when the params are the model.
    """

    init: Callable[[jax.Array], PyTree]
    loss: Callable[[PyTree, PyTree], jax.Array]
    metrics: Callable[[PyTree, PyTree], dict[str, jax.Array]] | None = None
    name: str = "problem"
    num_classes: int | None = None
    assemble: Callable[[PyTree], Any] | None = None

    @classmethod
    def from_model(
        cls,
        make_model: Callable[[jax.Array], Any],
        loss: Callable[[Any, PyTree], jax.Array],
        metrics: Callable[[Any, PyTree], dict[str, jax.Array]] | None = None,
        name: str = "model",
        *,
        trained: Callable[[Any], bool] | None = None,
    ) -> Problem:
        """A problem from ``make_model(key) -> model``, any pytree, and
        ``loss(model, example)``.

        The model's leaves split in two (Equinox's ``eqx.partition``, done here with
        ``jax.tree_util``): those ``trained(leaf)`` is true of (default: float arrays) are the
        params, one copy per config; the others (activation functions, flags, integer
        buffers) are fixed, taken once from a shape-only trace of ``make_model`` (no
        weights are computed) and must not depend on the key.

        Example:
            >>> import jax, jax.numpy as jnp
            >>> def make_model(key):
            ...     return {"w": jax.random.normal(key, (2,)), "act": jnp.tanh}
            >>> problem = Problem.from_model(
            ...     make_model, lambda m, ex: (m["act"](ex["x"] @ m["w"]) - ex["y"]) ** 2)
            >>> params = problem.init(jax.random.key(0))
            >>> sorted(params), params["act"] is None, problem.assemble(params)["act"] is jnp.tanh
            (['act', 'w'], True, True)
        """
        return _model_problem(make_model, loss, metrics, name, trained or _is_float_array)

    @classmethod
    def from_equinox(
        cls,
        make_model: Callable[[jax.Array], Any],
        loss: Callable[[Any, PyTree], jax.Array],
        metrics: Callable[[Any, PyTree], dict[str, jax.Array]] | None = None,
        name: str = "equinox",
    ) -> Problem:
        """A problem from ``make_model(key) -> eqx.Module`` and ``loss(model, example)``:
        ``from_model`` with ``eqx.is_inexact_array`` choosing the trained leaves.

        Example: ``Problem.from_equinox(lambda key: eqx.nn.MLP(8, 3, 16, 1, key=key),
        lambda model, ex: optax.softmax_cross_entropy_with_integer_labels(model(ex["x"]),
        ex["y"]))``; examples/equinox_mlp.py runs it.
        """
        eqx = optional_import("equinox", extra="equinox", feature="Problem.from_equinox")
        return _model_problem(make_model, loss, metrics, name, eqx.is_inexact_array)

    @classmethod
    def from_flax(
        cls,
        module: Any,
        loss: Callable[[Any, PyTree], jax.Array],
        metrics: Callable[[Any, PyTree], dict[str, jax.Array]] | None = None,
        name: str = "flax",
        *,
        inputs: tuple[Any, ...] = (),
    ) -> Problem:
        """A problem from a Flax module and ``loss(model, example)``, ``model(x)`` running it.

        Args:
            module: a linen ``nn.Module`` (its ``"params"`` collection, from
                ``module.init(key, *inputs)``, is trained; ``model`` calls
                ``module.apply``); an ``nnx.Module`` (its ``nnx.Param`` state is trained,
                every seed starting from its current weights); or a function
                ``rngs -> nnx.Module`` (each seed's weights from ``nnx.Rngs(key)``). NNX
                modules go through ``nnx.split`` / ``nnx.merge`` as the Flax docs
                recommend at JAX transform boundaries; state other than ``nnx.Param``
                (batch statistics, RNG streams) is not supported.
            inputs: example inputs for linen's ``init`` (one example, no batch axis).

        examples/flax_mlp.py runs both APIs.
        """
        linen = optional_import("flax.linen", extra="flax", feature="Problem.from_flax")
        nnx = optional_import("flax.nnx", extra="flax", feature="Problem.from_flax")
        if isinstance(module, linen.Module):
            if not inputs:
                raise InputError(
                    f"Problem.from_flax(module={type(module).__name__}(...)): a linen module "
                    "needs inputs=(x,), one example's inputs, to initialise its parameters"
                )

            def make_linen(key):
                variables = module.init(key, *inputs)
                if set(variables) != {"params"}:
                    raise InputError(
                        f"Problem.from_flax: the linen module has collections "
                        f"{sorted(variables)}; only 'params' is supported (no batch_stats)"
                    )
                return variables["params"]

            def view(params):
                return functools.partial(module.apply, {"params": params})

            return _model_problem(make_linen, loss, metrics, name, _is_float_array, view)
        if isinstance(module, nnx.Module) or callable(module):

            def make_nnx(key):
                model = module if isinstance(module, nnx.Module) else module(nnx.Rngs(key))
                graphdef, params, rest = nnx.split(model, nnx.Param, ...)
                if jax.tree.leaves(rest):
                    raise InputError(
                        f"Problem.from_flax: the NNX module has state besides nnx.Param "
                        f"({rest}); only parameters are supported: build it without batch "
                        "statistics or stored RNG streams"
                    )
                return graphdef, params

            def view(model):
                return nnx.merge(*model)

            return _model_problem(make_nnx, loss, metrics, name, _is_float_array, view)
        raise InputError(
            f"Problem.from_flax(module={module!r}): expected a flax.linen.Module, an "
            "nnx.Module or a function rngs -> nnx.Module"
        )


def param_shapes(problem: Problem) -> PyTree:
    """``problem.init``'s parameters as ``jax.ShapeDtypeStruct`` leaves, traced with
    ``jax.eval_shape``; the key is made inside the trace (an eager ``jax.random.key``
    compiles a program: 0.2 s, once a process)."""
    return jax.eval_shape(lambda: problem.init(jax.random.key(0)))


def _is_float_array(leaf: Any) -> bool:
    """Trained by default: JAX or NumPy arrays of a floating (or complex) dtype."""
    return isinstance(leaf, (jax.Array, np.ndarray)) and jnp.issubdtype(leaf.dtype, jnp.inexact)


def _model_problem(make_model, loss, metrics, name, trained, view=lambda model: model) -> Problem:
    """``from_model`` with ``view(model)`` being what the loss and metrics see."""
    fixed = {}

    def trace(key):
        leaves, treedef = jax.tree.flatten(make_model(key))
        for index, leaf in enumerate(leaves):
            if not trained(leaf) and isinstance(leaf, jax.core.Tracer):
                raise InputError(
                    f"Problem.from_model: leaf {index} of the model ({leaf.aval}) is an array "
                    "that is not trained but is computed in make_model; a fixed leaf must not "
                    "depend on the key (make it a NumPy array, or a float array to train it)"
                )
        fixed["treedef"] = treedef
        fixed["leaves"] = [None if trained(leaf) else leaf for leaf in leaves]
        return [leaf for leaf in leaves if trained(leaf)]

    jax.eval_shape(trace, jax.random.key(0))
    treedef, fixed_leaves = fixed["treedef"], fixed["leaves"]

    def init(key):
        leaves, structure = jax.tree.flatten(make_model(key))
        if structure != treedef:
            raise InputError(
                "Problem.from_model: make_model returned models of different structures for "
                "different keys; the structure must not depend on the key"
            )
        return jax.tree.unflatten(treedef, [leaf if trained(leaf) else None for leaf in leaves])

    def assemble(params):
        leaves = jax.tree.leaves(params, is_leaf=lambda leaf: leaf is None)
        merged = [f if p is None else p for p, f in zip(leaves, fixed_leaves)]
        return view(jax.tree.unflatten(treedef, merged))

    def model_loss(params, example):
        return loss(assemble(params), example)

    def model_metrics(params, example):
        return metrics(assemble(params), example)

    return Problem(init, model_loss, model_metrics if metrics else None, name, assemble=assemble)


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
