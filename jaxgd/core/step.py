"""The one masked training step, and per-step measurements (probes).

    L_B(θ) = Σ_i m_i ℓ(θ, x_i) / Σ_i m_i,    g = ∇L_B(θ),    θ, s ← update(g, s, θ)

A step returns sums (not means) of what it measured, so that an epoch's mean over its
examples is exact whatever the batch size and however the last batch was padded.

``sweep(measure=[...])`` names the probes (``MEASUREMENTS``): "noise_scale" is
``GradientNoise``, the gradient noise scale's two unbiased statistics per step, which
the norm test of the accumulate strategy computes with the same algebra
(``sample_noise``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import optax

from ..errors import InputError
from ..problem import Problem, example_losses, masked_mean, per_example_gradients
from .state import DEFAULT_DIVERGENCE, TrainState, apply_gradient

__all__ = [
    "StepMetrics",
    "Probe",
    "GradientSquaredNorms",
    "GradientNoise",
    "MEASUREMENTS",
    "NOISE_EXAMPLES",
    "noise_every",
    "measurement_probes",
    "probe_names",
    "two_batch_estimate",
    "sample_noise",
    "grouped_noise",
    "noise_sums",
    "measured_noise",
    "HalfSums",
    "half_sums",
    "train_step",
    "scan_steps",
    "sum_steps",
    "zero_metrics",
]

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

    name = "example_grad_sq_norm"

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


def two_batch_estimate(sq_norm_small, sq_norm_big, b_small, b_big):
    """Unbiased |G|² and tr Σ from squared gradient norms at two batch sizes.

    With E|G_B|² = |G|² + tr Σ / B for the mean gradient of B independent examples:

        |G|² = (B_big |G_big|² − B_small |G_small|²) / (B_big − B_small)
        S    = (|G_small|² − |G_big|²) / (1/B_small − 1/B_big)

    At B_small = 1 (per-example norms) and B_big = n this is the sample variance with
    Bessel's correction, S = Σ||g_i − ḡ||² / (n − 1). Works on NumPy and JAX arrays.

    Args:
        sq_norm_small, sq_norm_big: |G_small|², |G_big|² (or their averages over steps).
        b_small, b_big: the two batch sizes, ``b_small < b_big``.

    Returns:
        ``(g2, trace)``: the estimates of |G|² and tr Σ; B_simple = trace / g2.

    Example:
        >>> two_batch_estimate(5.0, 2.0, 1, 4)  # |G|² = 1, tr Σ = 4 give 5 and 2
        (1.0, 4.0)

    References:
        McCandlish, Kaplan, Amodei et al. (2018), "An Empirical Model of Large-Batch
        Training", arXiv:1812.06162, Appendix A.1.
    """
    g2 = (b_big * sq_norm_big - b_small * sq_norm_small) / (b_big - b_small)
    trace = (sq_norm_small - sq_norm_big) / (1 / b_small - 1 / b_big)
    return g2, trace


def sample_noise(mean_sq, sq_norm_sum, count):
    """``(g2, trace)`` of one batch from its per-example gradients: ``mean_sq`` = ||ḡ||²
    of the mean gradient, ``sq_norm_sum`` = Σ_i ||g_i||², ``count`` = n real examples.

        tr Σ = (Σ_i ||g_i||² − n ||ḡ||²) / (n − 1),    |G|² = ||ḡ||² − tr Σ / n

    ``two_batch_estimate`` at B_small = 1, B_big = n, written so that n = 1 gives 0
    rather than 0/0 (the norm test and ``GradientNoise`` in the accumulate strategy both
    use it).
    """
    trace = (sq_norm_sum - count * mean_sq) / jnp.maximum(count - 1, 1)
    return mean_sq - trace / count, trace


class GradientNoise:
    """The gradient noise scale measured in every step, from the batch's two halves.

    The step computes its gradient as the sums s_a, s_b over two interleaved halves of
    the batch (even and odd positions, n_a + n_b = n real examples; ``half_sums``), which
    costs what the whole batch's gradient costs, and from them (``grouped_noise``, H = 2)

        tr Σ ≈ ||s_a||²/n_a + ||s_b||²/n_b − ||s_a + s_b||²/n,    |G|² ≈ ||ḡ||² − tr Σ / n

    both unbiased: with n_a = n_b = B/2 this is ``two_batch_estimate`` at B_small = B/2,
    B_big = B. The grouped and nested strategies measure the steps of index 0 mod
    ``noise_every(B)`` in each epoch (one in 512 // B, every step from B = 512; the
    measured step's update comes from its halves, the others take the plain gradient;
    ``scan_steps`` lays this out with no branch); a measured step records
    ``noise_every(B) · n · estimate`` under ``grad_sq_norm`` and ``grad_trace``, so the
    epoch's history holds their example-weighted means, and ``b_simple`` =
    Σ tr / Σ |G|², the ratio of the averages (``jaxgd.science``). A batch with fewer than
    two real examples has no estimate and adds nothing (at batch size 1: NaN). The
    accumulate strategy measures one micro-step in ``noise_every(m)`` (micro-batch m) the
    same way, from that micro-batch's halves; from m = 512 it sums the groups of all
    micro-batches of a config's batch, and with the norm test it uses the per-example
    gradients the test computes on every micro-step anyway.

    References:
        McCandlish, Kaplan, Amodei et al. (2018), arXiv:1812.06162, Appendix A.1.
    """

    names = ("grad_sq_norm", "grad_trace")

    def __eq__(self, other):
        return type(other) is type(self)

    def __hash__(self):
        return hash(type(self))


# Steps measured. A measured step takes the gradient as its two halves' (the same FLOPs),
# but writes two parameter-sized gradients per config where the plain step's one fuses
# into the update: a near-constant cost per step, 2x at B = 64 on the CPU, 1.2-1.3x from
# B = 256 (benchmarks/README.md, "What measure=["noise_scale"] costs"). One step in
# NOISE_EXAMPLES // B measures (about once per 512 examples, every step from B = 512),
# amortising that cost over the plain steps between.
NOISE_EXAMPLES = 512


def noise_every(batch_size: int) -> int:
    """Measure the noise scale on one step in ``noise_every(B)`` = max(1, 512 // B)."""
    return max(1, NOISE_EXAMPLES // int(batch_size))


MEASUREMENTS: dict[str, tuple[Any, ...]] = {"noise_scale": (GradientNoise(),)}
"""What ``sweep(measure=[...])`` accepts, and the probes each name adds."""


def measurement_probes(measure: Sequence[str]) -> tuple[Any, ...]:
    """The probes for ``sweep(measure=...)``; refuses unknown names."""
    if isinstance(measure, str) or not all(isinstance(name, str) for name in measure):
        raise InputError(
            f"measure={measure!r}: expected a list of names from {sorted(MEASUREMENTS)}, "
            'e.g. measure=["noise_scale"]'
        )
    unknown = [name for name in measure if name not in MEASUREMENTS]
    if unknown:
        raise InputError(
            f"measure={list(measure)!r}: unknown {unknown}; choose from {sorted(MEASUREMENTS)}"
        )
    probes = dict.fromkeys(p for name in measure for p in MEASUREMENTS[name])
    return tuple(probes)


def probe_names(probe: Any) -> tuple[str, ...]:
    """The history entries a probe fills."""
    return tuple(getattr(probe, "names", (getattr(probe, "name", None),)))


def zero_metrics(shape: tuple[int, ...], probes: Sequence[Probe] = ()) -> StepMetrics:
    """Sums of zero with leading axes ``shape``: the start of an epoch's accumulation."""
    zero = jnp.zeros(shape, jnp.result_type(float))
    return StepMetrics(zero, zero, {name: zero for probe in probes for name in probe_names(probe)})


def _halves(tree: PyTree) -> PyTree:
    """``[B, ...]`` leaves to ``[2, ⌈B/2⌉, ...]``: even positions, then odd ones (an odd
    batch is padded with its first example, masked out by the caller)."""

    def split(leaf):
        if leaf.shape[0] % 2:
            leaf = jnp.concatenate([leaf, leaf[:1]])
        return jnp.swapaxes(leaf.reshape(leaf.shape[0] // 2, 2, *leaf.shape[1:]), 0, 1)

    return jax.tree.map(split, tree)


class HalfSums(NamedTuple):
    """A batch's sums over its two interleaved halves (``half_sums``).

    Attributes:
        loss_sum: Σ m_i ℓ_i over the batch; ``grad_sum``: Σ m_i ∇ℓ_i; ``count``: Σ m_i.
        group_sq: Σ_h ||s_h||² / n_h over the non-empty halves h (s_h: the half's gradient
            sum, n_h its real examples); ``groups``: how many halves are non-empty.
    """

    loss_sum: jax.Array
    grad_sum: PyTree
    count: jax.Array
    group_sq: jax.Array
    groups: jax.Array


def half_sums(problem: Problem, params: PyTree, batch: PyTree, mask: jax.Array) -> HalfSums:
    """The batch's loss and gradient sums computed as those of its two halves (even and
    odd positions: a partial batch's real examples split evenly), what ``grouped_noise``
    needs besides. Costs what the batch's gradient costs, in two half-size pieces."""
    if mask.shape[0] % 2:
        mask = jnp.concatenate([mask, jnp.zeros((1,), bool)])
    half_batch, half_mask = _halves(batch), _halves(mask)

    def masked_sum(params, batch, mask):
        losses = example_losses(problem.loss, params, batch)
        return jnp.sum(jnp.where(mask, losses, 0))

    loss_sums, grad_sums = jax.vmap(jax.value_and_grad(masked_sum), in_axes=(None, 0, 0))(
        params, half_batch, half_mask
    )
    counts = jnp.sum(half_mask.astype(loss_sums.dtype), axis=1)
    sq = sum(jnp.sum(g.reshape(2, -1) ** 2, axis=1) for g in jax.tree.leaves(grad_sums))
    group_sq = jnp.sum(jnp.where(counts > 0, sq / jnp.maximum(counts, 1), 0))
    return HalfSums(
        loss_sum=loss_sums[0] + loss_sums[1],
        grad_sum=jax.tree.map(lambda g: g[0] + g[1], grad_sums),
        count=counts[0] + counts[1],
        group_sq=group_sq,
        groups=jnp.sum((counts > 0).astype(counts.dtype)),
    )


def grouped_noise(group_sq, groups, mean_sq, count):
    """``(g2, trace)`` of a batch of n examples split into H disjoint groups.

        tr Σ = (Σ_h ||s_h||² / n_h − n ||ḡ||²) / (H − 1),    |G|² = ||ḡ||² − tr Σ / n

    (s_h: a group's gradient sum, ḡ the batch's mean gradient) are unbiased, since
    E ||s_h||²/n_h = n_h |G|² + tr Σ. Per-example groups (H = n) give ``sample_noise``;
    two halves of B/2 give ``two_batch_estimate`` at B_small = B/2, B_big = B. None when
    H < 2 (returned as 0 / 1: callers mask it).
    """
    trace = (group_sq - count * mean_sq) / jnp.maximum(groups - 1, 1)
    return mean_sq - trace / count, trace


def noise_sums(g2, trace, count, groups, single):
    """``GradientNoise``'s per-step sums: ``count·g2`` and ``count·trace`` where the batch
    had two groups, 0 where not, NaN where ``single`` (batch size 1: never two)."""
    zero = jnp.zeros_like(count)
    weight = jnp.where(groups >= 2, count, zero)
    weight = jnp.where(single, jnp.full_like(weight, jnp.nan), weight)
    return {"grad_sq_norm": weight * g2, "grad_trace": weight * trace}


def measured_noise(sums: HalfSums, *, noise_every: int = 1, single: bool = False):
    """``GradientNoise``'s sums for one measured batch from its ``half_sums``, weighted by
    ``noise_every`` = k when one batch in k is measured (so the epoch's sums stay unbiased
    estimates of Σ_batches n·|G|² and n·tr Σ); ``single``: batch size 1 (NaN)."""
    safe = jnp.maximum(sums.count, jnp.ones_like(sums.count))
    mean_sq = sum(jnp.sum((g / safe) ** 2) for g in jax.tree.leaves(sums.grad_sum))
    g2, trace = grouped_noise(sums.group_sq, sums.groups, mean_sq, sums.count)
    found = noise_sums(g2, trace, sums.count, sums.groups, single)
    return found if noise_every == 1 else {k: noise_every * v for k, v in found.items()}


def train_step(
    state: TrainState,
    batch: PyTree,
    mask: jax.Array,
    *,
    problem: Problem,
    tx: optax.GradientTransformation,
    probes: Sequence[Probe] = (),
    noise_every: int = 1,
    measure_now: jax.Array | bool = True,
    divergence: float = DEFAULT_DIVERGENCE,
    batch_size: int | None = None,
) -> tuple[TrainState, StepMetrics]:
    """One mini-batch update: g = ∇ [Σ m_i ℓ(θ, x_i) / Σ m_i], then the optimizer's update.

    Returns the new state and the batch's sums measured *before* the update, from which
    the epoch's mean training loss is the usual running average. With a ``GradientNoise``
    probe, a step that measures (``measure_now``) sums its gradient over the batch's two
    halves (the same arithmetic up to float summation order) and records its noise sums
    weighted by ``noise_every`` = k, one step in k measuring; a step that does not takes
    the plain gradient and records 0. ``measure_now`` is a Python bool where the caller
    knows statically which steps measure (``scan_steps``); an array (a scalar the same
    for all configs, so a real branch) puts the halves' gradient, computed besides the
    plain one, under a ``lax.cond``, which costs more. ``batch_size``: the batch's width
    before it was padded with masked examples for an example-split mesh (default: the
    mask's), which decides whether the noise can be measured at all (not at 1).
    """

    noise = any(isinstance(probe, GradientNoise) for probe in probes)
    measured = {}
    single = (mask.shape[0] if batch_size is None else batch_size) < 2
    if noise and measure_now is True:  # the halves give the update too
        sums = half_sums(problem, state.params, batch, mask)
        safe = jnp.maximum(sums.count, jnp.ones_like(sums.count))
        grads = jax.tree.map(lambda g: g / safe, sums.grad_sum)
        loss, loss_sum = sums.loss_sum / safe, sums.loss_sum
        measured = measured_noise(sums, noise_every=noise_every, single=single)
    else:

        def loss_and_sum(params):
            losses = example_losses(problem.loss, params, batch)
            return masked_mean(losses, mask), jnp.sum(jnp.where(mask, losses, 0))

        (loss, loss_sum), grads = jax.value_and_grad(loss_and_sum, has_aux=True)(state.params)

        def skip():
            return dict.fromkeys(GradientNoise.names, jnp.zeros_like(loss_sum))

        if noise and measure_now is False:
            measured = skip()
        elif noise:  # decided at run time: the halves' gradient besides, under a cond

            def measure():
                sums = half_sums(problem, state.params, batch, mask)
                return measured_noise(sums, noise_every=noise_every, single=single)

            measured = jax.lax.cond(measure_now, measure, skip)
    count = jnp.sum(mask.astype(loss.dtype))
    for probe in probes:
        if not isinstance(probe, GradientNoise):
            measured[probe.name] = probe(problem, state.params, batch, mask)
    return apply_gradient(state, grads, loss, tx, divergence=divergence), StepMetrics(
        loss_sum, count, measured
    )


def _total(metrics: PyTree) -> PyTree:
    return jax.tree.map(lambda m: m.sum(0), metrics)


def scan_steps(step, carry, xs, *, noise_every: int = 1, first: int = 0, stacked: bool = False):
    """``lax.scan`` of ``step(carry, x, measure_now)`` over the leading axis of ``xs``,
    where step i measures (a static ``measure_now=True``) iff (first + i) % noise_every
    == 0, and the others get ``measure_now=False``.

    The steps run as a static structure, with no branch: the plain steps before the first
    measuring one, then groups of ``noise_every`` steps (one measuring, then a scan of
    plain ones), then the rest. A ``lax.cond`` in every step instead cost 1.3-1.4x the
    plain step at B = 64 to 128 on the CPU (it copied the parameters into its operands on
    every step), where this costs 1.1-1.2x (benchmarks/README.md, "What
    measure=["noise_scale"] costs").

    Returns:
        ``(carry, sums)``: the final carry and the sums of the steps' outputs, or with
        ``stacked=True`` ``(carry, outputs)``, every step's outputs along a leading axis,
        which ``sum_steps`` sums as the unstacked scan does.
    """
    length = jax.tree.leaves(xs)[0].shape[0]

    def measuring(carry, x):
        return step(carry, x, True)

    def plain(carry, x):
        return step(carry, x, False)

    def part(start, stop):
        return jax.tree.map(lambda a: a[start:stop], xs)

    if noise_every == 1:
        carry, outputs = jax.lax.scan(measuring, carry, xs)
        return carry, outputs if stacked else _total(outputs)

    def run(carry, xs):  # the first step of xs measures, the others do not
        carry, output = measuring(carry, jax.tree.map(lambda a: a[0], xs))
        if jax.tree.leaves(xs)[0].shape[0] == 1:
            return carry, jax.tree.map(lambda a: a[None], output) if stacked else output
        carry, more = jax.lax.scan(plain, carry, jax.tree.map(lambda a: a[1:], xs))
        if stacked:
            return carry, _concatenate([jax.tree.map(lambda a: a[None], output), more])
        return carry, jax.tree.map(jnp.add, output, _total(more))

    lead, groups, rest = _step_parts(length, noise_every, first)
    parts = []
    if lead:
        carry, outputs = jax.lax.scan(plain, carry, part(0, lead))
        parts.append(outputs if stacked else _total(outputs))
    if groups:
        stop = lead + groups * noise_every
        grouped_xs = jax.tree.map(
            lambda a: a.reshape(groups, noise_every, *a.shape[1:]), part(lead, stop)
        )
        carry, outputs = jax.lax.scan(run, carry, grouped_xs)
        if stacked:
            parts.append(jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), outputs))
        else:
            parts.append(_total(outputs))
    if rest:
        carry, outputs = run(carry, part(length - rest, length))
        parts.append(outputs)
    if stacked:
        return carry, _concatenate(parts)
    return carry, functools.reduce(lambda a, b: jax.tree.map(jnp.add, a, b), parts)


def sum_steps(outputs, *, noise_every: int = 1, first: int = 0):
    """The sums of ``scan_steps(..., stacked=True)``'s outputs, added in the order the
    unstacked ``scan_steps`` adds them, so that the two agree bitwise (data streamed in
    windows sums its epoch as data on the device does: ``strategies.streamed``)."""
    if noise_every == 1:
        return _total(outputs)
    length = jax.tree.leaves(outputs)[0].shape[0]
    lead, groups, rest = _step_parts(length, noise_every, first)

    def part(start, stop):
        return jax.tree.map(lambda a: a[start:stop], outputs)

    parts = []
    if lead:
        parts.append(_total(part(0, lead)))
    if groups:
        stop = lead + groups * noise_every
        grouped = jax.tree.map(
            lambda a: a.reshape(groups, noise_every, *a.shape[1:]), part(lead, stop)
        )
        parts.append(_total(jax.vmap(_sum_group)(grouped)))
    if rest:
        parts.append(_sum_group(part(length - rest, length)))
    return functools.reduce(lambda a, b: jax.tree.map(jnp.add, a, b), parts)


def _step_parts(length: int, noise_every: int, first: int) -> tuple[int, int, int]:
    """``(lead, groups, rest)``: the plain steps before the first measuring one, the
    whole groups of ``noise_every`` steps, and the steps of the last, partial group."""
    lead = min((-first) % noise_every, length)
    groups, rest = divmod(length - lead, noise_every)
    return lead, groups, rest


def _sum_group(outputs: PyTree) -> PyTree:
    """A group's sum: its measuring step's outputs plus the sum of the plain ones'."""
    sums = jax.tree.map(lambda a: a[0], outputs)
    if jax.tree.leaves(outputs)[0].shape[0] > 1:
        sums = jax.tree.map(jnp.add, sums, _total(jax.tree.map(lambda a: a[1:], outputs)))
    return sums


def _concatenate(parts: list[PyTree]) -> PyTree:
    return jax.tree.map(lambda *leaves: jnp.concatenate(leaves), *parts)
