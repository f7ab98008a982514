"""Results that load back exactly, strict JSON, best() and the divergence threshold."""

import json
import math

import jax
import numpy as np
import pytest

import jaxgd
from jaxgd.persist import decode, encode

problem, data = jaxgd.problems.linear_regression(num_examples=40)


@pytest.fixture(scope="module")
def result():
    space = jaxgd.grid(
        learning_rate=[0.3, 0.03],
        batch_size=[4, jaxgd.increase_batch_size(4, 2, at=[2])],
        seed=[0, 1],
    )
    return jaxgd.sweep(
        problem,
        data,
        space=space,
        epochs=4,
        return_params=True,
        callbacks=[jaxgd.SuccessiveHalving(metric="val_loss", eta=2, min_epochs=2)],
        options=jaxgd.SweepOptions(epochs_per_chunk=2),
    )


def assert_same(a: jaxgd.SweepResult, b: jaxgd.SweepResult) -> None:
    assert a.configs == b.configs
    assert [[type(v) for v in row.values()] for row in a.configs] == [
        [type(v) for v in row.values()] for row in b.configs
    ]
    assert list(a.history) == list(b.history)
    for name in a.history:
        assert a.history[name].dtype == b.history[name].dtype
        np.testing.assert_array_equal(a.history[name], b.history[name])  # NaN == NaN here
    for name in ("updates", "examples_seen", "diverged", "diverged_step", "status"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for name in ("stopped_epoch", "seconds", "compile_seconds"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (a.strategy, a.groups, a.meta) == (b.strategy, b.groups, b.meta)
    assert jax.tree.structure(a.params) == jax.tree.structure(b.params)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def test_save_load_round_trips_exactly(result, tmp_path):
    assert (result.status == "stopped").any() and np.isnan(result.history["val_loss"]).any()
    result.save(tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        ".jaxgd-files",
        "COMPLETE",
        "arrays.npz",
        "result.json",
    ]
    assert jaxgd.SweepResult.is_complete(tmp_path / "run")
    loaded = jaxgd.SweepResult.load(tmp_path / "run")
    assert_same(result, loaded)
    assert loaded.best("val_loss") == result.best("val_loss")


def test_typed_values_round_trip():
    values = {
        "schedule": jaxgd.batch_schedule(8, {3: 16}),
        "inf": math.inf,
        "tuple": (1, 2.0, "a"),
        "int": 3,
        "float": 3.0,
        "bool": True,
        "none": None,
        "numpy": np.float32(0.5),
    }
    back = decode(json.loads(json.dumps(encode(values), allow_nan=False)))
    assert back == {**values, "numpy": 0.5}
    assert [type(v) for v in back.values()] == [
        jaxgd.BatchSchedule,
        float,
        tuple,
        int,
        float,
        bool,
        type(None),
        float,
    ]


def test_meta_names_versions_device_and_options(result):
    meta = result.meta
    assert meta["jax"] == jax.__version__ and meta["jaxgd"] == jaxgd.__version__
    assert meta["backend"] == jax.default_backend() and meta["device_kind"]
    assert meta["options"]["epochs_per_chunk"] == 2 and meta["epochs"] == 4
    assert meta["git_commit"] is None or len(meta["git_commit"].split("+")[0]) == 40


def strict_loads(text):
    def refuse(token):
        raise AssertionError(f"non-JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def test_json_is_strict(result, tmp_path):
    frozen = jaxgd.SweepResult(
        configs=[{"learning_rate": 1.0}],
        history={"train_loss": np.array([[1.0, np.inf]]), "val_loss": np.array([[np.nan, 1.0]])},
        updates=np.array([1]),
        examples_seen=np.array([1]),
        diverged=np.array([True]),
        diverged_step=np.array([1]),
        seconds=np.zeros(1),
        compile_seconds=np.zeros(1),
        meta={"divergence": math.inf},
    )
    frozen.to_json(tmp_path / "results.json")
    document = strict_loads((tmp_path / "results.json").read_text())
    assert document["history"]["train_loss"] == [[1.0, None]]
    assert document["rows"][0]["final_train_loss"] is None
    frozen.save(tmp_path / "saved")
    strict_loads((tmp_path / "saved" / "result.json").read_text())
    loaded = jaxgd.SweepResult.load(tmp_path / "saved")
    assert loaded.history["train_loss"][0, 1] == np.inf and loaded.meta["divergence"] == math.inf
    result.save(tmp_path / "result")
    strict_loads((tmp_path / "result" / "result.json").read_text())


def test_save_then_overwrite_keeps_other_files(result, tmp_path):
    folder = tmp_path / "run"
    result.save(folder)
    (folder / "notes.txt").write_text("mine")
    result.save(folder, overwrite=True)
    assert (folder / "notes.txt").read_text() == "mine"
    assert_same(result, jaxgd.SweepResult.load(folder))


def small(status, final, seeds=(0, 0, 0, 0)):
    count = len(status)
    configs = [{"learning_rate": 0.1 * (i // 2 + 1), "seed": s} for i, s in enumerate(seeds)]
    return jaxgd.SweepResult(
        configs=configs,
        history={"val_loss": np.array(final, float)[:, None]},
        updates=np.ones(count, int),
        examples_seen=np.ones(count, int),
        diverged=np.array([s == "diverged" for s in status]),
        diverged_step=np.full(count, -1),
        seconds=np.zeros(count),
        compile_seconds=np.zeros(count),
        status=np.array(status),
    )


def test_best_skips_diverged_and_stopped_and_returns_the_index():
    result = small(["diverged", "stopped", "running", "running"], [0.1, 0.2, 0.5, 0.4])
    assert result.best("val_loss")["config"] == 3
    assert result.best("val_loss", mode="max")["config"] == 2


def test_best_says_when_no_config_is_left():
    result = small(["diverged", "stopped", "diverged", "stopped"], [0.1, 0.2, 0.5, 0.4])
    with pytest.raises(ValueError, match=r"no config trained to the end.*2 diverged, 2 stopped"):
        result.best("val_loss")


def test_best_over_seeds_averages():
    # configs 0, 1: lr 0.1 with seeds 0, 1 (mean 0.35); configs 2, 3: lr 0.2 (mean 0.3).
    result = small(["running"] * 4, [0.1, 0.6, 0.3, 0.3], seeds=(0, 1, 0, 1))
    assert result.best("val_loss")["config"] == 0
    row = result.best("val_loss", over="seed")
    assert (row["config"], row["configs"]) == (2, [2, 3])
    assert row["mean_final_val_loss"] == pytest.approx(0.3)
    # A candidate with a diverged seed is out.
    result = small(["running", "running", "running", "diverged"], [0.1, 0.6, 0.3, 0.3], (0, 1) * 2)
    assert result.best("val_loss", over="seed")["configs"] == [0, 1]


def test_divergence_threshold_flags_a_loss_grown_a_thousandfold():
    """Gradient descent on f(w) = w²/2 multiplies w by (1 - lr) each step: with lr = 3 the
    loss grows 4x per step, so it passes 1e3 x its first loss after 5 updates (4^5 = 1024)
    and stays finite for ~60; the bound flags it then, inf only at overflow."""
    quadratic = jaxgd.Problem(
        init=lambda key: {"w": np.ones((), np.float32)},
        loss=lambda p, ex: 0.5 * (p["w"] - ex["y"]) ** 2,
    )
    points = {"y": np.zeros(1, np.float32)}
    space = jaxgd.grid(learning_rate=[3.0, 0.5])
    kwargs = dict(space=space, batch_size=1, epochs=8, validation=None)
    bounded = jaxgd.sweep(quadratic, points, **kwargs)
    assert bounded.status.tolist() == ["diverged", "running"]
    assert bounded.diverged_step[0] == 5  # loss 0.5 * 4^5 > 1e3 * 0.5 at update 5
    unbounded = jaxgd.sweep(quadratic, points, **kwargs, divergence=float("inf"))
    assert unbounded.status.tolist() == ["running", "running"]
    assert np.isfinite(unbounded.history["train_loss"]).all()
    tighter = jaxgd.sweep(quadratic, points, **kwargs, divergence=10.0)
    assert tighter.diverged_step[0] == 2  # 4^2 = 16 > 10
