"""Sweep files (jaxgd.runfile): the schema, the spaces it builds, and every refusal
naming its key and line."""

import math
import pathlib
import textwrap

import numpy as np
import pytest

import jaxgd
from jaxgd import runfile

BASE = """\
[problem]
name = "linear_regression"

[sweep]
epochs = 2
batch_size = 10
validation = false

[space.parameters]
learning_rate = {values = [0.1, 0.01]}
"""


def load(text: str, overrides=()):
    return runfile.load_text(textwrap.dedent(text), "sweep.toml", overrides, folder=".")


def test_minimal_file():
    plan = load(BASE)
    assert plan.problem_name == "linear_regression"
    assert list(plan.space) == [{"learning_rate": 0.1}, {"learning_rate": 0.01}]
    assert plan.sweep_kwargs == {
        "epochs": 2,
        "optimizer": "sgd",
        "batch_size": 10,
        "validation": None,
        "split_seed": 0,
        "shuffle": True,
        "drop_last": False,
    }
    assert plan.options == jaxgd.SweepOptions()
    assert plan.out == "runs/sweep" and not plan.checkpoint and plan.callbacks == []


def test_grid_ranges_values_and_constants():
    plan = load(
        BASE.replace(
            "learning_rate = {values = [0.1, 0.01]}",
            "learning_rate = {min = 0.001, max = 1.0, count = 4, "
            'distribution = "log_uniform_values"}\n'
            'momentum = {min = 0.0, max = 0.9, count = 4, distribution = "uniform"}\n'
            "seed = [0, 1]\n"
            "nesterov = {value = true}\n",
        )
    )
    configs = list(plan.space)
    assert len(configs) == 4 * 4 * 2
    rates = sorted({c["learning_rate"] for c in configs})
    np.testing.assert_allclose(rates, [1e-3, 1e-2, 1e-1, 1.0], rtol=1e-12)
    assert rates[0] == 0.001 and rates[-1] == 1.0  # the ends exactly as written
    np.testing.assert_allclose(sorted({c["momentum"] for c in configs}), [0, 0.3, 0.6, 0.9])
    assert {c["seed"] for c in configs} == {0, 1} and all(c["nesterov"] for c in configs)


@pytest.mark.parametrize("method", ["random", "quasirandom"])
def test_random_and_quasirandom_spaces(method):
    text = BASE.replace(
        "learning_rate = {values = [0.1, 0.01]}",
        'learning_rate = {min = 1e-4, max = 1e-1, distribution = "log_uniform_values"}\n'
        "momentum = {min = 0.0, max = 0.9}\n"
        'batch_size = {min = 2, max = 5, distribution = "int_uniform"}\n'
        "seed = {values = [0, 1, 2]}\n",
    ).replace(
        "[space.parameters]",
        f'[space]\nmethod = "{method}"\ncount = 64\nsample_seed = 3\n\n[space.parameters]',
    )
    configs = list(load(text).space)
    assert len(configs) == 64 and configs == list(load(text).space)  # reproducible
    rates = np.array([c["learning_rate"] for c in configs])
    assert rates.min() >= 1e-4 and rates.max() <= 1e-1
    # log-uniform: about a third of the draws in each decade
    decades = np.histogram(np.log10(rates), bins=[-4, -3, -2, -1])[0]
    assert decades.min() >= 10, decades
    assert {c["batch_size"] for c in configs} == {2, 3, 4, 5}
    assert {c["seed"] for c in configs} == {0, 1, 2}
    assert all(0.0 <= c["momentum"] <= 0.9 for c in configs)
    other = list(load(text.replace("sample_seed = 3", "sample_seed = 4")).space)
    assert other != configs


def test_quasirandom_points_cover_the_range_more_evenly_than_random():
    """For 64 points in one dimension, the scrambled Halton set (base 2 in its first
    coordinate) has one point in each of the 64 equal cells; random draws leave cells
    empty."""
    quasi = runfile._unit_points("quasirandom", 64, 2, seed=0)
    random = runfile._unit_points("random", 64, 2, seed=0)
    assert np.bincount((quasi[:, 0] * 64).astype(int), minlength=64).max() == 1
    assert np.bincount((random[:, 0] * 64).astype(int), minlength=64).max() > 1


def test_quasirandom_space_is_jaxgd_quasi_random():
    """A sweep file's quasi-random space is ``jaxgd.quasi_random``'s (its default method)
    for the same ranges and seed."""
    text = BASE.replace(
        "learning_rate = {values = [0.1, 0.01]}",
        'learning_rate = {min = 1e-4, max = 1e-1, distribution = "log_uniform_values"}\n'
        "momentum = {min = 0.0, max = 0.9}\n",
    ).replace(
        "[space.parameters]",
        '[space]\nmethod = "quasirandom"\ncount = 16\nsample_seed = 5\n\n[space.parameters]',
    )
    configs = list(load(text).space)
    expected = jaxgd.quasi_random(
        16, 5, learning_rate=jaxgd.loguniform(1e-4, 1e-1), momentum=(0.0, 0.9)
    )
    assert [c["momentum"] for c in configs] == [c["momentum"] for c in expected]
    np.testing.assert_allclose(
        [c["learning_rate"] for c in configs],
        [c["learning_rate"] for c in expected],
        rtol=1e-12,
    )


def test_batch_size_schedules():
    plan = load(
        BASE.replace("batch_size = 10\n", "").replace(
            "learning_rate = {values = [0.1, 0.01]}",
            "learning_rate = 0.1\n"
            "batch_size = {values = [4, {initial = 2, factor = 2, at = [1]}, "
            "{initial = 2, changes = {1 = 8}}]}\n",
        )
    )
    sizes = [c["batch_size"] for c in plan.space]
    assert sizes[0] == 4
    assert sizes[1] == jaxgd.increase_batch_size(2, 2, [1])
    assert sizes[2] == jaxgd.batch_schedule(2, {1: 8})


def test_overrides_apply_and_are_located():
    plan = load(BASE, ["sweep.epochs=4", "space.parameters.b1=[0.8, 0.9]", "sweep.optimizer=adam"])
    assert plan.sweep_kwargs["epochs"] == 4 and plan.sweep_kwargs["optimizer"] == "adam"
    assert len(plan.space) == 4
    with pytest.raises(jaxgd.InputError, match=r"^--set sweep\.epochs: sweep\.epochs: 0: must be"):
        load(BASE, ["sweep.epochs=0"])
    with pytest.raises(jaxgd.InputError, match="expected KEY=VALUE"):
        load(BASE, ["epochs"])


def test_key_lines_follow_tables_and_inline_tables():
    text = '[a]\nx = 1\n\n[b.c]\n"quoted.key" = 2\ny = { z = 3, w = [1, 2] }\n[[d]]\n'
    assert runfile.key_lines(text) == {
        "a": 1,
        "a.x": 2,
        "b.c": 4,
        "b": 4,
        "b.c.quoted.key": 5,
        "b.c.y": 6,
        "b.c.y.z": 6,
        "b.c.y.w": 6,
        "d": 7,
    }


# (text replacement or appended text, the message's start: "sweep.toml:<line>: <key>:",
# a fragment of the message). Line numbers refer to BASE after the edit.
REFUSED = [
    (("[problem]", "[problem]\nnmae = 1"), "sweep.toml:2: problem.nmae:", "did you mean 'name'"),
    (("[sweep]", "[sweeep]"), "sweep.toml:4: sweeep:", "did you mean 'sweep'"),
    (("epochs = 2", "epochs = 0"), "sweep.toml:5: sweep.epochs:", "positive integer"),
    (("epochs = 2", "epochs = 2.0"), "sweep.toml:5: sweep.epochs:", "(write 2)"),
    (("epochs = 2", "epocs = 2"), "sweep.toml:5: sweep.epocs:", "did you mean 'epochs'"),
    (("batch_size = 10", "batch_size = 0"), "sweep.toml:6: sweep.batch_size:", "positive integer"),
    (("batch_size = 10", "batch_size = 21"), "sweep.toml:6: sweep.batch_size:", "20 training"),
    (
        ("validation = false", "validation = 1.5"),
        "sweep.toml:7: sweep.validation:",
        "0 < validation",
    ),
    (("validation = false", 'validation = "no"'), "sweep.toml:7: sweep.validation:", "or false"),
    (
        ('name = "linear_regression"', 'name = "linear_regresion"'),
        "sweep.toml:2: problem.name:",
        "did you mean 'linear_regression'",
    ),
    (
        ('name = "linear_regression"', 'name = "nosuchmodule:make"'),
        "sweep.toml:2: problem.name:",
        "cannot import 'nosuchmodule'",
    ),
    (('name = "linear_regression"', "name = 3"), "sweep.toml:2: problem.name:", "string"),
    (("[sweep]", '[sweep]\noptimizer = "adamm"'), "sweep.toml:5: sweep.optimizer:", "'adam'"),
    (
        ("{values = [0.1, 0.01]}", '{values = [0.1, "fast"]}'),
        "sweep.toml:10: space.parameters.learning_rate.values:",
        "item 1: 'fast'",
    ),
    (
        ("learning_rate = ", "learning_rat = "),
        "sweep.toml:10: space.parameters.learning_rat:",
        "did you mean 'learning_rate'",
    ),
    (
        ("{values = [0.1, 0.01]}", "{min = 0.1, max = 1.0}"),
        "sweep.toml:10: space.parameters.learning_rate:",
        "needs count",
    ),
    (
        (
            "{values = [0.1, 0.01]}",
            '{min = 0.1, max = 1.0, count = 3, distribution = "log_uniform"}',
        ),
        "sweep.toml:10: space.parameters.learning_rate.distribution:",
        "log_uniform_values",
    ),
    (
        ("{values = [0.1, 0.01]}", "{min = 1.0, max = 0.1, count = 3}"),
        "sweep.toml:10: space.parameters.learning_rate:",
        "less than max",
    ),
    (
        (
            "{values = [0.1, 0.01]}",
            '{min = 0.0, max = 1.0, count = 3, distribution = "log_uniform_values"}',
        ),
        "sweep.toml:10: space.parameters.learning_rate.min:",
        "min > 0",
    ),
    (
        ("{values = [0.1, 0.01]}", "{values = [0.1], mni = 1}"),
        "sweep.toml:10: space.parameters.learning_rate.mni:",
        "did you mean 'min'",
    ),
    (
        ("{values = [0.1, 0.01]}", "{values = []}"),
        "sweep.toml:10: space.parameters.learning_rate.values:",
        "non-empty",
    ),
    (
        ("learning_rate = {values = [0.1, 0.01]}", "momentum = 0.9"),
        "sweep.toml:9: space:",
        "learning_rate",
    ),
    (
        ("learning_rate = {values = [0.1, 0.01]}", "learning_rate = 0.1\nseed = -1"),
        "sweep.toml:11: space.parameters.seed.values:",
        "seeds are integers",
    ),
    (
        ("[space.parameters]", '[space]\nmethod = "grdi"\n[space.parameters]'),
        "sweep.toml:10: space.method:",
        "did you mean 'grid'",
    ),
    (
        ("[space.parameters]", "[space]\ncount = 3\n[space.parameters]"),
        "sweep.toml:10: space.count:",
        "random and quasirandom",
    ),
    (
        ("[space.parameters]", '[space]\nmethod = "random"\n[space.parameters]'),
        "sweep.toml:9: space.count:",
        "positive integer",
    ),
    ((None, '[options]\nstrategy = "fast"'), "sweep.toml:13: options.strategy:", "choose one of"),
    (
        (None, "[options]\nepochs_per_chunk = 3"),
        "sweep.toml:13: options.epochs_per_chunk:",
        "must divide",
    ),
    ((None, "[halving]\neta = 1"), "sweep.toml:13: halving.eta:", "eta"),
    (
        (None, '[early_stopping]\nmetric = "val_loss"'),
        "sweep.toml:13: early_stopping.metric:",
        "not recorded",
    ),
    (
        (None, '[report]\nmetric = "train_los"'),
        "sweep.toml:13: report.metric:",
        "did you mean 'train_loss'",
    ),
    ((None, "[report]\ntop = 0"), "sweep.toml:13: report.top:", "positive integer"),
    ((None, "[checkpoint]\nevery = -1"), "sweep.toml:13: checkpoint.every:", "positive integer"),
    ((None, '[checkpoint]\nformat = "zip"'), "sweep.toml:13: checkpoint.format:", "'orbax'"),
    (
        (None, "[checkpoint]\nevery = 2\n[options]\ncheckpoint_every = 3"),
        "sweep.toml:15: options.checkpoint_every:",
        "set it in one place",
    ),
    (
        ("validation = false", "validation = false\ndivergence = 0.5"),
        "sweep.toml:8: sweep.divergence:",
        "number > 1",
    ),
    ((None, '[data]\nname = "mnist"'), "sweep.toml:13: data.name:", "digits"),
    (
        (None, '[data]\nname = "digits"\nnum_classes = 10'),
        "sweep.toml:14: data.num_classes:",
        "do not mix",
    ),
    (
        (
            'name = "linear_regression"',
            'name = "mlp"\noptions = {layer_sizes = [64, 9]}\n[data]\nname = "digits"',
        ),
        "sweep.toml:3: problem.options.layer_sizes:",
        "ends at 9 classes but the data has label 9",
    ),
    (
        (
            'name = "linear_regression"',
            'name = "mlp"\noptions = {layer_sizes = [60, 10]}\n[data]\nname = "digits"',
        ),
        "sweep.toml:3: problem.options.layer_sizes:",
        "make the first width 64",
    ),
    (
        (None, '[data]\npath = "missing.npz"\ninputs = "x"\ntargets = "y"'),
        "sweep.toml:13: data.path:",
        "does not exist",
    ),
    ((None, '[data]\ninputs = "x.npy"'), "sweep.toml:12: data:", "give path"),
    (
        (None, "[optimizer]\noptions = {nesterv = true}"),
        "sweep.toml:13: optimizer.options.nesterv:",
        "did you mean 'nesterov'",
    ),
    (
        (None, '[optimizer]\nname = "adam"\nranges = {b1 = "0-1"}'),
        "sweep.toml:14: optimizer.ranges.b1:",
        "write an interval such as '[0, 1)'",
    ),
    (
        (None, '[optimizer]\nname = "optax:lio"'),
        "sweep.toml:13: optimizer.name:",
        "module 'optax' has no function 'lio'",
    ),
    (
        (
            "[space.parameters]",
            '[optimizer]\nname = "optax:lion"\nranges = {b1 = "[0, 0.5]"}\n'
            "[space.parameters]\nb1 = [0.3, 0.9]",
        ),
        "sweep.toml:13: space.parameters.b1:",
        "config 2: b1=0.9 for optimizer 'lion': must be in [0, 0.5]; remove it from the space "
        "or declare another range in [optimizer] ranges",
    ),
    (
        ("learning_rate = {values = [0.1, 0.01]}", "learning_rate = 0.1\nmomentum = [0.5, 1.0]"),
        "sweep.toml:11: space.parameters.momentum:",
        "config 1: momentum=1.0 for optimizer 'sgd': must be in [0, 1)",
    ),
    (("[problem]", "output = 3\n[problem]"), "sweep.toml:1: output:", "must be a table"),
]


@pytest.mark.parametrize(("edit", "start", "fragment"), REFUSED, ids=[r[1] for r in REFUSED])
def test_refused_with_key_and_line(edit, start, fragment):
    old, new = edit
    text = BASE.replace(old, new, 1) if old else BASE + "\n" + new + "\n"
    assert text != BASE
    with pytest.raises(jaxgd.InputError) as error:
        runfile.load_text(text, "sweep.toml", folder=".")
    message = str(error.value)
    assert message.startswith(start), message
    assert fragment in message, message


def test_invalid_toml_names_the_line():
    with pytest.raises(jaxgd.InputError, match=r"sweep.toml: not valid TOML: .*line 2"):
        runfile.load_text("[sweep]\nepochs = = 2\n", "sweep.toml")


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(jaxgd.InputError, match="does not exist"):
        runfile.load(tmp_path / "missing.toml")
    with pytest.raises(jaxgd.InputError, match="is a folder"):
        runfile.load(tmp_path)


def test_problem_from_module_next_to_the_file(tmp_path):
    (tmp_path / "my_problems.py").write_text(
        textwrap.dedent(
            """
            import jaxgd

            def make(num_examples=30):
                return jaxgd.problems.linear_regression(num_examples=num_examples)

            def problem_only():
                return jaxgd.problems.mlp((4, 3))
            """
        )
    )
    text = BASE.replace(
        'name = "linear_regression"', 'name = "my_problems:make"\noptions = {num_examples = 40}'
    )
    (tmp_path / "sweep.toml").write_text(text)
    plan = runfile.load(tmp_path / "sweep.toml")
    assert plan.data["x"].shape == (40, 1)
    (tmp_path / "only.toml").write_text(
        BASE.replace('"linear_regression"', '"my_problems:problem_only"')
    )
    with pytest.raises(jaxgd.InputError, match="brings no data: add a \\[data\\] table"):
        runfile.load(tmp_path / "only.toml")
    data = {"x": np.ones((30, 4), np.float32), "y": np.arange(30) % 3}
    np.savez(tmp_path / "blobs.npz", **data)
    (tmp_path / "files.toml").write_text(
        BASE.replace('"linear_regression"', '"my_problems:problem_only"')
        + '\n[data]\npath = "blobs.npz"\ninputs = "x"\ntargets = "y"\nnum_classes = 3\n'
    )
    plan = runfile.load(tmp_path / "files.toml")
    assert plan.data["y"].dtype == np.int32 and plan.data["x"].shape == (30, 4)
    (tmp_path / "labels.toml").write_text(
        (tmp_path / "files.toml").read_text().replace("num_classes = 3", "num_classes = 2")
    )
    with pytest.raises(jaxgd.InputError, match=r"labels.toml:\d+: data: .*label 2 of example 2"):
        runfile.load(tmp_path / "labels.toml")


def test_dump_toml_round_trips_the_resolved_document():
    text = BASE + textwrap.dedent(
        """
        [problem.options]
        num_examples = 30

        [halving]
        eta = 2
        metric = "train_loss"

        [report]
        metric = "train_loss"
        """
    ).replace("[problem.options]\nnum_examples = 30\n", "")
    plan = load(
        text.replace(
            "learning_rate = {values = [0.1, 0.01]}",
            "learning_rate = {values = [0.1, 0.01]}\nbatch_size = "
            "{values = [5, {initial = 2, factor = 2, at = [1]}]}",
        )
    )
    again = runfile.load_text(runfile.dump_toml(plan.document), "copy.toml", folder=".")
    assert list(again.space) == list(plan.space)
    assert again.sweep_kwargs == plan.sweep_kwargs and again.options == plan.options
    assert again.report == plan.report and again.document == plan.document
    assert math.isclose(again.document["sweep"]["epochs"], 2)


@pytest.mark.parametrize(
    "path", sorted((pathlib.Path(__file__).parents[1] / "examples").glob("*.toml"))
)
def test_every_example_file_loads(path):
    plan = runfile.load(path)
    assert len(plan.space) >= 1 and plan.out.startswith("runs/")


SCHEDULED = BASE.replace(
    "validation = false\n", 'validation = false\nschedule = "cosine"\n'
).replace(
    "learning_rate = {values = [0.1, 0.01]}",
    "learning_rate = {values = [0.1, 0.01]}\ndecay_epochs = {values = [1.0, 2.0]}",
)


def test_a_learning_rate_schedule_for_every_config_trains_as_the_api_does():
    plan = load(SCHEDULED)
    assert [c["schedule"] for c in plan.space] == ["cosine"] * 4
    result = jaxgd.sweep(plan.problem, plan.data, space=plan.space, **plan.sweep_kwargs)
    expected = jaxgd.sweep(
        plan.problem,
        plan.data,
        space=jaxgd.grid(learning_rate=[0.1, 0.01], decay_epochs=[1.0, 2.0]),
        **{**plan.sweep_kwargs, "optimizer": jaxgd.optimizer("sgd", schedule="cosine")},
    )
    np.testing.assert_array_equal(result.history["train_loss"], expected.history["train_loss"])
    # decay_epochs counts each config's own updates: twice the epochs, twice the steps
    steps = [c["decay_steps"] for c in result.configs]
    assert steps[1] == 2 * steps[0] > 0
    assert not np.array_equal(result.history["train_loss"][0], result.history["train_loss"][1])


def test_schedules_as_an_axis_of_the_space_and_refusals():
    plan = load(
        BASE.replace(
            "learning_rate = {values = [0.1, 0.01]}",
            'learning_rate = 0.1\nschedule = {values = ["linear"]}\ntransition_epochs = [1.0, 2.0]',
        )
    )
    assert [c["schedule"] for c in plan.space] == ["linear", "linear"]
    with pytest.raises(jaxgd.InputError, match=r"sweep.schedule: 'cosin': .*did you mean 'cosine'"):
        load(SCHEDULED.replace('"cosine"', '"cosin"'))
    with pytest.raises(jaxgd.InputError, match=r"space.parameters.decay_epochs: not a hyper"):
        load(SCHEDULED.replace('schedule = "cosine"\n', ""))
    with pytest.raises(jaxgd.InputError, match=r"schedule: is set in \[sweep\] schedule too"):
        load(SCHEDULED.replace("decay_epochs", 'schedule = "linear"\ndecay_epochs'))


def test_measure_noise_scale():
    plan = load(
        BASE.replace("validation = false\n", 'validation = false\nmeasure = ["noise_scale"]\n')
    )
    assert plan.sweep_kwargs["measure"] == ["noise_scale"]
    result = jaxgd.sweep(plan.problem, plan.data, space=plan.space, **plan.sweep_kwargs)
    assert result.history["b_simple"].shape == (2, 2)
    for bad in ('"noise_scale"', '["noise"]'):
        with pytest.raises(jaxgd.InputError, match=r"sweep.toml:\d+: sweep.measure: "):
            load(BASE.replace("validation = false\n", f"validation = false\nmeasure = {bad}\n"))


def test_a_separate_validation_file(tmp_path):
    rng = np.random.default_rng(0)
    for name, count in (("train", 40), ("val", 10)):
        x = rng.normal(size=(count, 1)).astype(np.float32)
        np.savez(tmp_path / f"{name}.npz", x=x, y=(3 * x[:, 0] + 1).astype(np.float32))
    files = '\n[data]\npath = "train.npz"\ninputs = "x"\ntargets = "y"\n'
    text = BASE.replace("validation = false\n", "") + files
    text += '\n[validation]\npath = "val.npz"\ninputs = "x"\ntargets = "y"\n'
    (tmp_path / "sweep.toml").write_text(text)
    plan = runfile.load(tmp_path / "sweep.toml")
    np.testing.assert_array_equal(
        plan.sweep_kwargs["validation"]["x"], np.load(tmp_path / "val.npz")["x"]
    )
    result = jaxgd.sweep(plan.problem, plan.data, space=plan.space, **plan.sweep_kwargs)
    assert result.history["val_loss"].shape == (2, 2)
    assert "validation" not in plan.document["sweep"]  # the table names the files
    again = runfile.load_text(runfile.dump_toml(plan.document), "copy.toml", folder=str(tmp_path))
    np.testing.assert_array_equal(
        again.sweep_kwargs["validation"]["y"], plan.sweep_kwargs["validation"]["y"]
    )
    (tmp_path / "both.toml").write_text(text.replace("[sweep]\n", "[sweep]\nvalidation = 0.2\n"))
    with pytest.raises(
        jaxgd.InputError, match=r"both.toml:\d+: sweep.validation: a \[validation\]"
    ):
        runfile.load(tmp_path / "both.toml")


OPTIMIZER_TABLE = BASE.replace(
    "validation = false\n", "validation = false\nshuffle = false\n"
).replace("learning_rate = {values = [0.1, 0.01]}", "learning_rate = 0.05\nmomentum = 0.9")


def test_optimizer_table_sets_static_options_as_jaxgd_optimizer_does():
    """``[optimizer] options`` are ``jaxgd.optimizer(name, **options)``: Nesterov momentum
    trains as the API's, and differs from heavy-ball momentum."""
    plan = load(OPTIMIZER_TABLE + '\n[optimizer]\nname = "sgd"\noptions = {nesterov = true}\n')
    assert plan.sweep_kwargs["optimizer"] == jaxgd.optimizer("sgd", nesterov=True)
    result = jaxgd.sweep(plan.problem, plan.data, space=plan.space, **plan.sweep_kwargs)
    kwargs = {**plan.sweep_kwargs, "optimizer": jaxgd.optimizer("sgd", nesterov=True)}
    expected = jaxgd.sweep(plan.problem, plan.data, space=plan.space, **kwargs)
    np.testing.assert_array_equal(result.history["train_loss"], expected.history["train_loss"])
    heavy_ball = load(OPTIMIZER_TABLE)
    other = jaxgd.sweep(
        heavy_ball.problem, heavy_ball.data, space=plan.space, **heavy_ball.sweep_kwargs
    )
    assert not np.array_equal(result.history["train_loss"], other.history["train_loss"])
    # the name may stay in [sweep]; the resolved file names it once and loads back the same
    again = load(
        OPTIMIZER_TABLE.replace("[sweep]\n", '[sweep]\noptimizer = "sgd"\n')
        + "\n[optimizer]\noptions = {nesterov = true}\n"
    )
    assert again.sweep_kwargs == plan.sweep_kwargs
    copy = runfile.load_text(runfile.dump_toml(plan.document), "copy.toml", folder=".")
    assert copy.sweep_kwargs == plan.sweep_kwargs and copy.document == plan.document
    assert plan.document["optimizer"] == {"name": "sgd", "options": {"nesterov": True}}


def test_optimizer_table_names_an_optax_factory_with_declared_ranges():
    """``name = "optax:lion"`` wraps the factory as ``jaxgd.optimizer(optax.lion)``: its
    numeric keywords are hyperparameters of the space, its others static options."""
    import optax

    text = OPTIMIZER_TABLE.replace("momentum = 0.9", "b1 = [0.5, 0.9]") + (
        '\n[optimizer]\nname = "optax:lion"\noptions = {mu_dtype = "float32"}\n'
        'ranges = {b1 = "[0, 0.95]"}\n'
    )
    plan = load(text)
    family = jaxgd.optimizer(optax.lion, ranges={"b1": "[0, 0.95]"}, mu_dtype="float32")
    assert plan.sweep_kwargs["optimizer"] == family
    result = jaxgd.sweep(plan.problem, plan.data, space=plan.space, **plan.sweep_kwargs)
    expected = jaxgd.sweep(
        plan.problem, plan.data, space=plan.space, **{**plan.sweep_kwargs, "optimizer": family}
    )
    np.testing.assert_array_equal(result.history["train_loss"], expected.history["train_loss"])
    assert [row["optimizer"] for row in result.table()] == ["lion", "lion"]
    assert np.isfinite(result.history["train_loss"]).all()
