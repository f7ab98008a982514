"""Built-in problems: the patches-times-matrix convolution equals XLA's convolution."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgd
from jaxgd.problems import conv2d


def lax_conv(image, kernel, stride):
    dims = ("NHWC", "HWIO", "NHWC")
    out = jax.lax.conv_general_dilated(
        image[None], kernel, (stride, stride), "SAME", dimension_numbers=dims
    )
    return out[0]


@pytest.mark.parametrize(
    "image_shape,kernel_shape,stride",
    [
        ((8, 8, 1), (3, 3, 1, 8), 1),
        ((8, 8, 8), (3, 3, 8, 16), 2),
        ((7, 9, 3), (5, 3, 3, 4), 2),  # odd sizes: SAME pads unevenly
        ((10, 10, 2), (3, 3, 2, 5), 3),
        ((6, 6, 4), (1, 1, 4, 2), 1),
    ],
)
def test_conv2d_equals_lax_conv_in_value_and_gradients(x64, image_shape, kernel_shape, stride):
    image = jax.random.normal(jax.random.key(0), image_shape)
    kernel = jax.random.normal(jax.random.key(1), kernel_shape)
    # Under jit, as jaxgd runs it: one compile each, where op-by-op dispatch compiled
    # every slice and its transpose on its own (about a second per case).
    ours, reference = (jax.jit(conv, static_argnums=2) for conv in (conv2d, lax_conv))
    np.testing.assert_allclose(
        ours(image, kernel, stride), reference(image, kernel, stride), rtol=1e-12, atol=1e-12
    )

    def loss(conv, image, kernel):
        return jnp.sum(jnp.sin(conv(image, kernel, stride)))

    ours = jax.jit(jax.grad(functools.partial(loss, conv2d), argnums=(0, 1)))(image, kernel)
    reference = jax.grad(functools.partial(loss, lax_conv), argnums=(0, 1))(image, kernel)
    for got, want in zip(ours, reference, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_digits_cnn_training_program_has_no_convolution():
    # XLA's CPU convolutions inside loops take a slow path (jax-ml/jax#12868); the digits
    # CNN's training program must be made of slices and matrix products instead.
    problem, data = jaxgd.problems.digits_cnn()
    small = {name: values[:64] for name, values in data.items()}
    result = jaxgd.sweep(
        problem,
        small,
        space=jaxgd.grid(learning_rate=[0.1, 0.01]),
        batch_size=16,
        epochs=1,
        validation=None,
    )
    (program,) = result.compiled
    assert "convolution(" not in program.as_text()
