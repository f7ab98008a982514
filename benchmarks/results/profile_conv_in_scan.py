"""A convolution and its weight gradient, jitted alone (a Python loop of calls) and
inside a 13-step lax.scan: XLA's CPU backend takes a slow path for the gradient inside
the loop (jax-ml/jax#12868). Output: profile_conv_in_scan.txt (2-core Zen 5, JAX 0.10.2).

    python benchmarks/results/profile_conv_in_scan.py
"""

import time

import jax
import jax.numpy as jnp

x = jnp.ones((128, 8, 8, 8))
w = jnp.ones((3, 3, 8, 16))
dims = ("NHWC", "HWIO", "NHWC")


def f(x, w):
    return jax.lax.conv_general_dilated(x, w, (2, 2), "SAME", dimension_numbers=dims)


def g(x, w):  # kernel gradient
    return jax.grad(lambda w: jnp.sum(f(x, w) ** 2))(w)


STEPS = 13


def per_call_microseconds(run, repeats=5):
    run()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - start) / repeats / STEPS * 1e6


def timings(name, fn):
    jitted = jax.jit(fn)

    def loop_of_calls():
        result = None
        for _ in range(STEPS):
            result = jitted(x, w)
        jax.block_until_ready(result)

    @jax.jit
    def scanned(x, w):
        def body(carry, _):
            return carry + jnp.sum(fn(x + carry, w)), None

        return jax.lax.scan(body, 0.0, None, length=STEPS)[0]

    print(f"{name} jitted alone: {per_call_microseconds(loop_of_calls):.0f} us")
    in_scan = per_call_microseconds(lambda: scanned(x, w).block_until_ready())
    print(f"{name} inside scan: {in_scan:.0f} us")


timings("forward", f)
timings("weight gradient", g)
