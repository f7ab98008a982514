"""Stochastic (batch 1), mini-batch (32) and full-batch (N) gradient descent, one sweep.

Linear regression on N = 200 points, learning rate 0.1, 20 epochs each: every config
sees the same 4000 examples, but batch 1 takes 200 updates per epoch, batch 32 takes 7
(the last one over 8 examples) and full batch takes 1. Full batch takes clean but few
steps and is still far from the solution; batch 1 takes many noisy steps and, at a
constant learning rate, keeps bouncing around the solution; batch 32 does best here.
"""

import numpy as np

import jaxgd

N = 200
problem, data = jaxgd.problems.linear_regression(num_examples=N, seed=42)
exact = jaxgd.problems.least_squares(data)
result = jaxgd.sweep(
    problem,
    data,
    space=jaxgd.grid(learning_rate=0.1, batch_size=[1, 32, N], seed=0),
    epochs=20,
    validation=None,
    return_params=True,
)

print(f"least squares: b = {exact['b']:.3f}  w = {exact['w'][0]:.3f}")
names = {1: "SGD (batch 1)", 32: "mini-batch 32", N: f"full batch {N}"}
for i, config in enumerate(result.configs):
    b, w = float(result.params["b"][i]), float(result.params["w"][i, 0])
    distance = np.hypot(b - exact["b"], w - exact["w"][0])
    print(
        f"{names[config['batch_size']]:>15}: {int(result.updates[i]):5d} updates, "
        f"{int(result.examples_seen[i])} examples seen, b = {b:.3f}  w = {w:.3f}, "
        f"distance to least squares {distance:.3f}, "
        f"last epoch's mean loss {result.history['train_loss'][i, -1]:.3f}"
    )
