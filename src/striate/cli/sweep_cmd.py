"""`striate sweep validate SPEC` — check a sweep spec and print its search space (running sweeps comes later)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import typer

from striate.cli.common import JSON_OPTION, console, print_json

sweep_app = typer.Typer(help="Hyperparameter sweeps: check a sweep spec (running sweeps is not built yet).",
                        no_args_is_help=True)

WIDTH = 80


def _when(conditions: tuple[tuple[str, Any], ...]) -> str:
    return ", ".join(f"{name}={value}" for name, value in conditions)


def describe(spec: Any) -> list[str]:
    """The spec as lines of at most 80 columns: settings, then one row (or more, wrapped) per parameter."""
    from striate.config import TrainConfig
    from striate.sweep.spec import format_duration

    early = spec.early_stopping
    stopping = "none" if early.method == "none" else (
        f"{early.method} (min_epochs {early.min_epochs}, reduction_factor {early.reduction_factor}"
        + (f", max_epochs {early.max_epochs}" if early.max_epochs else "") + ")")
    budget = []
    if spec.max_trials() is not None:
        budget.append(f"{spec.max_trials()} trials" + (" (the whole grid)" if spec.budget.trials is None else ""))
    if spec.budget.wall_time_s is not None:
        budget.append(f"{format_duration(spec.budget.wall_time_s)} wall time")
    defaults = TrainConfig().to_dict()
    base = spec.base_config().to_dict()
    changed = [f"{k}={v}" for k, v in base.items() if v != defaults[k]]
    settings = [
        ("objective", f"{spec.objective.goal} {spec.objective.metric}"),
        ("method", f"{spec.method} (seed {spec.seed})"),
        ("early stopping", stopping),
        ("budget", ", ".join(budget) + " (whichever comes first)" if len(budget) > 1 else budget[0]),
        ("parallel", f"{spec.parallel} trial(s) at a time"),
        ("base", " ".join(changed) + " (the rest: defaults)" if changed else "the training defaults"),
    ]
    lines = [f"the sweep spec is valid: {len(spec.parameters)} parameter(s)"]
    for label, text in settings:
        lines += textwrap.wrap(text, WIDTH, initial_indent=f"  {label + ':':<16}", subsequent_indent=" " * 18,
                               break_on_hyphens=False)
    lines.append("")
    name_width = min(max(len("parameter"), *(len(p.name) for p in spec.parameters)), 28)
    lines.append(f"  {'parameter':<{name_width}}  search space")
    for p in spec.parameters:
        text = p.describe() + (f"  when {_when(p.when)}" if p.when else "")
        name = p.name if len(p.name) <= name_width else p.name[: name_width - 1] + "…"
        lines += textwrap.wrap(text, WIDTH, initial_indent=f"  {name:<{name_width}}  ",
                               subsequent_indent=" " * (name_width + 4), break_on_hyphens=False)
    return lines


@sweep_app.command("validate")
def validate_command(
    spec_path: Path = typer.Argument(..., metavar="SPEC", help="the sweep spec (YAML)"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Check a sweep spec and print its search space; a problem is one error naming its key and the fix."""
    from dataclasses import asdict

    from striate.sweep.spec import load_spec

    spec = load_spec(spec_path)
    if as_json:
        print_json({**asdict(spec), "max_trials": spec.max_trials(),
                    "grid_size": spec.grid_size() if spec.method == "grid" else None})
        return
    for line in describe(spec):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
