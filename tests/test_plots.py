"""jaxgd.plots on hand-made results: files are written atomically, bad input is refused."""

import numpy as np
import pytest

from jaxgd import SweepResult, grid, plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def fake_result(diverge_first: bool = False) -> SweepResult:
    """2 learning rates x 2 momenta x 2 batch sizes x 2 seeds, 4 epochs of made-up losses."""
    configs = list(
        grid(learning_rate=[0.1, 1.0], momentum=[0.0, 0.9], batch_size=[8, 32], seed=[0, 1])
    )
    count, epochs = len(configs), 4
    decay = np.array([c["learning_rate"] * (1 + c["momentum"]) for c in configs])
    train = 2.0 * np.exp(-np.outer(decay, np.arange(1, epochs + 1)))
    val = train * 1.1
    diverged = np.zeros(count, bool)
    if diverge_first:
        # Both seeds of the first cell diverge, one seed of the last.
        val[[0, 1], 2:] = np.nan
        val[-1, 3:] = np.inf
        diverged[[0, 1, -1]] = True
    return SweepResult(
        configs=[{"optimizer": "sgd", **c} for c in configs],
        history={"train_loss": train, "val_loss": val},
        updates=np.full(count, 10),
        examples_seen=np.full(count, 100),
        diverged=diverged,
        diverged_step=np.where(diverged, 5, -1),
        seconds=np.ones(count),
        compile_seconds=np.ones(count),
    )


@pytest.mark.parametrize("diverge_first", [False, True])
def test_plots_write_pngs(tmp_path, diverge_first):
    result = fake_result(diverge_first)
    paths = [
        plots.loss_curves(result, tmp_path / "out" / "curves.png"),
        plots.final_loss_heatmap(result, tmp_path / "out" / "heatmap.png"),
    ]
    for path in paths:
        with open(path, "rb") as f:
            assert f.read(8) == PNG_SIGNATURE
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["curves.png", "heatmap.png"]


def test_loss_curves_without_the_grouping_keys(tmp_path):
    result = fake_result()
    result.configs = [{"learning_rate": c["learning_rate"]} for c in result.configs]
    path = plots.loss_curves(result, tmp_path / "curves.png", metrics=("train_loss",))
    assert path == str(tmp_path / "curves.png")


def test_bad_metric_is_refused_before_writing(tmp_path):
    result = fake_result()
    with pytest.raises(ValueError, match="val_accuracy"):
        plots.final_loss_heatmap(result, tmp_path / "h.png", metric="val_accuracy")
    with pytest.raises(ValueError, match=r"none of the metrics \['eval_loss'\]"):
        plots.loss_curves(result, tmp_path / "c.png", metrics=("eval_loss",))
    with pytest.raises(ValueError, match="'beta'"):
        plots.final_loss_heatmap(result, tmp_path / "h.png", y="beta")
    assert not list(tmp_path.iterdir())
