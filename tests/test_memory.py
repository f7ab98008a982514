"""Memory planned before compiling: the split into slices equals the unsplit run, and a
sweep that cannot fit one config is refused with the numbers."""

import importlib

import jax
import numpy as np
import pytest

import jaxgd
from jaxgd.configs import resolve_configs
from jaxgd.core.memory import compiled_bytes, config_bytes, plan_slices
from jaxgd.strategies.streamed import stream_bytes

SPACE = jaxgd.grid(learning_rate=[0.1, 0.05, 0.02, 0.01], momentum=[0.0, 0.9], seed=[0, 1])


def _problem():
    problem, data = jaxgd.problems.linear_regression(num_examples=83)
    return problem, {k: np.asarray(v, np.float32) for k, v in data.items()}


def _mlp_problem():
    # parameters enough that a config's bytes outweigh the compiled program's fixed ones
    problem = jaxgd.problems.mlp((16, 32, 4))
    data = jaxgd.problems.synthetic_classification(num_examples=83, num_features=16, num_classes=4)
    return problem, data


def _per_config(problem, data, batch_size):
    example = {k: jax.ShapeDtypeStruct(v.shape[1:], v.dtype) for k, v in data.items()}
    return config_bytes(problem, jaxgd.optimizer("sgd"), example, batch_size, 1024, 0)


def test_bytes_per_config_follow_the_formula():
    problem, data = _problem()
    params = problem.init(jax.random.key(0))
    sgd = jaxgd.optimizer("sgd")
    opt_state = sgd.transformation(**dict.fromkeys(sgd.hyperparameter_names, 1.0)).init(params)
    p, s = (sum(leaf.size for leaf in jax.tree.leaves(t)) for t in (params, opt_state))
    # state 2·(P + S), step 2·P + 2·B·a, evaluation nothing (no eval examples); float32
    small, large = _per_config(problem, data, 4), _per_config(problem, data, 8)
    activations = (large - small) // (2 * 4 * 4)
    assert activations == 4  # x·w, + b, the residual, its square
    assert small == 4 * (2 * (p + s) + 2 * p + 2 * 4 * activations)


def test_slices_fit_the_budget_in_one_shape():
    # 10 bytes a config, 30 bytes of room: 3 configs a slice; one seed of 8 configs is cut
    # into balanced pieces of 3, the last padded with an inactive copy
    plan = plan_slices(np.full(8, 10), data_bytes=5, budget=35, devices=1, source="test")
    assert [s.tolist() for s in plan.slices] == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert [p.tolist() for p in plan.padding] == [[], [], [[6, 0]]]
    # five seeds of 2 configs, room for 5 configs: 2 seeds a slice, the last slice padded
    # with a row of an unused seed
    seeds = np.repeat([3, 1, 4, 0, 2], 2)
    plan = plan_slices(np.full(10, 10), 5, 55, 1, "test", seeds=seeds)
    assert [s.tolist() for s in plan.slices] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [p.tolist() for p in plan.padding] == [[], [], [[8, 5]]]
    # two devices hold 3 configs each: 3 seeds a slice
    plan = plan_slices(np.full(10, 10), 5, 35, 2, "test", seeds=seeds)
    assert [s.size + len(p) for s, p in zip(plan.slices, plan.padding)] == [6, 5]
    # uneven seeds: rows as wide as the widest seed's (7), topped up where narrower
    seeds = np.array([0] * 7 + [1] * 3 + [2] * 5)
    plan = plan_slices(np.full(15, 10), 5, 155, 1, "test", seeds=seeds)
    assert [s.tolist() for s in plan.slices] == [list(range(10)), list(range(10, 15))]
    assert [p.tolist() for p in plan.padding] == [[], [[10, 2], [10, 2], [10, 3]]]
    # programs (optimizer, batch size) are cut apart, each at its own bytes per config
    groups = np.array([0] * 4 + [1] * 4)
    per = np.array([10] * 4 + [15] * 4)
    plan = plan_slices(per, 5, 35, 1, "test", groups=groups)
    assert [s.tolist() for s in plan.slices] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    # everything fits: one slice, no padding
    plan = plan_slices(np.full(8, 10), data_bytes=5, budget=85, devices=1, source="test")
    assert [s.tolist() for s in plan.slices] == [list(range(8))]
    assert plan.padding[0].size == 0


@pytest.mark.slow
def test_split_equals_unsplit_and_compiles_once():
    problem, data = _mlp_problem()
    per = _per_config(problem, data, 8)
    train_bytes = sum(v.nbytes for v in data.values())
    kwargs = dict(space=SPACE, batch_size=8, epochs=2, validation=None, return_params=True)
    whole = jaxgd.sweep(problem, data, **kwargs)
    before = {name: jaxgd.compile_count(name) for name in ("grouped_chunk", "init")}
    split = jaxgd.sweep(
        problem, data, **kwargs, options=jaxgd.SweepOptions(max_memory=train_bytes + 3 * per)
    )
    # six slices of one shape ([1 seed, 3 configs]; the last of each seed padded): one
    # chunk program and one init program, compiled once
    assert {name: jaxgd.compile_count(name) - n for name, n in before.items()} == {
        "grouped_chunk": 1,
        "init": 1,
    }
    assert len(whole.groups) == 1
    assert [g["configs"] for g in split.groups] == [
        [0, 2, 4],
        [6, 8, 10],
        [12, 14],
        [1, 3, 5],
        [7, 9, 11],
        [13, 15],
    ]
    np.testing.assert_array_equal(split.updates, whole.updates)
    for name, values in whole.history.items():
        # narrower programs vectorise differently: float rounding
        np.testing.assert_allclose(split.history[name], values, rtol=1e-5, err_msg=name)
    for got, want in zip(jax.tree.leaves(split.params), jax.tree.leaves(whole.params)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_a_config_that_cannot_fit_is_refused_before_compiling():
    problem, data = _problem()
    before = jaxgd.compile_count()
    with pytest.raises(jaxgd.InputError, match=r"max_memory=1000: one config needs [\d,]+ bytes"):
        jaxgd.sweep(
            problem,
            data,
            space=SPACE,
            batch_size=8,
            epochs=1,
            options=jaxgd.SweepOptions(max_memory=1000),
        )
    assert jaxgd.compile_count() == before


def test_callbacks_are_refused_when_the_sweep_is_split():
    problem, data = _problem()
    per = _per_config(problem, data, 8)
    with pytest.raises(jaxgd.InputError, match="sequential slices"):
        jaxgd.sweep(
            problem,
            data,
            space=SPACE,
            batch_size=8,
            epochs=2,
            validation=None,
            callbacks=[jaxgd.EarlyStopping("train_loss")],
            options=jaxgd.SweepOptions(max_memory=sum(v.nbytes for v in data.values()) + 3 * per),
        )


@pytest.mark.slow
def test_xla_memory_analysis_corrects_an_optimistic_estimate(monkeypatch):
    problem, data = _mlp_problem()
    kwargs = dict(space=SPACE, batch_size=8, epochs=2, validation=None)
    whole = jaxgd.sweep(problem, data, **kwargs)
    (executable,) = [e for e in whole.compiled if compiled_bytes(e) is not None] or [None]
    if executable is None:
        pytest.skip("this backend gives no memory analysis")
    data_bytes = sum(v.nbytes for v in data.values())
    per_slot = (compiled_bytes(executable) - data_bytes) / len(SPACE)
    # an estimate of 1 byte a config plans one slice; the compiled program's analysis
    # says it needs more than the budget, so the sweep is cut again before it runs
    sweep_module = importlib.import_module("jaxgd.sweep")
    monkeypatch.setattr(sweep_module, "config_bytes", lambda *args: 1)
    before = jaxgd.compile_count("grouped_chunk")
    budget = int(data_bytes + 5 * per_slot)
    split = jaxgd.sweep(problem, data, **kwargs, options=jaxgd.SweepOptions(max_memory=budget))
    # the whole program, measured, was compiled by the run above: only the slices' one
    # shape compiles
    assert jaxgd.compile_count("grouped_chunk") - before == 1
    assert len(split.groups) > 1
    assert all(compiled_bytes(e) <= budget for e in split.compiled[1:])
    np.testing.assert_array_equal(split.updates, whole.updates)
    np.testing.assert_allclose(split.history["train_loss"], whole.history["train_loss"], rtol=1e-5)


@pytest.mark.slow
def test_xla_memory_analysis_corrects_an_optimistic_estimate_when_streaming(monkeypatch):
    # the same check for HostData: the streamed programs' analysis (states, temporaries,
    # beyond the windows, orders and evaluation sets the plan counts) re-cuts the sweep
    problem, data = _mlp_problem()
    host = jaxgd.HostData(data, window_steps=4)  # 11 steps an epoch: windows of 4, 4, 3
    kwargs = dict(space=SPACE, batch_size=8, epochs=2, validation=None)
    whole = jaxgd.sweep(problem, host, **kwargs)
    measured = [compiled_bytes(e) for e in whole.compiled]
    if None in measured:
        pytest.skip("this backend gives no memory analysis")
    configs = resolve_configs(SPACE, "sgd", 8, 83, False)
    data_bytes = stream_bytes(host, configs, epochs=2, noise_measured=False)
    budget = int(data_bytes + 5 * max(measured) / len(SPACE))
    sweep_module = importlib.import_module("jaxgd.sweep")
    monkeypatch.setattr(sweep_module, "config_bytes", lambda *args: 1)
    before = jaxgd.compile_count("stream_window")
    split = jaxgd.sweep(problem, host, **kwargs, options=jaxgd.SweepOptions(max_memory=budget))
    # the whole sweep's programs, measured, came from the run above: only the slices'
    # one shape compiles, its two window lengths
    assert jaxgd.compile_count("stream_window") - before == 2
    assert split.strategy == "streamed" and len(split.groups) > 1
    sliced = [compiled_bytes(e) for e in split.compiled if e not in whole.compiled]
    assert data_bytes + max(sliced) <= budget < data_bytes + max(measured)
    np.testing.assert_array_equal(split.updates, whole.updates)
    np.testing.assert_allclose(split.history["train_loss"], whole.history["train_loss"], rtol=1e-5)
