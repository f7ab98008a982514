"""Multiple regression, y = X w* + b* + noise with 3 features, by SGD with momentum.

One sweep trains momentum 0, 0.5 and 0.9 at the same learning rate; with the same
number of updates, momentum gets much closer to the least-squares solution.
"""

import numpy as np

import jaxgd

problem, data = jaxgd.problems.multiple_regression(num_examples=200, num_features=3, seed=0)
exact = jaxgd.problems.least_squares(data)
momenta = [0.0, 0.5, 0.9]
result = jaxgd.sweep(
    problem,
    data,
    space=jaxgd.grid(learning_rate=0.01, momentum=momenta, seed=0),
    batch_size=20,
    epochs=8,
    validation=None,
    return_params=True,
)

print(f"least squares: w = {np.round(exact['w'], 3)}  b = {exact['b']:.3f}")
for i, momentum in enumerate(momenta):
    w, b = result.params["w"][i], float(result.params["b"][i])
    distance = np.sqrt(np.sum((w - exact["w"]) ** 2) + (b - exact["b"]) ** 2)
    print(
        f"momentum {momentum:<3}: w = {np.round(w, 3)}  b = {b:.3f}  "
        f"train loss {result.history['train_loss'][i, -1]:.4f}  "
        f"distance to least squares {distance:.4f}  ({int(result.updates[i])} updates)"
    )
