"""Property: whatever mapping (or YAML text) a spec is, reading it ends in a SweepSpec or one ConfigError."""

from __future__ import annotations

import optuna
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from striate import safe_yaml
from striate.errors import ConfigError
from striate.sweep.search import create_study, suggest
from striate.sweep.spec import (
    EARLY_STOPPING,
    GOALS,
    KINDS,
    METHODS,
    OBJECTIVE_METRICS,
    TOP_KEYS,
    SweepSpec,
    parse_spec,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

# Words a spec is made of, so that generated mappings often get deep into the parser, not just its first check.
WORDS = [*TOP_KEYS, *KINDS, *METHODS, *EARLY_STOPPING, *OBJECTIVE_METRICS, "when", "low", "high", "step", "metric",
         "goal", "max", "min", "trials", "wall_time", "min_epochs", "reduction_factor", "max_epochs", "lr", "epochs",
         "batch_size", "optimizer", "momentum", "nesterov", "weight_decay", "model", "model_options",
         "model_options.width", "sgd", "adamw", "lenet5", "30m", "1h", "tags", "schedule"]

scalars = (st.none() | st.booleans() | st.integers(-10, 300) | st.integers() | st.floats(allow_nan=True)
           | st.floats(0.0001, 1.0) | st.sampled_from(WORDS) | st.text(max_size=6))
keys = st.sampled_from(WORDS) | st.text(max_size=6) | st.integers(0, 3)
trees = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
                     max_leaves=25)
objectives = st.fixed_dictionaries({"metric": st.sampled_from(OBJECTIVE_METRICS), "goal": st.sampled_from(GOALS)})
numbers = st.integers(-2, 300) | st.floats(-1.0, 2.0) | st.sampled_from([0, 1, 2, 16, 64, 1e-4, 0.5, "1e-3", 10**400])
names = st.sampled_from(["lr", "epochs", "batch_size", "momentum", "optimizer", "nesterov", "weight_decay",
                         "model_options.width", "model", "label_smoothing"])


@st.composite
def distributions(draw, earlier: list[str]) -> object:
    kind = draw(st.sampled_from([*KINDS * 3, "tree"]))
    if kind == "tree":
        return draw(trees)
    if kind == "choice":
        plain = st.sampled_from(["sgd", "adamw", True, 0.1, 0.5, 32, 2])
        body: object = draw(st.lists(st.one_of(scalars, *[plain] * 4), min_size=1, max_size=4))
    else:
        body = draw(st.fixed_dictionaries({"low": numbers, "high": numbers},
                                          optional={"step": st.integers(-1, 64)} if kind == "int" else {}))
    entry = {kind: body}
    if earlier and draw(st.booleans()):
        entry["when"] = {draw(st.sampled_from(earlier)): draw(scalars | numbers)}
    return entry


@st.composite
def search_spaces(draw) -> dict:
    space: dict = {}
    for name in draw(st.lists(names, min_size=1, max_size=4, unique=True)):
        space[name] = draw(distributions(list(space)))
    return space


def mostly(good):
    """``good`` nine times in ten, an arbitrary tree otherwise."""
    return st.one_of(*[good] * 9, trees)


# Spec-shaped mappings whose parts are usually right, so that most examples get deep into the parser;
# any part may be replaced by an arbitrary tree.
specs = st.fixed_dictionaries(
    {"parameters": mostly(search_spaces()), "objective": mostly(objectives)},
    optional={"base": mostly(st.dictionaries(names, numbers, max_size=2)),
              "method": mostly(st.sampled_from(METHODS)),
              "early_stopping": st.sampled_from(EARLY_STOPPING) | st.fixed_dictionaries(
                  {st.sampled_from(["asha", "hyperband"]): st.fixed_dictionaries(
                      {}, optional={"min_epochs": numbers, "reduction_factor": numbers, "max_epochs": numbers})})
              | trees,
              "budget": mostly(st.fixed_dictionaries({"trials": st.integers(0, 4) | scalars},
                                                     optional={"wall_time": st.sampled_from(["30m", "1h", "2x"])})),
              "parallel": st.integers(0, 4) | scalars, "seed": st.integers(-1, 9) | scalars},
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs | trees)
def test_any_mapping_is_a_spec_or_one_config_error(data):
    try:
        spec = parse_spec(data)
    except ConfigError as exc:
        assert exc.problem and exc.fix
        return
    assert isinstance(spec, SweepSpec)
    study = create_study(spec)  # every spec that reads builds its study and suggests configs
    for _ in range(2):
        trial = study.ask()
        try:
            suggest(spec, trial)
        except ConfigError:  # two values that are each valid can clash (nesterov with momentum 0)
            pass
        study.tell(trial, 0.0)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_a_spec_or_one_config_error(text):
    try:
        parse_spec(safe_yaml.loads(text))
    except ConfigError as exc:
        assert exc.problem and exc.fix


RANGES = {  # for each setting, a strategy of distributions that are valid for it
    "lr": st.one_of(
        st.builds(lambda lo, hi: {"log_uniform": {"low": lo, "high": hi}}, st.floats(1e-4, 0.01), st.floats(0.02, 1.0)),
        st.builds(lambda v: {"choice": v}, st.lists(st.sampled_from([0.01, 0.03, 0.1]), min_size=1, max_size=3,
                                                    unique=True))),
    "weight_decay": st.builds(lambda lo, hi: {"uniform": {"low": lo, "high": hi}}, st.floats(0, 1e-3),
                              st.floats(2e-3, 1e-2)),
    "batch_size": st.builds(lambda lo, n, step: {"int": {"low": lo, "high": lo + n * step, "step": step}},
                            st.integers(1, 32), st.integers(0, 4), st.integers(1, 16)),
    "optimizer": st.builds(lambda v: {"choice": v}, st.lists(st.sampled_from(["sgd", "adamw"]), min_size=1,
                                                             max_size=2, unique=True)),
    "epochs": st.builds(lambda hi: {"int": {"low": 1, "high": hi}}, st.integers(1, 4)),
    "momentum": st.builds(lambda lo, hi: {"uniform": {"low": lo, "high": hi}}, st.floats(0.1, 0.5),
                          st.floats(0.6, 0.95)),
}


@st.composite
def valid_specs(draw) -> dict:
    space: dict = {}
    for name in draw(st.permutations(list(RANGES)))[: draw(st.integers(1, len(RANGES)))]:
        entry = dict(draw(RANGES[name]))
        choices = [(p, v) for p, e in space.items() if "choice" in e for v in e["choice"]]
        if choices and draw(st.booleans()):
            parent, value = draw(st.sampled_from(choices))
            entry["when"] = {parent: value}
        space[name] = entry
    return {"base": {"epochs": 3}, "parameters": space, "objective": {"metric": "test/loss", "goal": "min"},
            "method": draw(st.sampled_from(["random", "tpe"])), "seed": draw(st.integers(0, 5)),
            "budget": {"trials": 4}}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs())
def test_a_valid_spec_reads_and_every_trial_stays_in_its_space(data):
    spec = parse_spec(data)
    study = create_study(spec)
    for _ in range(3):
        trial = study.ask()
        config = suggest(spec, trial)
        for p in spec.parameters:
            held = all(trial.params.get(cond) == wanted for cond, wanted in p.when)
            assert (p.name in trial.params) == held
            if not held:
                continue
            value = config[p.name]
            assert value == trial.params[p.name]
            if p.kind == "choice":
                assert value in p.values
            else:
                assert p.low <= value <= p.high
                if p.kind == "int":
                    assert (value - p.low) % p.step == 0
        study.tell(trial, config["lr"])
