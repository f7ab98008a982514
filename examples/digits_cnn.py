"""A small CNN on scikit-learn's bundled 8x8 digits: Adam, batch 128, 20% validation.

The network: conv 3x3 (8 channels)-ReLU, conv 3x3 stride 2 (16 channels)-ReLU, dense 10.

Three learning rates x two seeds train together in one compiled program.
"""

import jaxgd

problem, data = jaxgd.problems.digits_cnn(channels=(8, 16))
result = jaxgd.sweep(
    problem,
    data,
    optimizer="adam",
    space=jaxgd.grid(learning_rate=[1e-3, 3e-3, 1e-2], seed=[0, 1]),
    batch_size=128,
    epochs=10,
    validation=0.2,
)

print(
    result.format_table(
        [
            "learning_rate",
            "seed",
            "final_train_loss",
            "final_val_loss",
            "final_val_accuracy",
            "updates",
        ]
    )
)
best = result.best("val_accuracy")
print(
    f"best: learning rate {best['learning_rate']:g}, seed {best['seed']}: validation "
    f"accuracy {best['final_val_accuracy']:.3f} after {result.epochs} epochs "
    f"(compiled in {result.compile_seconds[0]:.1f} s, trained in {result.seconds[0]:.2f} s)"
)
