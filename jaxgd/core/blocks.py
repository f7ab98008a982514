"""The CPU config-block rule: run the configs sharing a batch in cache-sized blocks.

At large batch x configs the activations of all configs overflow the CPU's caches;
``lax.map`` over blocks of configs that fit runs faster (benchmarks/config_blocks.py).
Accelerators want the widest vmap, so the rule blocks on the CPU only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.extend

from ..problem import Problem, param_shapes

__all__ = ["Footprint", "footprint", "default_config_block", "vmap_configs"]

PyTree = Any


def vmap_configs(step: Callable, config_block: int | None = None) -> Callable:
    """``step(state, batch, mask)`` over states ``[U, M]``: the outer axis over seeds
    (each with its own batch), the inner over the configs sharing that batch.

    With ``config_block``, the inner axis runs in blocks of that many configs
    (``lax.map``) instead of all at once: at large batch x configs the activations of all
    configs overflow the CPU's caches, and blocks that fit run faster (see
    ``default_config_block``).
    """
    if config_block is None:
        return jax.vmap(jax.vmap(step, in_axes=(0, None, None)), in_axes=(0, 0, 0))

    def per_seed(states, batch, mask):
        return jax.lax.map(lambda s: step(s, batch, mask), states, batch_size=config_block)

    return jax.vmap(per_seed, in_axes=(0, 0, 0))


# Config blocks on the CPU (benchmarks/config_blocks.py, 2-core Zen 5, MLP and digits CNN):
# blocks pay once one config's activations per step reach 2^16 floats and 8x its
# parameters (below that, passes over the [K, P] parameters and optimizer state, which
# blocks do not shrink, dominate); the best blocks hold about 2^21 floats (8 MiB).
_BLOCK_FROM_FLOATS = 2**16
_BLOCK_FROM_PARAMETER_MULTIPLE = 8
_BLOCK_FLOATS = 2**21


class Footprint(NamedTuple):
    """Floats per config: computed from one example by the loss, and in the parameters."""

    activation_floats: int
    parameter_floats: int


def default_config_block(
    batch_size: int, configs_per_seed: int, backend: str, footprint: Footprint | None
) -> int | None:
    """Configs per block on the CPU, so that a block's activations stay in cache.

    With ``a = batch_size x footprint.activation_floats`` (one config's activations per
    step): None (all configs in one vmap) on accelerators, which want the widest vmap
    (``sweep`` measures no footprint there and passes None); None when ``a < 2^16`` or
    ``a < 8 x footprint.parameter_floats``; else the power of two nearest below
    ``2^21 / a``, at least 1 (benchmarks/README.md has the measurements).
    """
    if backend != "cpu" or footprint is None:
        return None
    per_config = batch_size * footprint.activation_floats
    if (
        per_config < _BLOCK_FROM_FLOATS
        or per_config < _BLOCK_FROM_PARAMETER_MULTIPLE * footprint.parameter_floats
    ):
        return None
    block = 2 ** int(math.log2(max(1, _BLOCK_FLOATS // per_config)))
    return block if block < configs_per_seed else None


def footprint(problem: Problem, example: PyTree) -> Footprint:
    """The problem's ``Footprint``. Activations: the sizes of every value in the loss's
    jaxpr that depends on the example (values of the parameters alone, such as a
    reshaped kernel, are shared by the batch and not counted).

    ``example`` is one example without the batch axis; arrays or ``ShapeDtypeStruct``.
    """
    params = param_shapes(problem)
    jaxpr = jax.make_jaxpr(problem.loss)(params, example).jaxpr
    dependent = set(jaxpr.invars[len(jax.tree.leaves(params)) :])
    activations = 0
    for eqn in jaxpr.eqns:
        inputs = [v for v in eqn.invars if not isinstance(v, jax.extend.core.Literal)]
        if any(v in dependent for v in inputs):
            dependent.update(eqn.outvars)
            activations += sum(math.prod(v.aval.shape) for v in eqn.outvars)
    parameters = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))
    return Footprint(activations, parameters)
