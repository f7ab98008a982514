"""Built-in problems from the classic exercises, each returned as ``(problem, data)``.

- ``linear_regression``: y = 4 + 3x + N(0, 1), x = 2 U(0, 1), fit ŷ = b + w x by
  squared error; ``least_squares`` gives the closed-form solution it approaches.
- ``multiple_regression``: y = X w* + b* + noise with several features.
- ``parabola``: f(x) = x²/6, the classic picture of gradient descent with momentum.
- ``digits_mlp`` / ``digits_cnn``: scikit-learn's bundled 8x8 digits (1797 images,
  10 classes), softmax cross-entropy, accuracy as a metric.
- ``mlp`` + ``synthetic_classification``: an MLP of any widths on Gaussian-blob data,
  the benchmarks' default workload (64-256-10 on 4096 examples).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ._io import optional_import
from .problem import Problem

__all__ = [
    "linear_regression",
    "least_squares",
    "multiple_regression",
    "parabola",
    "mlp",
    "synthetic_classification",
    "load_digits",
    "digits_mlp",
    "digits_cnn",
    "conv2d",
]


def _squared_error(params, example):
    prediction = jnp.dot(example["x"], params["w"]) + params["b"]
    return (prediction - example["y"]) ** 2


def linear_regression(num_examples: int = 20, seed: int = 42) -> tuple[Problem, dict]:
    """y = 4 + 3x + ε, x = 2·U(0, 1), ε ~ N(0, 1); per-example loss (b + w x − y)².

    Example:
        >>> problem, data = linear_regression()
        >>> data["x"].shape, data["y"].shape
        ((20, 1), (20,))
    """
    rng = np.random.default_rng(seed)
    x = 2 * rng.uniform(size=(num_examples, 1))
    y = 4 + 3 * x[:, 0] + rng.normal(size=num_examples)
    problem = Problem(init=_linear_init, loss=_squared_error, name="linear_regression")
    return problem, {"x": x.astype(np.float32), "y": y.astype(np.float32)}


def _linear_init(key):
    w_key, b_key = jax.random.split(key)
    dtype = jnp.result_type(float)
    return {"w": jax.random.normal(w_key, (1,), dtype), "b": jax.random.normal(b_key, (), dtype)}


def least_squares(data: dict) -> dict[str, np.ndarray]:
    """The minimiser of Σ (b + x·w − y)²: solves the normal equations in float64."""
    x = np.asarray(data["x"], np.float64)
    design = np.concatenate([np.ones((x.shape[0], 1)), x], axis=1)
    theta, *_ = np.linalg.lstsq(design, np.asarray(data["y"], np.float64), rcond=None)
    return {"w": theta[1:], "b": theta[0]}


def multiple_regression(
    num_examples: int = 200, num_features: int = 3, noise: float = 0.5, seed: int = 0
) -> tuple[Problem, dict]:
    """y = X w* + b* + noise·N(0, 1) with X ~ N(0, 1)^{n×d}, w* = (1, −2, 3, ...), b* = 4."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_examples, num_features))
    w_true = np.array([(i + 1) * (-1) ** i for i in range(num_features)], np.float64)
    y = x @ w_true + 4.0 + noise * rng.normal(size=num_examples)
    return _zero_init_linear(num_features), {"x": x.astype(np.float32), "y": y.astype(np.float32)}


# Builders of closures are cached: equal arguments give the same Problem, so a second
# sweep of it in the same process reuses the compiled programs.
@functools.cache
def _zero_init_linear(num_features: int) -> Problem:
    def init(key):
        dtype = jnp.result_type(float)
        return {"w": jnp.zeros(num_features, dtype), "b": jnp.zeros((), dtype)}

    return Problem(init=init, loss=_squared_error, name="multiple_regression")


def parabola(x0: float = 3.0) -> tuple[Problem, dict]:
    """f(x) = x²/6 from x = x0. The data is one placeholder example, so batch size 1
    and one step per epoch: epochs count the gradient steps.

    With momentum β and rate η the iterates follow the heavy-ball recurrence
    v ← β v − η x/3, x ← x + v.
    """
    return _parabola(float(x0)), {"placeholder": np.zeros(1, np.float32)}


@functools.cache
def _parabola(x0: float) -> Problem:
    def init(key):
        del key
        return {"x": jnp.asarray(x0, jnp.result_type(float))}

    def loss(params, example):
        del example
        return params["x"] ** 2 / 6

    return Problem(init=init, loss=loss, name="parabola")


def _dense_init(key, fan_in: int, fan_out: int) -> dict[str, jax.Array]:
    """He-normal weights (ReLU networks), zero biases."""
    dtype = jnp.result_type(float)
    scale = math.sqrt(2.0 / fan_in)
    return {
        "w": scale * jax.random.normal(key, (fan_in, fan_out), dtype),
        "b": jnp.zeros(fan_out, dtype),
    }


def _cross_entropy(logits: jax.Array, label: jax.Array) -> jax.Array:
    return jax.nn.logsumexp(logits) - logits[label]


def _accuracy(logits: jax.Array, label: jax.Array) -> jax.Array:
    return (jnp.argmax(logits) == label).astype(logits.dtype)


def mlp(layer_sizes: Sequence[int] = (64, 256, 10), name: str | None = None) -> Problem:
    """A ReLU MLP classifier, softmax cross-entropy, examples ``{"x": [d], "y": label}``."""
    sizes = tuple(int(s) for s in layer_sizes)
    if len(sizes) < 2:
        raise ValueError(f"layer_sizes={layer_sizes!r}: need at least input and output widths")
    return _mlp(sizes, name)


@functools.cache
def _mlp(sizes: tuple[int, ...], name: str | None) -> Problem:

    def init(key):
        keys = jax.random.split(key, len(sizes) - 1)
        return [_dense_init(k, a, b) for k, a, b in zip(keys, sizes[:-1], sizes[1:])]

    def logits(params, x):
        for layer in params[:-1]:
            x = jax.nn.relu(x @ layer["w"] + layer["b"])
        return x @ params[-1]["w"] + params[-1]["b"]

    def loss(params, example):
        return _cross_entropy(logits(params, example["x"]), example["y"])

    def metrics(params, example):
        return {"accuracy": _accuracy(logits(params, example["x"]), example["y"])}

    name = name or "mlp_" + "-".join(map(str, sizes))
    return Problem(init, loss, metrics, name, num_classes=sizes[-1])


def synthetic_classification(
    num_examples: int = 4096, num_features: int = 64, num_classes: int = 10, seed: int = 0
) -> dict[str, np.ndarray]:
    """Gaussian blobs: class means ~ N(0, 1), examples = mean + N(0, 1.5²)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(num_classes, num_features))
    labels = rng.integers(0, num_classes, num_examples)
    x = means[labels] + 1.5 * rng.normal(size=(num_examples, num_features))
    return {"x": x.astype(np.float32), "y": labels.astype(np.int32)}


def load_digits() -> dict[str, np.ndarray]:
    """scikit-learn's bundled 8x8 digits, pixels scaled to [0, 1]: x [1797, 64], y [1797].

    Needs scikit-learn (``pip install 'jaxgd[data]'``); nothing is downloaded.
    """
    optional_import("sklearn", extra="data", feature="jaxgd.problems.load_digits()")
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    return {"x": (digits.data / 16.0).astype(np.float32), "y": digits.target.astype(np.int32)}


def digits_mlp(hidden: Sequence[int] = (64,)) -> tuple[Problem, dict]:
    """An MLP 64-hidden-10 on the 8x8 digits."""
    return mlp((64, *hidden, 10), name="digits_mlp"), load_digits()


def digits_cnn(channels: tuple[int, int] = (8, 16)) -> tuple[Problem, dict]:
    """A small CNN on the 8x8 digits: conv3x3(c1)-relu, conv3x3 stride 2 (c2)-relu,
    dense 10. Examples are flattened 64-pixel images, reshaped inside the model."""
    return _digits_cnn(tuple(int(c) for c in channels)), load_digits()


@functools.cache
def _digits_cnn(channels: tuple[int, int]) -> Problem:
    c1, c2 = channels

    def init(key):
        k1, k2, k3 = jax.random.split(key, 3)
        dtype = jnp.result_type(float)
        return {
            "conv1": math.sqrt(2 / 9) * jax.random.normal(k1, (3, 3, 1, c1), dtype),
            "bias1": jnp.zeros(c1, dtype),
            "conv2": math.sqrt(2 / (9 * c1)) * jax.random.normal(k2, (3, 3, c1, c2), dtype),
            "bias2": jnp.zeros(c2, dtype),
            "dense": _dense_init(k3, 4 * 4 * c2, 10),
        }

    def logits(params, x):
        # Biases [C] are added to every pixel of a [H, W, C] map: broadcast them explicitly.
        h = jax.nn.relu(conv2d(x.reshape(8, 8, 1), params["conv1"]) + params["bias1"][None, None])
        h = jax.nn.relu(conv2d(h, params["conv2"], stride=2) + params["bias2"][None, None])
        h = h.reshape(-1)
        return h @ params["dense"]["w"] + params["dense"]["b"]

    def loss(params, example):
        return _cross_entropy(logits(params, example["x"]), example["y"])

    def metrics(params, example):
        return {"accuracy": _accuracy(logits(params, example["x"]), example["y"])}

    return Problem(init, loss, metrics, "digits_cnn", num_classes=10)


def conv2d(image: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
    """A 2-D convolution of one image ``[H, W, C]`` with ``kernel [kh, kw, C, O]`` and
    "SAME" padding, written as patches times a matrix:

        out[y, x] = Σ_{i,j,c} padded[s·y + i, s·x + j, c] · kernel[i, j, c, :]

    It equals ``lax.conv_general_dilated(..., "SAME")`` with NHWC/HWIO layouts to
    rounding. Why not that: XLA's CPU backend runs a convolution's gradients on a slow
    path when they sit inside a loop (jax-ml/jax#12868), and jaxgd trains inside
    ``lax.scan``; on the digits CNN the weight gradient ran 16x slower there
    (benchmarks/README.md). Slices and a matrix product have fast gradients anywhere,
    and under ``vmap`` over examples and configs they become batched matrix products.
    """
    kh, kw, channels, _ = kernel.shape
    height, width, _ = image.shape
    out_h, out_w = -(-height // stride), -(-width // stride)
    pad_h = max((out_h - 1) * stride + kh - height, 0)
    pad_w = max((out_w - 1) * stride + kw - width, 0)
    padded = jnp.pad(
        image, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0))
    )
    end_h, end_w = (out_h - 1) * stride + 1, (out_w - 1) * stride + 1
    strides = (stride, stride, 1)
    patches = [
        jax.lax.slice(padded, (i, j, 0), (i + end_h, j + end_w, channels), strides)
        for i in range(kh)
        for j in range(kw)
    ]
    return jnp.concatenate(patches, axis=-1) @ kernel.reshape(kh * kw * channels, -1)
