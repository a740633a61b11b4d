"""Property: whatever mapping (or YAML text) a spec is, reading it ends in a SweepSpec or one ConfigError."""

from __future__ import annotations

import optuna
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from striate import safe_yaml
from striate.errors import ConfigError
from striate.sweep.search import create_study, suggest
from striate.sweep.spec import EARLY_STOPPING, KINDS, METHODS, OBJECTIVE_METRICS, TOP_KEYS, SweepSpec, parse_spec

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
objectives = st.fixed_dictionaries({"metric": st.sampled_from(OBJECTIVE_METRICS) | scalars,
                                    "goal": st.sampled_from(["max", "min"]) | scalars})
distributions = st.one_of(
    st.fixed_dictionaries({"choice": st.lists(scalars, min_size=1, max_size=4)}),
    st.fixed_dictionaries({st.sampled_from(["uniform", "log_uniform", "int"]): st.fixed_dictionaries(
        {"low": scalars, "high": scalars}, optional={"step": scalars})}),
    trees,
)
params = st.dictionaries(st.sampled_from(["lr", "epochs", "batch_size", "momentum", "optimizer", "nesterov",
                                          "model_options.width", "model"]) | keys,
                         st.one_of(distributions, st.builds(lambda d, w: {**d, "when": w} if isinstance(d, dict)
                                                            else d, distributions, trees)), max_size=4)
specs = st.fixed_dictionaries(
    {"parameters": params | trees, "objective": objectives | trees},
    optional={"base": st.dictionaries(st.sampled_from(WORDS) | keys, scalars, max_size=4) | trees,
              "method": st.sampled_from(METHODS) | scalars, "early_stopping": trees | st.sampled_from(EARLY_STOPPING),
              "budget": st.fixed_dictionaries({}, optional={"trials": scalars, "wall_time": scalars}) | trees,
              "parallel": scalars, "seed": scalars, "extra": trees},
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
