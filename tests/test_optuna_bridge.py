"""The Optuna bridge: ask a batch of trials, train them as one sweep, tell the results."""

import numpy as np
import pytest
from reference import DATA, PROBLEM

import jaxgd

optuna = pytest.importorskip("optuna")
FloatDistribution = optuna.distributions.FloatDistribution
TrialState = optuna.trial.TrialState

DISTRIBUTIONS = {
    "learning_rate": FloatDistribution(1e-3, 1.0, log=True),
    "momentum": FloatDistribution(0.0, 0.95),
}
SETTINGS = dict(epochs=3, batch_size=32, fixed={"optimizer": "sgd"})


@pytest.fixture(autouse=True)
def quiet_optuna():
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(verbosity)


def test_rounds_reuse_one_program_and_tell_every_trial_its_sweep_result():
    study = optuna.create_study(
        sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=4),
        pruner=optuna.pruners.NopPruner(),
    )
    before = jaxgd.compile_count()
    first = jaxgd.optuna.optimize(study, PROBLEM, DATA, DISTRIBUTIONS, 4, batch=4, **SETTINGS)
    compiled_first_round = jaxgd.compile_count() - before
    assert compiled_first_round > 0
    # Two more rounds, the last one partial (padded to the same shape): no compile.
    rounds = jaxgd.optuna.optimize(study, PROBLEM, DATA, DISTRIBUTIONS, 7, batch=4, **SETTINGS)
    assert jaxgd.compile_count() - before == compiled_first_round
    assert len(rounds) == 2 and len(study.trials) == 11
    for result, trials in zip(
        first + rounds, [study.trials[:4], study.trials[4:8], study.trials[8:]]
    ):
        for k, trial in enumerate(trials):
            assert trial.state == TrialState.COMPLETE
            assert trial.params == {
                "learning_rate": result.configs[k]["learning_rate"],
                "momentum": result.configs[k]["momentum"],
            }
            curve = result.history["val_loss"][k]
            assert trial.value == curve[-1]
            assert trial.intermediate_values == {1: curve[0], 2: curve[1], 3: curve[2]}


def test_diverged_trials_fail_and_pruned_trials_stop_training():
    study = optuna.create_study(
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0),
    )
    wide = {**DISTRIBUTIONS, "learning_rate": FloatDistribution(1e-7, 1e7, log=True)}
    for lr in (1e6, 0.1, 0.2, 0.3):
        study.enqueue_trial({"learning_rate": lr, "momentum": 0.9})
    jaxgd.optuna.optimize(study, PROBLEM, DATA, wide, 4, batch=4, **SETTINGS)
    assert [t.state for t in study.trials] == [TrialState.FAIL] + [TrialState.COMPLETE] * 3
    # A learning rate too small to move is worse than the median at epoch 1: pruned there.
    for lr in (1e-6, 0.15, 0.25, 0.35):
        study.enqueue_trial({"learning_rate": lr, "momentum": 0.0})
    (result,) = jaxgd.optuna.optimize(study, PROBLEM, DATA, wide, 4, batch=4, **SETTINGS)
    assert study.trials[4].state == TrialState.PRUNED
    assert list(study.trials[4].intermediate_values) == [1]
    assert result.status[0] == "stopped" and result.stopped_epoch[0] == 1
    assert np.isnan(result.history["val_loss"][0, 1:]).all()


def test_an_sqlite_study_resumes_where_it_stopped(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(
        study_name="resume",
        storage=storage,
        sampler=optuna.samplers.TPESampler(seed=1),
        pruner=optuna.pruners.NopPruner(),
    )
    jaxgd.optuna.optimize(study, PROBLEM, DATA, DISTRIBUTIONS, 4, batch=4, **SETTINGS)
    del study
    resumed = optuna.load_study(
        study_name="resume",
        storage=storage,
        sampler=optuna.samplers.TPESampler(seed=1),
        pruner=optuna.pruners.NopPruner(),
    )
    assert len(resumed.trials) == 4
    jaxgd.optuna.optimize(resumed, PROBLEM, DATA, DISTRIBUTIONS, 4, batch=4, **SETTINGS)
    again = optuna.load_study(study_name="resume", storage=storage)
    assert [t.number for t in again.trials] == list(range(8))
    assert all(t.state == TrialState.COMPLETE for t in again.trials)
    assert again.best_value == min(t.value for t in again.trials)
    assert len(again.trials[7].intermediate_values) == 3


def test_bad_arguments_are_refused_before_asking():
    study = optuna.create_study()
    with pytest.raises(jaxgd.InputError, match="batch=0"):
        jaxgd.optuna.optimize(study, PROBLEM, DATA, DISTRIBUTIONS, 4, batch=0, epochs=1)
    with pytest.raises(jaxgd.InputError, match="both fixed and distributions"):
        jaxgd.optuna.optimize(
            study, PROBLEM, DATA, DISTRIBUTIONS, 4, epochs=1, fixed={"momentum": 0.0}
        )
    assert len(study.trials) == 0
