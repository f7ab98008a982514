"""The sweep the kill test (tests/test_resume.py) interrupts: mixed batch sizes,
successive halving with rebuilt programs, checkpoints every chunk, then the result saved.

    python tests/resume_worker.py CHECKPOINT_DIR RESULT_DIR [FORMAT [DATA_DIR]]

With DATA_DIR the training data are its x.npy and y.npy, streamed from the host
(``jaxgd.HostData``, memory-mapped, windows of 3 steps). Always resumes (from the start
when there is no checkpoint) and overwrites the saved result, so that running it again
after a kill continues the same run.
"""

import sys

import jaxgd


def main(
    checkpoint_dir: str, result_dir: str, checkpoint_format: str = "npz", data_dir: str = ""
) -> jaxgd.SweepResult:
    problem, data = jaxgd.problems.linear_regression(num_examples=48, seed=3)
    strategy = "grouped"
    if data_dir:
        paths = {name: f"{data_dir}/{name}.npy" for name in data}
        data, strategy = jaxgd.HostData(paths, window_steps=3), "streamed"
    space = jaxgd.grid(
        learning_rate=[0.5, 0.2, 0.1, 0.05, 0.02, 0.01],
        batch_size=[4, 16],
        seed=[0, 1],
    )
    halving = jaxgd.SuccessiveHalving(metric="val_loss", eta=2, min_epochs=1)
    result = jaxgd.sweep(
        problem,
        data,
        space=space,
        epochs=12,
        callbacks=[halving],
        return_params=True,
        checkpoint_dir=checkpoint_dir,
        resume=True,
        options=jaxgd.SweepOptions(
            strategy=strategy, rebuild=True, checkpoint_format=checkpoint_format
        ),
    )
    result.save(result_dir, overwrite=True)
    return result


if __name__ == "__main__":
    main(*sys.argv[1:])
