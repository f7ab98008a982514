"""The partial last batch: 1050 examples in batches of 100.

Without ``drop_last`` an epoch is 11 updates, the last one the mean gradient over the
remaining 50 examples (the batch is padded to 100 and the padding masked out); with
``drop_last=True`` it is 10 updates and 50 examples are skipped each epoch (a different
50 every epoch, since the order is reshuffled).
"""

import jaxgd

problem, data = jaxgd.problems.linear_regression(num_examples=1050, seed=0)
plan = jaxgd.BatchPlan(num_examples=1050, batch_size=100)
print(f"BatchPlan(1050, 100): {plan.steps_per_epoch} steps, last batch {plan.last_batch_size}")

for drop_last in (False, True):
    result = jaxgd.sweep(
        problem,
        data,
        space=jaxgd.grid(learning_rate=0.1, seed=0),
        batch_size=100,
        epochs=3,
        validation=None,
        drop_last=drop_last,
    )
    updates = result.history["updates"][0]
    seen = result.history["examples_seen"][0]
    print(
        f"drop_last={drop_last!s:5}: {updates[0]} updates per epoch, {seen[0]} examples per "
        f"epoch; after 3 epochs {updates[-1]} updates, {seen[-1]} examples seen"
    )
