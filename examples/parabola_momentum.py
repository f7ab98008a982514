"""Gradient descent with momentum on the parabola f(x) = x²/6, from x = 3.

With learning rate η and momentum β the iterates follow the heavy-ball recurrence
(optax's form: a trace of gradients)

    t ← β t + f'(x),   x ← x − η t,   f'(x) = x / 3.

The script runs three momenta in one sweep and checks every step against that
recurrence written out by hand in NumPy.
"""

import numpy as np

import jaxgd

LEARNING_RATE, STEPS, X0 = 0.3, 60, 3.0
MOMENTA = [0.0, 0.5, 0.9]


def heavy_ball(momentum: float) -> np.ndarray:
    """x_0 ... x_STEPS of the recurrence, in float64."""
    x, trace, path = X0, 0.0, [X0]
    for _ in range(STEPS):
        trace = momentum * trace + x / 3
        x = x - LEARNING_RATE * trace
        path.append(x)
    return np.array(path)


problem, data = jaxgd.problems.parabola(x0=X0)
# One placeholder example and batch size 1: every epoch is exactly one gradient step.
result = jaxgd.sweep(
    problem,
    data,
    space=jaxgd.grid(learning_rate=LEARNING_RATE, momentum=MOMENTA),
    batch_size=1,
    epochs=STEPS,
    options=jaxgd.SweepOptions(epochs_per_chunk=STEPS),
    validation=None,
    return_params=True,
)

print(f"f(x) = x²/6 from x = {X0}, learning rate {LEARNING_RATE}, {STEPS} steps")
for i, momentum in enumerate(MOMENTA):
    path = heavy_ball(momentum)
    # train_loss of epoch k is f(x_k), the loss before the k-th update.
    np.testing.assert_allclose(
        result.history["train_loss"][i], path[:-1] ** 2 / 6, rtol=1e-4, atol=1e-7
    )
    np.testing.assert_allclose(result.params["x"][i], path[-1], rtol=1e-4, atol=1e-6)
    above = np.flatnonzero(np.abs(path) >= 1e-2)
    settled = f"from step {above[-1] + 1} on" if above[-1] < STEPS else "not yet"
    print(
        f"momentum {momentum:<3}: x_{STEPS} = {float(result.params['x'][i]): .3e} "
        f"(by hand {path[-1]: .3e}); |x| < 0.01 {settled}"
    )
print("jaxgd matches the heavy-ball recurrence at every step")
