"""The sweep spec: what a valid spec becomes, and how each mistake is named (its key path and the fix)."""

from __future__ import annotations

from pathlib import Path

import pytest

from striate import safe_yaml
from striate.errors import ConfigError
from striate.sweep.spec import load_spec, parse_duration, parse_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

GOOD = """
base: {model: lenet5, epochs: 4, batch_size: 64}
parameters:
  lr: {log_uniform: {low: 1e-3, high: 0.3}}
  optimizer: {choice: [sgd, adamw]}
  momentum: {uniform: {low: 0.5, high: 0.95}, when: {optimizer: sgd}}
  batch_size: {int: {low: 32, high: 128, step: 32}}
  model_options.dropout: {choice: [0.0, 0.25]}
objective: {metric: test/acc1, goal: max}
method: tpe
early_stopping: {hyperband: {min_epochs: 1, reduction_factor: 2}}
budget: {trials: 12, wall_time: 1h30m}
parallel: 3
seed: 7
"""


def parse(text: str):
    return parse_spec(safe_yaml.loads(text), source="spec")


def test_a_full_spec_reads_into_its_parts():
    spec = parse(GOOD)
    assert [p.name for p in spec.parameters] == ["lr", "optimizer", "momentum", "batch_size", "model_options.dropout"]
    lr, optimizer, momentum, batch, dropout = spec.parameters
    assert (lr.kind, lr.low, lr.high) == ("log_uniform", 0.001, 0.3)  # YAML 1.1 reads 1e-3 as text: taken as a number
    assert optimizer.values == ("sgd", "adamw")
    assert momentum.when == (("optimizer", "sgd"),)
    assert (batch.kind, batch.low, batch.high, batch.step, batch.grid_values()) == ("int", 32, 128, 32,
                                                                                    [32, 64, 96, 128])
    assert dropout.values == (0.0, 0.25)
    assert spec.objective.direction == "maximize"
    assert (spec.method, spec.parallel, spec.seed) == ("tpe", 3, 7)
    assert (spec.early_stopping.method, spec.early_stopping.min_epochs, spec.early_stopping.reduction_factor,
            spec.early_stopping.max_epochs) == ("hyperband", 1, 2, 4)  # max_epochs: the base's epochs
    assert (spec.budget.trials, spec.budget.wall_time_s) == (12, 5400.0)
    assert spec.base_config().batch_size == 64


def test_the_example_spec_is_valid():
    spec = load_spec(EXAMPLES / "sweep-lenet5.yaml")
    assert {p.name for p in spec.parameters} == {"lr", "weight_decay", "batch_size"}
    assert spec.early_stopping.method == "asha" and spec.method == "tpe"


def test_a_grid_without_a_budget_runs_the_whole_grid():
    spec = parse("""
parameters: {lr: {choice: [0.1, 0.01]}, epochs: {int: {low: 1, high: 3}}}
objective: {metric: test/loss, goal: min}
method: grid
""")
    assert spec.grid_size() == 6 and spec.max_trials() == 6
    assert spec.objective.direction == "minimize"
    assert spec.max_epochs() == 3  # the top of the swept epochs


OBJ = "objective: {metric: test/acc1, goal: max}\nbudget: {trials: 3}\n"

# (spec text, words the problem must contain (the key path), words the fix must contain)
MISTAKES = [
    ("parameters: {lr: {choice: [0.1]}}\nobjectve: {metric: test/acc1, goal: max}\n", "objectve", "objective"),
    ("parameters: {lrr: {choice: [0.1]}}\n" + OBJ, "parameters.lrr", "'lr'"),
    ("parameters: {lr: {choise: [0.1]}}\n" + OBJ, "parameters.lr.choise", "'choice'"),
    ("parameters: {lr: {uniform: {low: 0.1, hihg: 1}}}\n" + OBJ, "parameters.lr.uniform.hihg", "'high'"),
    ("parameters: {lr: {uniform: {low: 0.1}}}\n" + OBJ, "parameters.lr.uniform", "high"),
    ("parameters: {lr: {log_uniform: {low: 0, high: 1}}}\n" + OBJ, "parameters.lr.log_uniform.low", "positive"),
    ("parameters: {lr: {uniform: {low: 0.0, high: 1}}}\n" + OBJ, "parameters.lr.uniform.low", "lr"),
    ("parameters: {lr: {uniform: {low: 1, high: 0.1}}}\n" + OBJ, "parameters.lr.uniform", "swap"),
    ("parameters: {momentum: {uniform: {low: 0.5, high: 1.0}}}\n" + OBJ, "parameters.momentum.uniform.high",
     "momentum"),
    ("parameters: {optimizer: {choice: [sgd, adam]}}\n" + OBJ, "parameters.optimizer.choice[1]", "adamw"),
    ("parameters: {batch_size: {uniform: {low: 16, high: 64}}}\n" + OBJ, "parameters.batch_size.uniform",
     "int"),
    ("parameters: {model: {int: {low: 1, high: 3}}}\n" + OBJ, "parameters.model.int", "choice"),
    ("parameters: {batch_size: {int: {low: 16, high: 60, step: 16}}}\n" + OBJ, "parameters.batch_size.int",
     "high 48"),
    ("parameters: {batch_size: {int: {low: 16, high: 64, step: 0}}}\n" + OBJ, "parameters.batch_size.int.step",
     "step"),
    ("parameters: {lr: {choice: [0.1], uniform: {low: 0.1, high: 1}}}\n" + OBJ, "parameters.lr", "choice"),
    ("parameters: {lr: {choice: [[0.1]]}}\n" + OBJ, "parameters.lr.choice[0]", "plain values"),
    ("parameters: {lr: {choice: []}}\n" + OBJ, "parameters.lr.choice", "choice"),
    ("parameters: {lr: {choice: [0.1, 0.1]}}\n" + OBJ, "parameters.lr.choice", "once"),
    ("parameters: {model_options: {choice: [{}]}}\n" + OBJ, "parameters.model_options", "model_options.NAME"),
    ("parameters:\n  momentum: {uniform: {low: 0.1, high: 0.9}, when: {optimizer: sgd}}\n"
     "  optimizer: {choice: [sgd, adamw]}\n" + OBJ, "parameters.momentum.when.optimizer", "above momentum"),
    ("parameters:\n  optimizer: {choice: [sgd, adamw]}\n  momentum: {uniform: {low: 0.1, high: 0.9}, "
     "when: {optimizer: adam}}\n" + OBJ, "parameters.momentum.when.optimizer", "optimizer's values"),
    ("parameters: {lr: {uniform: {low: 0.1, high: 1}}}\nobjective: {metric: test/acc1, goal: max}\nmethod: grid\n",
     "parameters.lr", "choice"),
    ("parameters:\n  optimizer: {choice: [sgd, adamw]}\n  momentum: {choice: [0.5, 0.9], when: {optimizer: sgd}}\n"
     "objective: {metric: test/acc1, goal: max}\nmethod: grid\n", "parameters.momentum.when", "random or tpe"),
    ("parameters: {lr: {choice: [0.1]}}\n" + OBJ + "method: bayes\n", "method", "grid, random, tpe"),
    ("parameters: {lr: {choice: [0.1]}}\nobjective: {metric: test/acc, goal: max}\nbudget: {trials: 3}\n",
     "objective.metric", "test/acc1, test/acc5"),
    ("parameters: {lr: {choice: [0.1]}}\nobjective: {metric: test/acc1, goal: maximize}\nbudget: {trials: 3}\n",
     "objective.goal", "max, min"),
    ("parameters: {lr: {choice: [0.1]}}\nobjective: {metric: test/acc1}\nbudget: {trials: 3}\n",
     "'goal'", "goal: max"),
    ("parameters: {lr: {choice: [0.1]}}\n" + OBJ + "early_stopping: {asha: {min_epoch: 1}}\n",
     "early_stopping.asha.min_epoch", "'min_epochs'"),
    ("parameters: {lr: {choice: [0.1]}}\n" + OBJ + "early_stopping: ashaa\n", "early_stopping", "'asha'"),
    ("parameters: {lr: {choice: [0.1]}}\n" + OBJ + "early_stopping: {asha: {reduction_factor: 1}}\n",
     "early_stopping.asha.reduction_factor", "reduction_factor: 2"),
    ("base: {epochs: 3}\nparameters: {lr: {choice: [0.1]}}\n" + OBJ + "early_stopping: {asha: {min_epochs: 3}}\n",
     "early_stopping.asha.min_epochs", "below 3"),
    ("base: {epochs: 3}\nparameters: {lr: {choice: [0.1]}}\n" + OBJ
     + "early_stopping: {hyperband: {max_epochs: 9}}\n", "early_stopping.hyperband.max_epochs", "3 or less"),
    ("parameters: {lr: {choice: [0.1]}}\nobjective: {metric: test/acc1, goal: max}\nbudget: {trials: 0}\n",
     "budget.trials", "trials: 1"),
    ("parameters: {lr: {choice: [0.1]}}\nobjective: {metric: test/acc1, goal: max}\nbudget: {wall_time: 2 hours}\n",
     "budget.wall_time", "30m"),
    ("parameters: {lr: {choice: [0.1]}}\nobjective: {metric: test/acc1, goal: max}\nbudget: {trails: 3}\n",
     "budget.trails", "'trials'"),
    ("parameters: {lr: {choice: [0.1]}}\nobjective: {metric: test/acc1, goal: max}\n", "budget", "trials: 20"),
    ("parameters: {lr: {choice: [0.1]}}\n" + OBJ + "parallel: 0\n", "parallel", "parallel: 1"),
    ("parameters: {lr: {choice: [0.1]}}\n" + OBJ + "seed: -1\n", "seed", "seed: 0"),
    ("base: {epoch: 3}\nparameters: {lr: {choice: [0.1]}}\n" + OBJ, "base", "'epochs'"),
    ("base: {lr: -1}\nparameters: {lr: {choice: [0.1]}}\n" + OBJ, "base.lr", "give base.lr a valid value"),
    ("base: {lr: 1%s}\nparameters: {epochs: {choice: [1]}}\n" % ("0" * 400) + OBJ, "base.lr", "lr=0.05"),
    ("base: {optimizer: adam}\nparameters: {lr: {choice: [0.1]}}\n" + OBJ, "base.optimizer", "adamw"),
    ("parameters:\n  lr: {uniform: {low: 0.1, high: 1}}\n  momentum: {choice: [0.5], when: {lr: 0.5}}\n" + OBJ,
     "parameters.momentum.when.lr", "choice or int"),
    ("parameters:\n  epochs: {int: {low: 2, high: 6, step: 2}}\n  lr: {choice: [0.1], when: {epochs: 3}}\n" + OBJ,
     "parameters.lr.when.epochs", "epochs's values"),
    ("base: [1]\nparameters: {lr: {choice: [0.1]}}\n" + OBJ, "base", "base: {model"),
    ("parameters: {}\n" + OBJ, "parameters", "log_uniform"),
    (OBJ, "'parameters'", "parameters:"),
    ("- 1\n", "spec must be a mapping", "base, parameters"),
]


@pytest.mark.parametrize(("text", "problem", "fix"), MISTAKES, ids=[m[1] for m in MISTAKES])
def test_every_mistake_names_its_key_and_the_fix(text, problem, fix):
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert problem in caught.value.problem, caught.value.problem
    assert fix in (caught.value.fix or ""), caught.value.fix


def test_base_keys_are_read_as_training_settings_name_them():
    spec = parse("base: {model-options: {dropout: 0.1}, batch-size: 32}\n"
                 "parameters: {model_options.width: {choice: [8]}}\n" + OBJ)
    assert spec.base == {"model_options": {"dropout": 0.1}, "batch_size": 32}


def test_a_grid_too_large_to_hold_is_refused():
    with pytest.raises(ConfigError, match="points, over the limit"):
        parse("parameters: {epochs: {int: {low: 1, high: 1000000000}}}\n"
              "objective: {metric: test/acc1, goal: max}\nmethod: grid\n")


@pytest.mark.parametrize(("text", "seconds"), [("2h", 7200), ("30m", 1800), ("1h30m", 5400), ("90s", 90),
                                               ("1.5h", 5400), (45, 45)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2", "h", "2x", "1h1h", "0m", "-3m", True, None, [1]])
def test_bad_durations_are_refused(text):
    with pytest.raises(ConfigError, match="budget.wall_time"):
        parse_duration(text)


def test_a_missing_spec_file_is_one_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read sweep spec"):
        load_spec(tmp_path / "nope.yaml")
