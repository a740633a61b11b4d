"""The sweep spec: a base training config, a search space, an objective, a method, early stopping and a budget.

A spec is YAML (read with :mod:`striate.safe_yaml`) and is checked completely before anything runs:
every swept parameter must be a real training setting (:class:`striate.config.TrainConfig`) or a
``model_options.<name>`` entry, every bound must be a value that setting accepts, and every error
names its key path (``parameters.lr.log_uniform.low``) and the fix. Unknown keys are refused with
the closest known one. This module is plain data and imports no Optuna: ``search.py`` turns a spec
into an Optuna study.

    base: {model: lenet5, data: fashion-mnist, epochs: 6}
    parameters:
      lr: {log_uniform: {low: 0.001, high: 0.3}}
      optimizer: {choice: [sgd, adamw]}
      momentum: {uniform: {low: 0.5, high: 0.95}, when: {optimizer: sgd}}
      batch_size: {int: {low: 64, high: 256, step: 64}}
    objective: {metric: test/acc1, goal: max}
    method: tpe
    early_stopping: {asha: {min_epochs: 1, reduction_factor: 3}}
    budget: {trials: 20, wall_time: 30m}
    parallel: 2
    seed: 0
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping

from striate.config import TrainConfig, coerce
from striate.errors import ConfigError

KINDS = ("choice", "uniform", "log_uniform", "int")
METHODS = ("grid", "random", "tpe")
GOALS = ("max", "min")
EARLY_STOPPING = ("none", "asha", "hyperband")
# What the engine reports after every epoch (train/engine.py logs these at each epoch's end): the
# only metrics a pruner can be fed. Final-only figures (best_test_acc1) cannot drive early stopping.
OBJECTIVE_METRICS = ("test/acc1", "test/acc5", "test/loss", "train/epoch_acc1", "train/epoch_loss")
TOP_KEYS = ("base", "parameters", "objective", "method", "early_stopping", "budget", "parallel", "seed")
SCALAR = (bool, int, float, str)
MAX_GRID = 100_000  # Optuna's GridSampler holds every point in memory; a real grid is far smaller


@dataclass(frozen=True)
class Parameter:
    """One dimension of the search space: a TrainConfig setting (or ``model_options.<name>``) and its range."""

    name: str
    kind: str  # one of KINDS
    values: tuple[Any, ...] = ()  # choice
    low: float | int | None = None  # uniform, log_uniform, int
    high: float | int | None = None
    step: int = 1  # int
    when: tuple[tuple[str, Any], ...] = ()  # (parameter, value) pairs that must all hold

    def count(self) -> int:
        """How many values a grid search visits (choice and int parameters only)."""
        if self.kind == "int":
            assert self.low is not None and self.high is not None
            return len(range(int(self.low), int(self.high) + 1, self.step))
        return len(self.grid_values())

    def grid_values(self) -> list[Any]:
        """Every value a grid search visits (choice and int parameters only)."""
        if self.kind == "choice":
            return list(self.values)
        if self.kind == "int":
            assert self.low is not None and self.high is not None
            return list(range(int(self.low), int(self.high) + 1, self.step))
        raise ConfigError(f"parameter {self.name!r} is {self.kind}: a grid cannot enumerate it",
                          "use method random or tpe, or give it as choice or int")

    def describe(self) -> str:
        """The range in a few words: ``log_uniform 0.001 .. 0.3``."""
        if self.kind == "choice":
            return "choice " + " | ".join(_short(v) for v in self.values)
        text = f"{self.kind} {_short(self.low)} .. {_short(self.high)}"
        return text + (f" step {self.step}" if self.kind == "int" and self.step != 1 else "")


@dataclass(frozen=True)
class Objective:
    """The per-epoch metric the search optimizes, and whether higher or lower is better."""

    metric: str
    goal: str  # max or min

    @property
    def direction(self) -> Literal["maximize", "minimize"]:
        """Optuna's word for the goal."""
        return "maximize" if self.goal == "max" else "minimize"


@dataclass(frozen=True)
class EarlyStopping:
    """How unpromising trials are stopped early: none, asha (successive halving) or hyperband."""

    method: str = "none"
    min_epochs: int = 1
    reduction_factor: int = 3
    max_epochs: int | None = None  # hyperband: the most epochs a trial trains (default: the sweep's most)


@dataclass(frozen=True)
class Budget:
    """When the sweep ends: after ``trials`` trials or ``wall_time_s`` seconds, whichever comes first."""

    trials: int | None = None
    wall_time_s: float | None = None


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: everything needed to build the search and run its trials."""

    base: dict[str, Any]  # the training settings every trial starts from (as written, validated)
    parameters: tuple[Parameter, ...]
    objective: Objective
    method: str = "random"
    early_stopping: EarlyStopping = EarlyStopping()
    budget: Budget = Budget()
    parallel: int = 1
    seed: int = 0
    source: str = "sweep spec"

    def parameter(self, name: str) -> Parameter:
        """The parameter called ``name``."""
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(name)

    def grid_size(self) -> int:
        """How many trials a grid search has (the product of every parameter's values)."""
        return math.prod(p.count() for p in self.parameters)

    def max_trials(self) -> int | None:
        """The trial budget: the spec's, or for a grid without one, the grid's size."""
        if self.budget.trials is not None:
            return self.budget.trials
        return self.grid_size() if self.method == "grid" else None

    def base_config(self) -> TrainConfig:
        """The base training config (what a trial gets for every setting the search leaves alone)."""
        return TrainConfig.from_mapping(self.base, source=f"{self.source}: base")

    def max_epochs(self) -> int:
        """The most epochs any trial can train (the base's, or the top of a swept ``epochs``)."""
        for p in self.parameters:
            if p.name == "epochs":
                return int(max(p.values) if p.kind == "choice" else p.high)  # type: ignore[arg-type, type-var]
        return self.base_config().epochs


# -- reading ----------------------------------------------------------------------------------------

def load_spec(path: Path) -> SweepSpec:
    """Read and validate a sweep spec file (YAML or JSON); any problem is one ConfigError naming its key."""
    from striate import safe_yaml

    data = safe_yaml.load_path(path, "sweep spec")
    return parse_spec(data, source=f"sweep spec {path}")


def parse_spec(data: Any, source: str = "sweep spec") -> SweepSpec:
    """Validate an already-parsed spec mapping into a :class:`SweepSpec`."""
    top = _mapping(data, "", source, "write `key: value` lines: base, parameters, objective, method, budget")
    _known_keys(top, TOP_KEYS, "", source)
    for required in ("parameters", "objective"):
        if required not in top:
            raise ConfigError(f"{source} has no {required!r}", _EXAMPLES[required])

    base = _base(top.get("base"), source)
    method = _word(top.get("method", "random"), METHODS, "method", source)
    parameters = _parameters(top["parameters"], base, method, source)
    objective = _objective(top["objective"], source)
    budget = _budget(top.get("budget"), source)
    parallel = _count(top.get("parallel", 1), "parallel", source, minimum=1)
    seed = _count(top.get("seed", 0), "seed", source, minimum=0)
    spec = SweepSpec(base, parameters, objective, method, EarlyStopping(), budget, parallel, seed, source)
    early = _early_stopping(top.get("early_stopping", "none"), spec, source)
    spec = dataclasses.replace(spec, early_stopping=early)
    if method != "grid" and budget.trials is None and budget.wall_time_s is None:
        raise ConfigError(f"{source}: a {method} search has no end: `budget` sets neither trials nor wall_time",
                          "add e.g. `budget: {trials: 20}` or `budget: {wall_time: 30m}`")
    return spec


_EXAMPLES = {
    "parameters": "add e.g. `parameters: {lr: {log_uniform: {low: 0.001, high: 0.3}}}`",
    "objective": "add e.g. `objective: {metric: test/acc1, goal: max}`",
}


def _where(path: str, source: str) -> str:
    return f"{path} in {source}" if path else source


def _mapping(value: Any, path: str, source: str, fix: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{_where(path, source)} must be a mapping, not {_kind(value)}", fix)
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(f"{_where(path, source)} has a key {key!r} that is not text", "quote the key")
    return value


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"a {type(value).__name__} ({_short(value)})"


def _short(value: Any, width: int = 40) -> str:
    text = repr(value) if isinstance(value, str) and (not value or value.strip() != value) else str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _known_keys(mapping: Mapping[str, Any], known: tuple[str, ...], path: str, source: str) -> None:
    for key in mapping:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            fix = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
            raise ConfigError(f"unknown key {_join(path, key)!r} in {source}", fix)


def _word(value: Any, choices: tuple[str, ...], path: str, source: str) -> str:
    if not isinstance(value, str) or value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1) if isinstance(value, str) else []
        fix = (f"did you mean {close[0]!r}? " if close else "") + f"choose one of: {', '.join(choices)}"
        raise ConfigError(f"invalid {path}={_short(value)!r} in {source}", fix)
    return value


def _count(value: Any, path: str, source: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"invalid {path}={_short(value)!r} in {source}: expected a whole number >= {minimum}",
                          f"e.g. {path}: {max(minimum, 1) if path != 'seed' else 0}")
    return value


def _number(value: Any, path: str, source: str) -> float:
    """A bound: a number, or text that reads as one (YAML 1.1 reads ``1e-3`` as text)."""
    if isinstance(value, bool):
        raise ConfigError(f"invalid {path}={value!r} in {source}: expected a number", f"e.g. {path}: 0.01")
    if isinstance(value, (int, float, str)):
        try:
            number = float(value)
        except (ValueError, OverflowError):
            raise ConfigError(f"invalid {path}={_short(value)!r} in {source}: expected a number",
                              f"e.g. {path}: 0.01") from None
    else:
        raise ConfigError(f"invalid {path} in {source}: expected a number, not {_kind(value)}",
                          f"e.g. {path}: 0.01")
    if not math.isfinite(number):
        raise ConfigError(f"invalid {path}={value!r} in {source}: expected a finite number", f"e.g. {path}: 0.01")
    return number


# -- base -------------------------------------------------------------------------------------------

def _base(value: Any, source: str) -> dict[str, Any]:
    if value is None:
        return {}
    base = _mapping(value, "base", source, "write the training settings, e.g. `base: {model: lenet5, epochs: 5}`")
    for key, setting in base.items():  # one at a time first, so that an error names its key
        with _named(f"base.{key}", source):
            TrainConfig.from_mapping({key: setting}, source=f"base.{key} in {source}")
    TrainConfig.from_mapping(base, source=f"base in {source}")  # settings that clash (nesterov, momentum 0)
    return {k.replace("-", "_"): v for k, v in base.items()}  # as TrainConfig names them: model_options merges


@contextlib.contextmanager
def _named(path: str, source: str) -> Iterator[None]:
    """A ConfigError raised inside that does not name ``path`` is raised again naming it."""
    try:
        yield
    except ConfigError as exc:
        if path in exc.problem:
            raise
        fix = exc.fix or ""
        if fix.startswith("set a valid --"):  # TrainConfig.validate speaks of command-line flags
            fix = f"give {path} a valid value"
        raise ConfigError(f"{exc.problem} (at {path} in {source})", fix) from None


# -- parameters -------------------------------------------------------------------------------------

_SETTINGS = {f.name: f for f in TrainConfig.fields()}


def _setting_of(name: str, source: str) -> dataclasses.Field[Any] | None:
    """The TrainConfig field a parameter sets (None for a ``model_options.<name>`` entry)."""
    path = f"parameters.{name}"
    if name.startswith("model_options."):
        option = name.removeprefix("model_options.")
        if not option.isidentifier():
            raise ConfigError(f"invalid parameter name {path!r} in {source}: {option!r} is not an option name",
                              "write model_options.NAME, e.g. model_options.width")
        return None
    if name not in _SETTINGS:
        close = difflib.get_close_matches(name.replace("-", "_"), [*_SETTINGS, "model_options."], n=1)
        fix = f"did you mean {close[0]!r}?" if close else "`striate train --help` lists the settings"
        raise ConfigError(f"unknown setting {path!r} in {source}: every parameter must be a training setting", fix)
    if name == "model_options":
        raise ConfigError(f"{path} in {source} sweeps the whole model_options mapping",
                          "sweep one option at a time: model_options.NAME")
    return _SETTINGS[name]


def _parameters(value: Any, base: dict[str, Any], method: str, source: str) -> tuple[Parameter, ...]:
    space = _mapping(value, "parameters", source, _EXAMPLES["parameters"])
    if not space:
        raise ConfigError(f"parameters in {source} is empty: there is nothing to search", _EXAMPLES["parameters"])
    result: list[Parameter] = []
    for name, entry in space.items():
        param = _parameter(name, entry, base, source, [p.name for p in result])
        if method == "grid":
            if param.kind not in ("choice", "int"):
                raise ConfigError(f"parameters.{name} in {source} is {param.kind}: a grid search enumerates only "
                                  "choice and int parameters", f"use method random or tpe, or give {name} as choice")
            if param.when:
                raise ConfigError(f"parameters.{name}.when in {source}: a grid search has no conditional parameters",
                                  "use method random or tpe, or drop the condition")
        result.append(param)
    if method == "grid":
        size = math.prod(p.count() for p in result)
        if size > MAX_GRID:
            raise ConfigError(f"the grid in {source} has {size:,} points, over the limit of {MAX_GRID:,}",
                              "give fewer values, a larger int step, or use method random or tpe")
    for param in result:
        for cond, wanted in param.when:
            parent = next(p for p in result if p.name == cond)
            if parent.kind not in ("choice", "int"):
                raise ConfigError(f"parameters.{param.name}.when.{cond} in {source}: {cond} is {parent.kind}, "
                                  "and a real-valued draw almost never equals one value",
                                  f"make the condition on a choice or int parameter, or give {cond} as choice")
            if parent.kind == "int" and wanted not in parent.grid_values():
                raise ConfigError(f"parameters.{param.name}.when.{cond}={_short(wanted)!r} in {source} can never "
                                  f"hold: {cond} takes {parent.describe()}", f"use one of {cond}'s values")
            if parent.kind == "choice" and wanted not in parent.values:
                raise ConfigError(f"parameters.{param.name}.when.{cond}={_short(wanted)!r} in {source} can never "
                                  f"hold: {cond} takes {' | '.join(_short(v) for v in parent.values)}",
                                  f"use one of {cond}'s values")
    return tuple(result)


def _parameter(name: str, entry: Any, base: dict[str, Any], source: str, earlier: list[str]) -> Parameter:
    path = f"parameters.{name}"
    setting = _setting_of(name, source)
    body = _mapping(entry, path, source, f"e.g. `{name}: {{choice: [a, b]}}` or `{name}: {{uniform: {{low: 0, "
                                         "high: 1}}`")
    _known_keys(body, (*KINDS, "when"), path, source)
    kinds = [k for k in KINDS if k in body]
    if len(kinds) != 1:
        raise ConfigError(f"{path} in {source} must give exactly one of {', '.join(KINDS)}"
                          + (f" (it gives {', '.join(kinds)})" if kinds else ""),
                          f"e.g. `{name}: {{choice: [a, b]}}`")
    kind = kinds[0]
    when = _when(body.get("when"), name, source, earlier)
    kpath = f"{path}.{kind}"
    check = _checker(name, setting, base, source)
    if kind == "choice":
        values = body[kind]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{kpath} in {source} must be a non-empty list of values, not {_kind(values)}",
                              f"e.g. `{name}: {{choice: [a, b]}}`")
        checked: list[Any] = []
        for i, v in enumerate(values):
            if v is None or not isinstance(v, SCALAR):
                raise ConfigError(f"{kpath}[{i}] in {source} is {_kind(v)}: a choice must be a single value "
                                  "(text, number or true/false)", "list plain values")
            checked.append(check(v, f"{kpath}[{i}]"))
        if len(set(map(repr, checked))) != len(checked):
            raise ConfigError(f"{kpath} in {source} lists a value twice", "list each value once")
        return Parameter(name, kind, values=tuple(checked), when=when)

    bounds = _mapping(body[kind], kpath, source, f"e.g. `{name}: {{{kind}: {{low: 1, high: 10}}}}`")
    _known_keys(bounds, ("low", "high", "step") if kind == "int" else ("low", "high"), kpath, source)
    for key in ("low", "high"):
        if key not in bounds:
            raise ConfigError(f"{kpath} in {source} has no {key!r}", f"e.g. `{kind}: {{low: 1, high: 10}}`")
    step = 1
    if kind == "int":
        if setting is not None and _type_name(setting) not in ("int", "float"):
            raise ConfigError(f"{kpath} in {source}: {name} is a {_type_name(setting)} setting, not a number",
                              "use choice [values]")
        low, high = (_whole(bounds[k], f"{kpath}.{k}", source) for k in ("low", "high"))
        if "step" in bounds:
            step = _whole(bounds["step"], f"{kpath}.step", source)
            if step < 1:
                raise ConfigError(f"invalid {kpath}.step={step} in {source}: must be at least 1", "e.g. step: 1")
    else:
        if setting is not None and _type_name(setting) in ("int", "bool", "str", "list"):
            raise ConfigError(f"{kpath} in {source}: {name} is a whole-number or text setting, not a real number",
                              "use int {low, high} or choice [values]")
        low, high = (_number(bounds[k], f"{kpath}.{k}", source) for k in ("low", "high"))  # type: ignore[assignment]
        if kind == "log_uniform" and low <= 0:
            raise ConfigError(f"invalid {kpath}.low={bounds['low']!r} in {source}: a log-uniform range must be "
                              "above 0", "give a positive low, or use uniform")
    if low > high:
        raise ConfigError(f"invalid {kpath} in {source}: low ({bounds['low']}) is above high ({bounds['high']})",
                          "swap them")
    if kind == "int" and (high - low) % step:
        raise ConfigError(f"invalid {kpath} in {source}: high - low ({high - low}) is not a multiple of step "
                          f"({step})", f"make high {low + (high - low) // step * step}")
    low, high = check(low, f"{kpath}.low"), check(high, f"{kpath}.high")
    return Parameter(name, kind, low=low, high=high, step=step, when=when)


def _type_name(setting: dataclasses.Field[Any]) -> str:
    annotation = setting.type
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))


def _whole(value: Any, path: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"invalid {path}={_short(value)!r} in {source}: expected a whole number",
                          f"e.g. {path.rsplit('.', 1)[-1]}: 8")
    return value


def _checker(name: str, setting: dataclasses.Field[Any] | None, base: dict[str, Any], source: str) -> Any:
    """A function that checks one value of the parameter the way the training config will, naming its key path."""

    def check(value: Any, path: str) -> Any:
        if setting is None:  # a model option: the model builder checks it when a trial builds the model
            return value
        where = f"{path} in {source}"
        coerced = coerce(setting, value, where)
        with _named(path, source):
            TrainConfig.from_mapping({**base, name: coerced}, source=where)
        return coerced

    return check


def _when(value: Any, name: str, source: str, earlier: list[str]) -> tuple[tuple[str, Any], ...]:
    if value is None:
        return ()
    path = f"parameters.{name}.when"
    conditions = _mapping(value, path, source, f"e.g. `when: {{optimizer: sgd}}` ({name} is searched only then)")
    if not conditions:
        raise ConfigError(f"{path} in {source} is empty", "name the parameter and value it depends on, or drop when")
    result = []
    for cond, wanted in conditions.items():
        if cond not in earlier:
            hint = (f"declare {cond} above {name} in parameters" if cond != name
                    else "a parameter cannot depend on itself")
            close = difflib.get_close_matches(cond, earlier, n=1)
            raise ConfigError(f"{path}.{cond} in {source} names no parameter declared before {name}",
                              f"did you mean {close[0]!r}?" if close else hint)
        if wanted is None or not isinstance(wanted, SCALAR):
            raise ConfigError(f"{path}.{cond} in {source} is {_kind(wanted)}: a condition is one value",
                              f"e.g. `when: {{{cond}: VALUE}}`")
        result.append((cond, wanted))
    return tuple(result)


# -- objective, early stopping, budget ----------------------------------------------------------------

def _objective(value: Any, source: str) -> Objective:
    body = _mapping(value, "objective", source, _EXAMPLES["objective"])
    _known_keys(body, ("metric", "goal"), "objective", source)
    for key in ("metric", "goal"):
        if key not in body:
            raise ConfigError(f"objective in {source} has no {key!r}", _EXAMPLES["objective"])
    metric = _word(body["metric"], OBJECTIVE_METRICS, "objective.metric", source)
    goal = _word(body["goal"], GOALS, "objective.goal", source)
    return Objective(metric, goal)


def _early_stopping(value: Any, spec: SweepSpec, source: str) -> EarlyStopping:
    if isinstance(value, str) or value is None:
        method = _word("none" if value is None else value, EARLY_STOPPING, "early_stopping", source)
        body: dict[str, Any] = {}
    else:
        outer = _mapping(value, "early_stopping", source, "e.g. `early_stopping: {asha: {min_epochs: 1, "
                                                          "reduction_factor: 3}}`, or `early_stopping: none`")
        _known_keys(outer, EARLY_STOPPING, "early_stopping", source)
        if len(outer) != 1:
            raise ConfigError(f"early_stopping in {source} must name exactly one method",
                              "e.g. `early_stopping: {asha: {min_epochs: 1}}`")
        method, inner = next(iter(outer.items()))
        body = {} if inner is None else _mapping(inner, f"early_stopping.{method}", source,
                                                 "e.g. `{min_epochs: 1, reduction_factor: 3}`")
    if method == "none":
        if body:
            raise ConfigError(f"early_stopping.none in {source} takes no settings", "write `early_stopping: none`")
        return EarlyStopping()
    path = f"early_stopping.{method}"
    keys = ("min_epochs", "reduction_factor") + (("max_epochs",) if method == "hyperband" else ())
    _known_keys(body, keys, path, source)
    min_epochs = _count(body.get("min_epochs", 1), f"{path}.min_epochs", source, minimum=1)
    factor = _count(body.get("reduction_factor", 3), f"{path}.reduction_factor", source, minimum=2)
    most = spec.max_epochs()
    max_epochs = None
    if method == "hyperband":
        max_epochs = _count(body.get("max_epochs", most), f"{path}.max_epochs", source, minimum=1)
        if max_epochs > most:
            raise ConfigError(f"invalid {path}.max_epochs={max_epochs} in {source}: no trial trains more than "
                              f"{most} epochs", f"set max_epochs to {most} or less, or raise the epochs")
    top = max_epochs if max_epochs is not None else most
    if min_epochs >= top:
        raise ConfigError(f"invalid {path}.min_epochs={min_epochs} in {source}: trials train at most {top} epochs, "
                          "so nothing would ever be stopped early", f"set min_epochs below {top}, or raise the epochs")
    return EarlyStopping(method, min_epochs, factor, max_epochs)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([hms])")


def parse_duration(value: Any, path: str = "budget.wall_time", source: str = "sweep spec") -> float:
    """Seconds in ``"2h"``, ``"30m"``, ``"1h30m"``, ``"90s"`` or a plain number of seconds."""
    fix = f"e.g. {path.rsplit('.', 1)[-1]}: 30m (or 2h, 1h30m, 90s)"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip().replace(" ", "")
        pieces = list(_DURATION.finditer(text))
        units = [m.group(2) for m in pieces]
        if "".join(m.group(0) for m in pieces) != text or len(set(units)) != len(units):
            raise ConfigError(f"invalid {path}={_short(value)!r} in {source}: not a duration", fix)
        seconds = sum(float(m.group(1)) * {"h": 3600, "m": 60, "s": 1}[m.group(2)] for m in pieces)
    else:
        raise ConfigError(f"invalid {path} in {source}: expected a duration, not {_kind(value)}", fix)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"invalid {path}={_short(value)!r} in {source}: must be more than zero", fix)
    return seconds


def _budget(value: Any, source: str) -> Budget:
    if value is None:
        return Budget()
    body = _mapping(value, "budget", source, "e.g. `budget: {trials: 20, wall_time: 30m}`")
    _known_keys(body, ("trials", "wall_time"), "budget", source)
    trials = _count(body["trials"], "budget.trials", source, minimum=1) if "trials" in body else None
    wall = parse_duration(body["wall_time"], "budget.wall_time", source) if "wall_time" in body else None
    return Budget(trials, wall)


def format_duration(seconds: float) -> str:
    """``5400`` -> ``1h30m``."""
    whole = int(round(seconds))
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    text = (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{s}s" if s else "")
    return text or f"{seconds:g}s"
