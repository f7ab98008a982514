"""Linear regression by mini-batch SGD: y = 4 + 3x + N(0, 1), x = 2 U(0, 1), 20 points.

The classic exercise: learning rate 0.1, batch size 10 (2 updates per epoch), 10 epochs,
seeded. SGD's (b, w) move towards the least-squares solution of the normal equations;
more epochs bring them closer.
"""

import numpy as np

import jaxgd

problem, data = jaxgd.problems.linear_regression(num_examples=20, seed=42)
exact = jaxgd.problems.least_squares(data)
x, y = data["x"][:, 0].astype(np.float64), data["y"].astype(np.float64)

print(f"least squares:    b = {exact['b']:.4f}  w = {exact['w'][0]:.4f}")
for epochs in (10, 200):
    result = jaxgd.sweep(
        problem,
        data,
        space=jaxgd.grid(learning_rate=0.1, seed=0),
        batch_size=10,
        epochs=epochs,
        validation=None,
        return_params=True,
    )
    b, w = float(result.params["b"][0]), float(result.params["w"][0, 0])
    distance = np.hypot(b - exact["b"], w - exact["w"][0])
    mse = np.mean((b + w * x - y) ** 2)
    print(
        f"SGD, {epochs:3d} epochs:  b = {b:.4f}  w = {w:.4f}  "
        f"({int(result.updates[0])} updates, distance to least squares {distance:.4f}, "
        f"MSE {mse:.4f})"
    )
exact_mse = np.mean((exact["b"] + exact["w"][0] * x - y) ** 2)
print(f"least-squares MSE {exact_mse:.4f} is the lowest any (b, w) can reach")
