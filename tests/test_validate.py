"""Bad input is refused before anything compiles or is written, with a message that names
the argument, what was given and what was expected (README, "Errors": every row of its
table is a case here, and every case is a row there)."""

import math
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxgd

README = pathlib.Path(__file__).parent.parent / "README.md"


def _linear():
    return jaxgd.problems.linear_regression(num_examples=20)


def _loss_shape_1(params, example):
    # What a Dense(1) head or targets shaped [N, 1] give: a loss of shape (1,).
    return jnp.reshape(problem.loss(params, example), (1,))


def _classifier():
    problem = jaxgd.problems.mlp((2, 4, 3))
    data = {
        "x": np.random.default_rng(0).normal(size=(30, 2)).astype(np.float32),
        "y": np.arange(30, dtype=np.int32) % 3,
    }
    return problem, data


def _with(data, **leaves):
    return {**data, **leaves}


def _nan_at(values, index):
    values = np.array(values, np.float32)
    values[index] = np.nan
    return values


def case(**overrides):
    """A sweep call on the linear problem with some arguments replaced."""
    problem, data = _linear()
    kwargs = dict(
        problem=problem,
        data=data,
        space=jaxgd.grid(learning_rate=[0.1]),
        epochs=2,
        batch_size=5,
        validation=0.2,
    )
    kwargs.update(overrides)
    return kwargs


problem, data = _linear()
classifier, labelled = _classifier()
ints = jaxgd.Problem(
    init=lambda key: {"w": jnp.zeros(1, jnp.int32)},
    loss=lambda p, ex: jnp.sum(p["w"] * ex["x"]).astype(jnp.float32),
)

host_data = jaxgd.HostData(jax.tree.map(np.asarray, data))
examples_mesh = jax.make_mesh((1, 1), ("configs", "examples"))  # the test's one device

# (README id, sweep arguments, a regular expression the message must match)
CASES = [
    ("problem-not-a-problem", case(problem="linear_regression"), r"problem='linear_regression'"),
    (
        "loss-shape-(1,)",
        case(problem=jaxgd.Problem(problem.init, _loss_shape_1)),
        r"shape \(1,\).*loss\[0\]",
    ),
    (
        "loss-not-scalar",
        case(problem=jaxgd.Problem(problem.init, lambda p, ex: jnp.ones(3) * p["b"])),
        r"returned shape \(3,\).*must return a scalar",
    ),
    (
        "metric-not-scalar",
        case(
            problem=jaxgd.Problem(
                problem.init, problem.loss, metrics=lambda p, ex: {"err": jnp.ones(2)}
            )
        ),
        r"'err' of shape \(2,\)",
    ),
    (
        "params-not-float",
        case(problem=ints, data={"x": np.ones((20, 1), np.float32)}),
        r"dtype int32",
    ),
    (
        "init-fails",
        case(problem=jaxgd.Problem(lambda key: 1 / 0, problem.loss)),
        r"problem.init\(key\) failed.*ZeroDivisionError",
    ),
    (
        "data-missing-key",
        case(data={"inputs": data["x"], "y": data["y"]}),
        r"one training example.*KeyError: 'x'",
    ),
    (
        "validation-feature-mismatch",
        case(
            problem=jaxgd.problems.multiple_regression(num_features=3)[0],
            data=jaxgd.problems.multiple_regression(num_features=3)[1],
            validation={"x": np.ones((4, 2), np.float32), "y": np.ones(4, np.float32)},
        ),
        r"one validation example",
    ),
    (
        "eval-missing-key",
        case(eval_data={"x": data["x"]}),
        r"one eval example.*KeyError: 'y'",
    ),
    (
        "data-ragged-list",
        case(data={"x": [[1.0], [2.0, 3.0]] * 10, "y": [0.0] * 20}),
        r"\['x'\] is a list that does not form an array",
    ),
    ("data-not-array", case(data={"x": data["x"], "y": "targets"}), r"\['y'\] is a str"),
    (
        "data-counts-differ",
        case(data={"x": data["x"], "y": data["y"][:19]}),
        r"same leading example axis.*\(19,\)",
    ),
    ("data-nan", case(data=_with(data, x=_nan_at(data["x"], 7))), r"\['x'\]: example 7"),
    (
        "validation-inf",
        case(validation={"x": np.array([1.0, np.inf], np.float32), "y": np.ones(2, np.float32)}),
        r"validation data leaf \['x'\]: example 1",
    ),
    (
        "label-out-of-range",
        case(problem=classifier, data=_with(labelled, y=np.where(np.arange(30) == 4, 3, 0))),
        r"example 4 has label 3, outside \[0, 3\)",
    ),
    (
        "label-negative",
        case(problem=classifier, data=_with(labelled, y=np.full(30, -1, np.int32))),
        r"example 0 has label -1",
    ),
    ("learning-rate-zero", case(space=[{"learning_rate": 0.0}]), r"learning_rate=0.0.*\(0, inf\)"),
    ("learning-rate-nan", case(space=[{"learning_rate": math.nan}]), r"learning_rate=nan"),
    (
        "momentum-one",
        case(space=[{"learning_rate": 0.1, "momentum": 1.0}]),
        r"momentum=1.0 .*'sgd'.*\[0, 1\)",
    ),
    (
        "adam-b2-one",
        case(space=[{"learning_rate": 0.1, "b2": 1.0}], optimizer="adam"),
        r"b2=1.0.*\[0, 1\)",
    ),
    ("eps-zero", case(space=[{"learning_rate": 0.1, "eps": 0.0}], optimizer="adam"), r"eps=0.0"),
    (
        "decay-negative",
        case(space=[{"learning_rate": 0.1, "decay": -0.1}], optimizer="rmsprop"),
        r"decay=-0.1",
    ),
    (
        "declared-range",
        case(
            space=[{"learning_rate": 0.1, "b1": 0.9}],
            optimizer=jaxgd.optimizer(optax.lion, ranges={"b1": "[0, 0.5]"}),
        ),
        r"b1=0.9.*\[0, 0.5\]",
    ),
    (
        "hyperparameter-unknown",
        case(space=[{"learning_rate": 0.1, "betas": 0.9}]),
        r"hyperparameters \['betas'\]",
    ),
    (
        "hyperparameter-not-number",
        case(space=[{"learning_rate": "fast"}]),
        r"learning_rate='fast' is not a number",
    ),
    ("validation-int", case(validation=1), r"validation=1: expected a fraction"),
    ("validation-out-of-range", case(validation=1.5), r"validation=1.5: a fraction"),
    ("validation-string", case(validation="0.2"), r"validation='0.2'"),
    ("validation-bool", case(validation=True), r"validation=True"),
    ("seed-negative", case(space=[{"learning_rate": 0.1, "seed": -1}]), r"seed=-1.*2147483647"),
    ("seed-too-large", case(space=[{"learning_rate": 0.1, "seed": 2**31}]), r"seed=2147483648"),
    ("seed-not-integer", case(space=[{"learning_rate": 0.1, "seed": 1.5}]), r"seed=1.5"),
    ("epochs-zero", case(epochs=0), r"epochs=0"),
    ("epochs-float", case(epochs=2.0), r"epochs=2.0"),
    ("batch-size-zero", case(batch_size=0), r"batch_size=0"),
    ("batch-size-too-large", case(batch_size=17), r"batch_size=17.*16 training examples"),
    ("batch-size-missing", case(batch_size=None), r"no batch_size"),
    ("space-dict", case(space={"learning_rate": [0.1]}), r"not one dict"),
    ("space-empty", case(space=[]), r"no configs"),
    ("space-not-dicts", case(space=[0.1]), r"config 0 is 0.1"),
    ("optimizer-unknown", case(optimizer="sgdd"), r"optimizer='sgdd' is not known"),
    ("options-not-options", case(options={"strategy": "nested"}), r"jaxgd.SweepOptions"),
    (
        "epochs-per-chunk",
        case(epochs=3, options=jaxgd.SweepOptions(epochs_per_chunk=2)),
        r"divisor of epochs=3",
    ),
    ("callback-not-callback", case(callbacks=[print]), r"not a jaxgd.Callback"),
    ("divergence-not-above-one", case(divergence=0.5), r"divergence=0.5"),
    ("divergence-not-number", case(divergence="big"), r"divergence='big'"),
    ("resume-without-folder", case(resume=True), r"resume=True needs checkpoint_dir="),
    ("checkpoint-dir-not-a-path", case(checkpoint_dir=3), r"checkpoint_dir=3: expected a folder"),
    ("resume-not-bool", case(resume="yes"), r"resume='yes': must be True or False"),
    ("measure-not-a-list", case(measure="noise_scale"), r"measure='noise_scale': expected a list"),
    ("measure-unknown", case(measure=["noise"]), r"unknown \['noise'\]; choose from"),
    (
        "halving-without-a-rung",
        case(callbacks=[jaxgd.SuccessiveHalving(metric="val_loss", min_epochs=2)]),
        r"SuccessiveHalving\(min_epochs=2\) with epochs=2: the first rung must come before",
    ),
    (
        "max-memory-below-one-config",
        case(options=jaxgd.SweepOptions(max_memory=400)),
        r"max_memory=400: one config needs \d+ bytes and the data \d+ more",
    ),
    (
        "slices-with-callbacks",
        case(
            space=jaxgd.grid(learning_rate=[0.1, 0.2, 0.3, 0.4]),
            callbacks=[jaxgd.EarlyStopping(metric="val_loss")],
            options=jaxgd.SweepOptions(max_memory=600),
        ),
        r"callbacks=\[EarlyStopping\]: the sweep runs in 4 sequential slices to fit "
        r"max_memory=600 bytes",
    ),
    (
        "slices-with-checkpoints",
        case(
            space=jaxgd.grid(learning_rate=[0.1, 0.2, 0.3, 0.4]),
            checkpoint_dir="never-written",
            options=jaxgd.SweepOptions(max_memory=600),
        ),
        r"checkpoint_dir='never-written': the sweep runs in 4 sequential slices",
    ),
    (
        "strategy-cannot-stream",
        case(data=host_data, options=jaxgd.SweepOptions(strategy="nested")),
        r"strategy='nested' cannot stream jaxgd.HostData",
    ),
    (
        "stream-norm-test",
        case(data=host_data, space=[{"learning_rate": 0.1, "norm_test": 0.5}]),
        r"norm_test \(adaptive batch size\) cannot stream host data",
    ),
    (
        "examples-axis-strategy",
        case(options=jaxgd.SweepOptions(strategy="nested", mesh=examples_mesh)),
        r"strategy='nested' with a mesh axis 'examples': only the grouped programs split",
    ),
    (
        "examples-axis-norm-test",
        case(
            space=[{"learning_rate": 0.1, "norm_test": 0.5}],
            options=jaxgd.SweepOptions(mesh=examples_mesh),
        ),
        r"norm_test \(adaptive batch size\) with a mesh axis 'examples'",
    ),
]

# SweepOptions refuses bad settings when it is built (README id, settings, message).
OPTIONS_CASES = [
    ("strategy-unknown", dict(strategy="fast"), r"strategy='fast': choose one of"),
    ("option-not-positive", dict(epochs_per_chunk=0), r"epochs_per_chunk=0: must be a positive"),
    ("checkpoint-seconds-zero", dict(checkpoint_seconds=0), r"checkpoint_seconds=0: must be"),
    ("checkpoint-format-unknown", dict(checkpoint_format="zip"), r"checkpoint_format='zip'"),
    ("rebuild-unknown", dict(rebuild="sometimes"), r"rebuild='sometimes': must be True, False"),
    ("max-memory-not-positive", dict(max_memory=0), r"max_memory=0: must be a positive"),
    ("devices-not-devices", dict(devices=["cpu:0"]), r"devices=\['cpu:0'\]: must be a non-empty"),
    ("mesh-not-a-mesh", dict(mesh="configs"), r"mesh='configs': must be a jax.sharding.Mesh"),
    (
        "devices-and-mesh",
        dict(devices=jax.devices()[:1], mesh=jax.make_mesh((1,), ("configs",))),
        r"give one of them, not both",
    ),
    ("cache-dir-not-a-path", dict(cache_dir=3), r"cache_dir=3: must be a folder path"),
]


@pytest.mark.parametrize(
    "name, settings, message", OPTIONS_CASES, ids=[c[0] for c in OPTIONS_CASES]
)
def test_options_refused_before_compiling(name, settings, message):
    compiles = jaxgd.compile_count()
    with pytest.raises(jaxgd.InputError, match=message) as error:
        jaxgd.sweep(**case(options=jaxgd.SweepOptions(**settings)))
    assert "\n" not in str(error.value)
    assert jaxgd.compile_count() == compiles


# jaxgd.distributed.initialize refuses bad process settings before it connects.
PROCESS_CASES = [
    ("process-id-out-of-range", dict(num_processes=2, process_id=2), {}, r"must lie in 0..1"),
    ("num-processes-not-positive", dict(num_processes=0), {}, r"num_processes=0: must be"),
    (
        "process-env-not-integer",
        {},
        {"JAXGD_NUM_PROCESSES": "two"},
        r"\$JAXGD_NUM_PROCESSES='two': must be an integer",
    ),
]


@pytest.mark.parametrize(
    "name, kwargs, env, message", PROCESS_CASES, ids=[c[0] for c in PROCESS_CASES]
)
def test_process_settings_refused_before_connecting(monkeypatch, name, kwargs, env, message):
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(jaxgd.InputError, match=message):
        jaxgd.distributed.initialize("127.0.0.1:1", **kwargs)


@pytest.mark.parametrize("name, kwargs, message", CASES, ids=[c[0] for c in CASES])
def test_refused_before_compiling(name, kwargs, message):
    compiles = jaxgd.compile_count()
    with pytest.raises(jaxgd.InputError, match=message) as error:
        jaxgd.sweep(**kwargs)
    assert "\n" not in str(error.value)  # one line, for the command line
    assert jaxgd.compile_count() == compiles


def test_readme_errors_table_lists_every_case():
    section = README.read_text().split("## Errors", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `([^`]+)` \|", section, flags=re.M)
    cases = CASES + OPTIONS_CASES + PROCESS_CASES + FOLDER_CASES + RUNFILE_CASES
    covered = [c[0] for c in cases] + OTHER_CASES
    assert sorted(listed) == sorted(covered)


def test_lists_become_arrays_and_jax_arrays_are_numbers():
    result = jaxgd.sweep(
        problem,
        {"x": data["x"].tolist(), "y": data["y"].tolist()},
        space=jaxgd.grid(learning_rate=jnp.logspace(-2, -1, 2), momentum=np.float32(0.5)),
        epochs=1,
        batch_size=np.int64(5),
        validation=np.float32(0.25),
    )
    assert result.history["val_loss"].shape == (2, 1)
    assert [c["learning_rate"] for c in result.configs] == pytest.approx([0.01, 0.1])
    assert result.configs[0]["momentum"] == 0.5


def test_sample_seed_is_not_the_training_seed():
    space = jaxgd.sample(4, sample_seed=7, learning_rate=jaxgd.loguniform(1e-3, 1e-1), seed=[3])
    assert [c["seed"] for c in space] == [3, 3, 3, 3]
    assert (
        space.configs
        == jaxgd.sample(
            4, sample_seed=7, learning_rate=jaxgd.loguniform(1e-3, 1e-1), seed=[3]
        ).configs
    )


def test_sample_without_sample_seed_says_how():
    with pytest.raises(jaxgd.InputError, match=r"sample_seed=None.*dimension seed="):
        jaxgd.sample(4, seed=0, learning_rate=[0.1])


def _a_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    return path


def _a_run(tmp_path):
    folder = tmp_path / "run"
    jaxgd._io.prepare_output_dir(folder)
    jaxgd._io.atomic_write(folder / "results.csv", "old\n")
    return folder


# Output folders: (README id, make the path, sweep arguments besides it, message)
FOLDER_CASES = [
    ("checkpoint-dir-is-a-file", _a_file, {}, r"is a file"),
    ("checkpoint-dir-holds-a-run", _a_run, {}, r"holds another run's files \(results.csv\)"),
    ("overwrite-and-resume", _a_run, {"overwrite": True, "resume": True}, r"contradict"),
]


@pytest.mark.parametrize(
    "name, make, extra, message", FOLDER_CASES, ids=[c[0] for c in FOLDER_CASES]
)
def test_output_folder_refused_before_compiling(tmp_path, name, make, extra, message):
    path = make(tmp_path)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    compiles = jaxgd.compile_count()
    with pytest.raises(jaxgd.InputError, match=message):
        jaxgd.sweep(**case(checkpoint_dir=path, **extra))
    assert jaxgd.compile_count() == compiles
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written


def test_overwrite_removes_only_jaxgd_files(tmp_path):
    folder = _a_run(tmp_path)
    (folder / "notes.txt").write_text("mine")
    (folder / ".tmp-123-results.csv").write_text("half")
    jaxgd._io.prepare_output_dir(folder, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == [".jaxgd-files", "notes.txt"]


def test_results_of_an_older_jaxgd_count_as_a_run(tmp_path):
    (tmp_path / "results.csv").write_text("old")  # a demo folder from before the manifest
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(jaxgd.InputError, match=r"holds another run's files \(results.csv\)"):
        jaxgd._io.prepare_output_dir(tmp_path)
    jaxgd._io.prepare_output_dir(tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".jaxgd-files", "notes.txt"]


def test_a_folder_of_other_files_is_not_a_run(tmp_path):
    (tmp_path / "data.csv").write_text("mine")
    jaxgd._io.prepare_output_dir(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".jaxgd-files", "data.csv"]


def _saved(tmp_path):
    result = jaxgd.sweep(**case(validation=None, epochs=1))
    result.save(tmp_path / "saved")
    return result


def test_save_refuses_a_saved_result_and_load_an_incomplete_one(tmp_path):
    result = _saved(tmp_path)
    with pytest.raises(jaxgd.InputError, match=r"holds a saved result already.*overwrite=True"):
        result.save(tmp_path / "saved")
    (tmp_path / "saved" / "COMPLETE").unlink()
    with pytest.raises(jaxgd.InputError, match=r"no COMPLETE marker.*interrupted"):
        jaxgd.SweepResult.load(tmp_path / "saved")
    with pytest.raises(jaxgd.InputError, match=r"not a folder"):
        jaxgd.SweepResult.load(tmp_path / "missing")


def test_load_refuses_a_damaged_result(tmp_path):
    _saved(tmp_path)
    arrays = tmp_path / "saved" / "arrays.npz"
    data = bytearray(arrays.read_bytes())
    data[-100] ^= 0xFF
    arrays.write_bytes(bytes(data))
    with pytest.raises(jaxgd.InputError, match=r"arrays.npz does not match the checksum"):
        jaxgd.SweepResult.load(tmp_path / "saved")


def test_resume_refuses_a_different_sweep_naming_what_differs(tmp_path):
    options = jaxgd.SweepOptions(checkpoint_format="npz")
    jaxgd.sweep(**case(checkpoint_dir=tmp_path / "ckpt", options=options))
    other = case(space=jaxgd.grid(learning_rate=[0.2]), checkpoint_dir=tmp_path / "ckpt")
    with pytest.raises(jaxgd.InputError, match=r"different sweep \(configs differ\)"):
        jaxgd.sweep(**other, resume=True, options=options)


def test_optimizer_refuses_a_range_that_is_not_an_interval():
    with pytest.raises(jaxgd.InputError, match=r"ranges=\{'b1': '0-1'\}: write an interval"):
        jaxgd.optimizer(optax.lion, ranges={"b1": "0-1"})


def test_resume_refuses_checkpoints_of_the_other_format(tmp_path):
    jaxgd.sweep(
        **case(checkpoint_dir=tmp_path / "ckpt"),
        options=jaxgd.SweepOptions(checkpoint_format="npz"),
    )
    with pytest.raises(jaxgd.InputError, match=r"holds npz checkpoints.*checkpoint_format='npz'"):
        jaxgd.sweep(
            **case(checkpoint_dir=tmp_path / "ckpt"),
            resume=True,
            options=jaxgd.SweepOptions(checkpoint_format="orbax"),
        )


def test_best_refuses_unknown_metric_mode_and_over(tmp_path):
    result = jaxgd.sweep(**case(validation=None, epochs=1))
    with pytest.raises(jaxgd.InputError, match=r"metric='val_loss' is not recorded"):
        result.best("val_loss")
    with pytest.raises(jaxgd.InputError, match=r"mode='lowest'"):
        result.best("train_loss", mode="lowest")
    with pytest.raises(jaxgd.InputError, match=r"over='lr'"):
        result.best("train_loss", over="lr")


def test_host_data_refuses_device_arrays_and_bad_windows():
    with pytest.raises(
        jaxgd.InputError, match=r"HostData leaf \[.x.\] is a ArrayImpl: expected a NumPy array"
    ):
        jaxgd.HostData({"x": jnp.zeros((4, 2))})
    with pytest.raises(jaxgd.InputError, match=r"window_steps=0: must be a positive integer"):
        jaxgd.HostData({"x": np.zeros((4, 2))}, window_steps=0)


# Sweep files (jaxgd run): (README id, what follows a file's [sweep] keys, message); the
# space is learning_rate = 0.1 unless the case gives one. The refusal names the file, line
# and key (tests/test_runfile.py checks more keys and lines).
SWEEP_FILE = '[problem]\nname = "linear_regression"\n[sweep]\nepochs = 2\nbatch_size = 5\n'
RUNFILE_CASES = [
    (
        "runfile-optimizer-named-twice",
        'optimizer = "sgd"\n[optimizer]\nname = "adam"\n',
        r"sweep.toml:8: optimizer.name: is set in \[sweep\] optimizer too; set it in one place",
    ),
    (
        "runfile-optimizer-table-and-axis",
        '[optimizer]\nname = "adam"\n[space.parameters]\noptimizer = ["sgd", "adam"]\n',
        r"space.parameters.optimizer: an optimizer axis does not go with an \[optimizer\] table",
    ),
    (
        "runfile-optimizer-option-unknown",
        "[optimizer]\noptions = {nesterv = true}\n",
        r"optimizer.options.nesterv: not a static option of 'sgd'; did you mean 'nesterov'\?",
    ),
    (
        "runfile-optimizer-option-hyperparameter",
        "[optimizer]\noptions = {momentum = 0.9}\n",
        r"optimizer.options.momentum: is a hyperparameter of 'sgd' \(a value per config\); "
        r"set it in \[space.parameters\] \(momentum = 0.9\)",
    ),
    (
        "runfile-optimizer-option-not-bool",
        '[optimizer]\noptions = {nesterov = "yes"}\n',
        r"optimizer.options.nesterov: 'yes': must be true or false",
    ),
    (
        "runfile-optimizer-option-schedule",
        '[optimizer]\noptions = {schedule = "cosine"}\n',
        r"optimizer.options.schedule: the learning-rate schedule is \[sweep\] schedule",
    ),
    (
        "runfile-optimizer-option-and-axis",
        "[optimizer]\noptions = {nesterov = true}\n"
        "[space.parameters]\nlearning_rate = 0.1\nnesterov = [true]\n",
        r"space.parameters.nesterov: is set in \[optimizer\] options too; set it in one place",
    ),
    (
        "runfile-optimizer-not-a-table",
        "[optimizer]\noptions = 3\n",
        r"optimizer.options: 3: must be a table of static options, e.g. \{nesterov = true\}",
    ),
    (
        "runfile-range-unknown",
        '[optimizer]\nranges = {b1 = "[0, 1)"}\n',
        r"optimizer.ranges.b1: not a hyperparameter of 'sgd'; it takes \['learning_rate', "
        r"'momentum'\]",
    ),
    (
        "runfile-range-excludes-default",
        '[optimizer]\nname = "optax:lion"\nranges = {b1 = "[0, 0.5]"}\n',
        r"optimizer.ranges.b1: '\[0, 0.5\]' leaves out the default b1=0.9 that every config "
        r"uses; set b1 in \[space.parameters\] or widen the range",
    ),
]


@pytest.mark.parametrize("name, text, message", RUNFILE_CASES, ids=[c[0] for c in RUNFILE_CASES])
def test_sweep_file_refused_before_compiling(name, text, message):
    from jaxgd import runfile

    if "[space.parameters]" not in text:
        text += "[space.parameters]\nlearning_rate = 0.1\n"
    compiles = jaxgd.compile_count()
    with pytest.raises(jaxgd.InputError, match=message) as error:
        runfile.load_text(SWEEP_FILE + text, "sweep.toml", folder=".")
    assert "\n" not in str(error.value) and str(error.value).startswith("sweep.toml:")
    assert jaxgd.compile_count() == compiles


# Entries of the README table checked by the named tests above rather than a sweep call.
OTHER_CASES = [
    "host-data-not-array",
    "host-data-window-steps",
    "sample-without-sample-seed",
    "save-over-a-saved-result",
    "load-incomplete",
    "load-not-a-folder",
    "load-damaged",
    "resume-different-sweep",
    "resume-other-format",
    "range-not-an-interval",
    "best-unknown-metric",
    "best-bad-mode",
    "best-bad-over",
]
