"""The Optuna study a spec builds: its sampler, pruner and direction, and the configs its trials get."""

from __future__ import annotations

import itertools
import math

import optuna
import pytest

from striate import safe_yaml
from striate.config import TrainConfig
from striate.sweep.search import create_study, make_pruner, make_sampler, report, suggest
from striate.sweep.spec import parse_spec

optuna.logging.set_verbosity(optuna.logging.WARNING)


def spec_of(text: str):
    return parse_spec(safe_yaml.loads(text), source="spec")


def run(spec, trials: int | None = None) -> list[dict]:
    """Trials of a study driven by Optuna, each one's suggested config; the objective is a fixed function."""
    study = create_study(spec)
    configs: list[dict] = []

    def objective(trial):
        config = suggest(spec, trial)
        configs.append(config)
        return -abs(math.log10(config["lr"]) + 1.5) + config["batch_size"] / 1000

    study.optimize(objective, n_trials=trials)
    return configs


def test_a_grid_enumerates_exactly_the_product():
    spec = spec_of("""
base: {epochs: 2}
parameters:
  lr: {choice: [0.1, 0.03, 0.01]}
  batch_size: {int: {low: 32, high: 96, step: 32}}
  optimizer: {choice: [sgd, adamw]}
objective: {metric: test/acc1, goal: max}
method: grid
""")
    assert isinstance(make_sampler(spec), optuna.samplers.GridSampler)
    configs = run(spec, trials=None)  # the grid sampler stops the study once every point was tried
    seen = [(c["lr"], c["batch_size"], c["optimizer"]) for c in configs]
    assert len(seen) == spec.grid_size() == 18
    assert set(seen) == set(itertools.product([0.1, 0.03, 0.01], [32, 64, 96], ["sgd", "adamw"]))
    assert all(c["epochs"] == 2 for c in configs)  # the base reaches every trial


SEARCH = """
parameters:
  lr: {log_uniform: {low: 0.001, high: 0.5}}
  weight_decay: {uniform: {low: 0.0, high: 0.01}}
  batch_size: {choice: [32, 64, 128]}
objective: {metric: test/acc1, goal: max}
method: %s
seed: %d
budget: {trials: 14}
"""


@pytest.mark.parametrize(("method", "sampler"), [("random", optuna.samplers.RandomSampler),
                                                  ("tpe", optuna.samplers.TPESampler)])
def test_random_and_tpe_are_reproducible_from_the_seed(method, sampler):
    spec = spec_of(SEARCH % (method, 3))
    assert isinstance(make_sampler(spec), sampler)
    first, again = run(spec, 14), run(spec, 14)  # 14 > TPE's 10 random start-up trials: its model is used too
    assert first == again
    other = run(spec_of(SEARCH % (method, 4)), 14)
    assert [c["lr"] for c in other] != [c["lr"] for c in first]
    assert all(0.001 <= c["lr"] <= 0.5 and c["batch_size"] in (32, 64, 128) for c in first)


def test_conditional_parameters_appear_only_under_their_condition():
    spec = spec_of("""
base: {momentum: 0.8, nesterov: false}
parameters:
  optimizer: {choice: [sgd, adamw]}
  momentum: {uniform: {low: 0.5, high: 0.95}, when: {optimizer: sgd}}
  nesterov: {choice: [true, false], when: {optimizer: sgd}}
  lr: {log_uniform: {low: 0.001, high: 0.1}}
objective: {metric: test/loss, goal: min}
method: random
seed: 1
budget: {trials: 30}
""")
    study = create_study(spec)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    kinds = set()
    for _ in range(30):
        trial = study.ask()
        config = suggest(spec, trial)
        kinds.add(config["optimizer"])
        if config["optimizer"] == "sgd":
            assert {"momentum", "nesterov"} <= set(trial.params)
            assert config["momentum"] == trial.params["momentum"]
        else:
            assert set(trial.params) == {"optimizer", "lr"}
            assert (config["momentum"], config["nesterov"]) == (0.8, False)  # the base's values
        study.tell(trial, 1.0)
    assert kinds == {"sgd", "adamw"}


def test_model_options_are_merged_into_the_base_options():
    spec = spec_of("""
base: {model_options: {dropout: 0.1}}
parameters: {model_options.width: {int: {low: 8, high: 16, step: 8}}}
objective: {metric: test/acc1, goal: max}
method: grid
""")
    configs = run(spec)
    assert sorted(c["model_options"]["width"] for c in configs) == [8, 16]
    assert all(c["model_options"]["dropout"] == 0.1 for c in configs)
    TrainConfig.from_mapping(configs[0])  # a full, valid training config


@pytest.mark.parametrize(("early", "pruner"), [
    ("none", optuna.pruners.NopPruner),
    ("{asha: {min_epochs: 2, reduction_factor: 4}}", optuna.pruners.SuccessiveHalvingPruner),
    ("{hyperband: {min_epochs: 1, reduction_factor: 3}}", optuna.pruners.HyperbandPruner),
])
def test_the_pruner_follows_early_stopping(early, pruner):
    spec = spec_of(f"base: {{epochs: 9}}\nparameters: {{lr: {{choice: [0.1]}}}}\n"
                   f"objective: {{metric: test/acc1, goal: max}}\nbudget: {{trials: 2}}\nearly_stopping: {early}\n")
    assert type(make_pruner(spec)) is pruner


def test_asha_prunes_a_trial_that_trails_and_keeps_one_that_leads():
    spec = spec_of("""
base: {epochs: 4}
parameters: {lr: {choice: [0.1]}}
objective: {metric: test/acc1, goal: max}
early_stopping: {asha: {min_epochs: 1, reduction_factor: 2}}
budget: {trials: 10}
""")
    study = create_study(spec)
    for value in (0.5, 0.6, 0.7, 0.8):  # finished trials: their epoch-1 values set the bar
        trial = study.ask()
        report(trial, 1, value)
        study.tell(trial, value)
    poor, good = study.ask(), study.ask()
    assert report(poor, 1, 0.1) is True
    assert report(good, 1, 0.9) is False


def test_the_goal_sets_the_direction():
    spec = spec_of(SEARCH % ("random", 0))
    assert create_study(spec).direction == optuna.study.StudyDirection.MAXIMIZE
