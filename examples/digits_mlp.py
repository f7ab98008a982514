"""An MLP (64-64-10) on scikit-learn's bundled 8x8 digits: Adam, batch 128, 20% validation.

Three learning rates x two seeds train together in one compiled program.
"""

import jaxgd

problem, data = jaxgd.problems.digits_mlp(hidden=(64,))
result = jaxgd.sweep(
    problem,
    data,
    optimizer="adam",
    space=jaxgd.grid(learning_rate=[1e-3, 3e-3, 1e-2], seed=[0, 1]),
    batch_size=128,
    epochs=20,
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
