"""A sweep spec as an Optuna study: Optuna's samplers choose the trials, its pruners stop the poor ones early.

Nothing here searches or prunes by itself: ``grid`` is Optuna's GridSampler, ``random`` its
RandomSampler, ``tpe`` its TPESampler (each seeded from the spec), ``asha`` its
SuccessiveHalvingPruner and ``hyperband`` its HyperbandPruner. Pruners count steps in epochs:
:class:`PruneOnObjective` reports the objective after every epoch (the engine's ``on_epoch`` event)
and stops a trial's training when the pruner says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import optuna

from striate.config import TrainConfig
from striate.sweep.spec import Parameter, SweepSpec
from striate.train.events import Callback, EpochEvent, TrainState

if TYPE_CHECKING:
    from optuna.pruners import BasePruner
    from optuna.samplers import BaseSampler


def make_sampler(spec: SweepSpec) -> BaseSampler:
    """The Optuna sampler the spec's method names, seeded with the spec's seed."""
    if spec.method == "grid":
        space = {p.name: p.grid_values() for p in spec.parameters}
        return optuna.samplers.GridSampler(space, seed=spec.seed)
    if spec.method == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed)
    return optuna.samplers.TPESampler(seed=spec.seed)


def make_pruner(spec: SweepSpec) -> BasePruner:
    """The Optuna pruner for the spec's early stopping (steps are epochs); NopPruner for none."""
    early = spec.early_stopping
    if early.method == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=early.min_epochs,
                                                      reduction_factor=early.reduction_factor)
    if early.method == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=early.min_epochs,
                                              max_resource=early.max_epochs or spec.max_epochs(),
                                              reduction_factor=early.reduction_factor)
    return optuna.pruners.NopPruner()


def create_study(spec: SweepSpec, *, storage: str | None = None, name: str | None = None,
                 load_if_exists: bool = False) -> optuna.Study:
    """An Optuna study for ``spec``: its sampler, pruner and direction (in memory unless ``storage`` is given)."""
    return optuna.create_study(storage=storage, study_name=name, load_if_exists=load_if_exists,
                               sampler=make_sampler(spec), pruner=make_pruner(spec),
                               direction=spec.objective.direction)


def _suggest_one(trial: optuna.trial.BaseTrial, p: Parameter) -> Any:
    if p.kind == "choice":
        return trial.suggest_categorical(p.name, list(p.values))
    if p.kind == "int":
        return trial.suggest_int(p.name, int(p.low), int(p.high), step=p.step)  # type: ignore[arg-type]
    return trial.suggest_float(p.name, float(p.low), float(p.high),  # type: ignore[arg-type]
                               log=p.kind == "log_uniform")


def suggest(spec: SweepSpec, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
    """One trial's full training config (a TrainConfig mapping): the base with the sampled values applied.

    Parameters are asked in the spec's order; a conditional parameter is asked only when every value
    in its ``when`` holds (a condition on a parameter that was itself not asked does not hold).
    """
    chosen: dict[str, Any] = {}
    for p in spec.parameters:
        if all(cond in chosen and chosen[cond] == wanted for cond, wanted in p.when):
            chosen[p.name] = _suggest_one(trial, p)
    values = dict(spec.base)
    options = dict(values.get("model_options") or {})
    for name, value in chosen.items():
        if name.startswith("model_options."):
            options[name.removeprefix("model_options.")] = value
        else:
            values[name] = value
    if options:
        values["model_options"] = options
    return TrainConfig.from_mapping(values, source=f"{spec.source}: trial {trial.number}").to_dict()


def epoch_metric(event: EpochEvent, metric: str) -> float:
    """The value of an objective metric (``spec.OBJECTIVE_METRICS``) in one epoch's event."""
    values = {"test/acc1": event.evaluation.top1, "test/acc5": event.evaluation.top5,
              "test/loss": event.evaluation.loss, "train/epoch_acc1": event.train_acc1,
              "train/epoch_loss": event.train_loss}
    return float(values[metric])


def report(trial: optuna.Trial, epoch: int, value: float) -> bool:
    """Tell the trial the objective after ``epoch``; True when the pruner says to stop the trial now."""
    trial.report(value, step=epoch)
    return trial.should_prune()


class PruneOnObjective(Callback):
    """Reports the objective to an Optuna trial after every epoch and stops training once the pruner says so.

    The run ends ``stopped`` with a stop reason that names the pruner, the epoch and the value;
    ``pruned_at`` holds the epoch (None while the trial runs on), ``values`` every reported value.
    """

    def __init__(self, spec: SweepSpec, trial: optuna.Trial) -> None:
        self.spec = spec
        self.trial = trial
        self.values: dict[int, float] = {}
        self.pruned_at: int | None = None

    def on_epoch(self, state: TrainState, event: EpochEvent) -> None:
        metric = self.spec.objective.metric
        value = epoch_metric(event, metric)
        self.values[event.epoch] = value
        prune = report(self.trial, event.epoch, value)
        if prune and event.epoch < event.epochs:  # after the last epoch there is nothing left to save
            self.pruned_at = event.epoch
            state.request_stop(f"pruned by {self.spec.early_stopping.method} after epoch {event.epoch}: "
                               f"{metric}={value:.4g} (trial {self.trial.number})")
