"""The gradient noise scale: per-example and two-batch estimators, their running
averages, and AdaScale's gain.

For a loss L(θ) = E ℓ(θ, x) with true gradient G and per-example covariance Σ, a batch of
B independent examples has E|g_B|² = |G|² + tr Σ / B, and the *simple noise scale*

    B_simple = tr Σ / |G|²

is the batch size at which the gradient's noise and its signal are equal: McCandlish et
al. predict the critical batch size (beyond it, doubling the batch no longer halves the
steps) to be about B_simple.

References:
    McCandlish, Kaplan, Amodei et al. (2018), "An Empirical Model of Large-Batch
    Training", arXiv:1812.06162.
    Johnson, Agrawal, Gu, Guestrin (2020), "AdaScale SGD: A User-Friendly Algorithm for
    Distributed Training", arXiv:2007.05105.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from ..core.step import two_batch_estimate
from ..data import num_examples
from ..errors import InputError
from ..problem import Problem, per_example_gradients

__all__ = [
    "NoiseScale",
    "gradient_noise",
    "two_batch_estimate",
    "ema",
    "noise_scale_ema",
    "adascale_gain",
]

PyTree = Any


class NoiseScale(NamedTuple):
    """|G|², tr Σ and their ratio B_simple = tr Σ / |G|²."""

    grad_sq_norm: float
    grad_trace: float
    b_simple: float


@functools.partial(jax.jit, static_argnums=0)
def _flat_gradients(loss, params, batch):
    grads = per_example_gradients(loss, params, batch)
    return jax.vmap(lambda g: ravel_pytree(g)[0])(grads)


def gradient_noise(
    problem: Problem, params: PyTree, data: PyTree, batch_size: int | None = None
) -> NoiseScale:
    """|G|², tr Σ and B_simple of ``params`` on all of ``data``, from per-example gradients.

        ḡ = Σ_i g_i / N,    tr Σ̂ = Σ_i ||g_i − ḡ||² / (N − 1),    |G|² ≈ ||ḡ||² − tr Σ̂ / N

    both unbiased; one pass over the data in batches of ``batch_size`` (default: all),
    each batch's mean and scatter merged into the running ones in float64 (Chan, Golub,
    LeVeque 1979), so no cancellation of Σ||g_i||² against N||ḡ||². The gradients are
    computed in the parameters' dtype (float64 under ``jax_enable_x64``).

    Args:
        problem: the model and per-example loss.
        params: the parameters at which to measure.
        data: a pytree of arrays with a leading example axis, at least 2 examples.
        batch_size: examples per pass of per-example gradients (memory: batch x params).

    Returns:
        ``NoiseScale(grad_sq_norm, grad_trace, b_simple)``.

    Example:
        >>> import jax.numpy as jnp
        >>> problem = Problem(init=None, loss=lambda w, ex: 0.5 * (ex["x"] @ w - ex["y"]) ** 2)
        >>> data = {"x": jnp.ones((3, 1)), "y": jnp.array([1.0, 2.0, 3.0])}
        >>> noise = gradient_noise(problem, jnp.zeros(1), data)  # g_i = -y_i: mean -2, var 1
        >>> [round(value, 4) for value in noise]  # 4 - 1/3, 1, 1 / (4 - 1/3)
        [3.6667, 1.0, 0.2727]

    References:
        McCandlish et al. (2018), arXiv:1812.06162, Appendix A.1.
    """
    count = num_examples(data)
    if count < 2:
        raise InputError(f"data: {count} example(s); the noise scale needs at least 2")
    if batch_size is None:
        batch_size = count
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(
            f"batch_size={batch_size!r}: expected a positive integer (examples per pass), "
            "or None for all at once"
        )
    seen, mean, scatter = 0, None, 0.0
    for start in range(0, count, batch_size):
        span = slice(start, start + batch_size)
        batch = jax.tree.map(lambda leaf, span=span: leaf[span], data)
        grads = np.asarray(_flat_gradients(problem.loss, params, batch), np.float64)
        n = grads.shape[0]
        batch_mean = grads.mean(axis=0)
        batch_scatter = float(np.sum((grads - batch_mean) ** 2))
        if mean is None:
            seen, mean, scatter = n, batch_mean, batch_scatter
            continue
        delta = batch_mean - mean
        total = seen + n
        scatter += batch_scatter + float(delta @ delta) * seen * n / total
        mean = mean + delta * (n / total)
        seen = total
    trace = scatter / (seen - 1)
    g2 = float(mean @ mean) - trace / seen
    return NoiseScale(g2, trace, trace / g2)


def ema(values: Any, decay: float = 0.9) -> np.ndarray:
    """Bias-corrected exponential moving average along the last axis.

        m_t = β m_{t-1} + (1 − β) x_t,  m_0 = 0,    m̂_t = m_t / (1 − β^t)

    so the first value is the first observation (Adam's correction, Kingma & Ba 2015,
    arXiv:1412.6980). NaNs (epochs after a config stopped or diverged) are skipped: t
    counts the finite observations, and m̂ is NaN before the first one.

    Example:
        >>> ema([2.0, 4.0], decay=0.5)  # 2, then (0.25·2 + 0.5·4) / 0.75
        array([2.        , 3.33333333])
    """
    if not 0 <= decay < 1:
        raise InputError(f"decay={decay!r}: expected a number in [0, 1), e.g. 0.9")
    values = np.asarray(values, np.float64)
    average = np.zeros(values.shape[:-1])
    weight = np.zeros(values.shape[:-1])
    out = np.full(values.shape, np.nan)
    for t in range(values.shape[-1]):
        x = values[..., t]
        finite = np.isfinite(x)
        average = np.where(finite, decay * average + (1 - decay) * np.nan_to_num(x), average)
        weight = np.where(finite, decay * weight + (1 - decay), weight)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[..., t] = np.where(weight > 0, average / weight, np.nan)
    return out


def noise_scale_ema(grad_sq_norm: Any, grad_trace: Any, decay: float = 0.9) -> np.ndarray:
    """B_simple smoothed over time: ``ema(grad_trace) / ema(grad_sq_norm)``.

    The ratio of the averages, never the average of the ratios: each |G|² estimate is
    unbiased but noisy, and near zero (even negative) when the noise dominates, so
    per-step ratios tr Σ / |G|² are heavy-tailed and their mean is biased (E[1/X] ≠
    1/E[X]); the two averages each converge to their true values, and so does their
    ratio (McCandlish et al. 2018, Appendix A.1, average the two separately likewise).

    Args:
        grad_sq_norm, grad_trace: ``[..., time]``, e.g. ``result.history["grad_sq_norm"]``.
        decay: β of ``ema``.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        return ema(grad_trace, decay) / ema(grad_sq_norm, decay)


def adascale_gain(sigma2: Any, mu2: Any, scale: Any) -> Any:
    """AdaScale's gain ratio r = (σ² + μ²) / (σ²/S + μ²), in [1, S].

    σ² is the variance (trace of the covariance) of the gradient at the base batch size
    B_0, μ² = |G|², S the scale (batch S·B_0). One step at batch S·B_0 is worth r steps
    at B_0, and AdaScale multiplies the learning rate by r. In noise-scale terms σ² =
    tr Σ / B_0, so with B_simple = tr Σ / |G|²

        r = (1 + B_simple/B_0) / (1 + B_simple/(S B_0)),

    McCandlish's ratio of optimal per-step progress at the two batch sizes: r ≈ S (perfect
    scaling) while S·B_0 ≪ B_simple, and r → 1 + B_simple/B_0 beyond it.

    Example:
        >>> adascale_gain(sigma2=3.0, mu2=1.0, scale=4.0)  # (3 + 1) / (3/4 + 1)
        2.2857142857142856

    References:
        Johnson, Agrawal, Gu, Guestrin (2020), arXiv:2007.05105, eq. (5).
    """
    return (sigma2 + mu2) / (sigma2 / scale + mu2)
