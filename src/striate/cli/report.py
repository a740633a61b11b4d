"""Rendering runs for people: config tables, summaries, run lists."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any, Callable

from rich.markup import escape
from rich.table import Table

from striate.cli.common import console, print_json
from striate.config import TrainConfig
from striate.tracking.store import RunRecord

KEY_PARAMS = ("lr", "batch_size", "epochs", "optimizer")


def config_changes(config: TrainConfig) -> list[tuple[str, Any]]:
    """The model, the data and every setting that differs from its default, in declaration order."""
    default = TrainConfig()
    return [(f.name, getattr(config, f.name)) for f in config.fields()
            if f.name in ("model", "data") or getattr(config, f.name) != getattr(default, f.name)]


def print_config(config: TrainConfig) -> None:
    """The config at train start, compactly: model, data and the settings that differ from the defaults."""
    parts = [f"[bold cyan]{escape(f'{name}={value}')}[/]" for name, value in config_changes(config)]
    console.print("config: " + "  ".join(parts) + "  [dim](the rest at their defaults)[/]", highlight=False)


def fmt_duration(seconds: float | None) -> str:
    """'1h02m', '3m05s', '12.3s'."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def fmt_time(ts: float | None) -> str:
    """Local time of a Unix timestamp."""
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def fmt_pct(value: Any) -> str:
    """0.9123 -> '91.23%'."""
    return f"{value:.2%}" if isinstance(value, (int, float)) else "-"


STATUS_STYLE = {"running": "yellow", "finished": "green", "failed": "red", "stopped": "magenta", "crashed": "red"}


def run_row(r: RunRecord) -> dict[str, Any]:
    """The fields `striate runs` shows for one run."""
    best = r.metrics.get("test/acc1", {}).get("max")
    return {"id": r.id, "name": r.name, "project": r.project, "status": r.status, "model": r.model,
            **{k: r.config.get(k) for k in KEY_PARAMS}, "best_test_acc1": best,
            "duration_s": round(r.duration_s, 2), "started": fmt_time(r.created_at)}


def print_runs(records: list[RunRecord]) -> None:
    """A table of runs."""
    table = Table("id", "name", "status", "model", *KEY_PARAMS, "best test acc", "duration", "started")
    for r in records:
        row = run_row(r)
        style = STATUS_STYLE.get(r.status, "")
        table.add_row(r.id[:8], escape(r.name), f"[{style}]{r.status}[/]", escape(r.model or "-"),
                      *(escape(str(row[k])) if row[k] is not None else "-" for k in KEY_PARAMS),
                      fmt_pct(row["best_test_acc1"]), fmt_duration(r.duration_s), row["started"])
    console.print(table)


def print_run_result(record: RunRecord, store_location: str, as_json: bool) -> None:
    """How `train` and `resume` end: the run's summary as JSON, or the human summary with a hint."""
    if as_json:
        print_json({"id": record.id, "name": record.name, "status": record.status, "summary": record.summary})
    else:
        print_train_summary(record, store_location)


def print_train_summary(r: RunRecord, store_location: str) -> None:
    """What `striate train` prints when it ends."""
    s = r.summary
    style = STATUS_STYLE.get(r.status, "")
    console.print(f"\nrun [bold]{escape(r.name)}[/] ({r.id[:8]}) [{style}]{r.status}[/]: "
                  f"test top-1 {fmt_pct(s.get('test_acc1'))}, top-5 {fmt_pct(s.get('test_acc5'))}, "
                  f"best top-1 {fmt_pct(s.get('best_test_acc1'))} after {s.get('epochs_completed', 0)} epochs; "
                  f"{s.get('train_samples_per_s', 0):,.0f} samples/s, {fmt_duration(s.get('train_seconds'))} "
                  f"of training ({fmt_duration(s.get('wall_seconds'))} with evaluation)", highlight=False)
    store_flag = "" if store_location in ("striate-runs", "./striate-runs") else f" --store {store_location}"
    prog = invoked_as()
    console.print(f"look at it again:  [bold]{escape(f'{prog} show {r.id[:8]}{store_flag}')}[/]   "
                  f"all runs:  [bold]{escape(f'{prog} runs{store_flag}')}[/]", highlight=False)


def invoked_as() -> str:
    """How the user can type this command again: `striate` when it is on PATH, else its path."""
    import os
    import shutil
    import sys
    from pathlib import Path

    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("striate")
    if argv0.name == "__main__.py":
        return "python -m striate"
    on_path = shutil.which("striate")
    if on_path and argv0.exists() and Path(on_path).resolve() == argv0.resolve():
        return "striate"
    try:
        relative = os.path.relpath(argv0.resolve(), Path.cwd())
    except ValueError:  # another drive (Windows)
        return str(argv0)
    if relative.startswith(".."):
        return str(argv0.resolve())
    return relative if relative.startswith(".") else f"./{relative}"


def print_run(r: RunRecord) -> None:
    """One run in full."""
    style = STATUS_STYLE.get(r.status, "")
    console.print(f"[bold]{escape(r.name)}[/]  id {r.id}  project {escape(r.project)}  [{style}]{r.status}[/]",
                  highlight=False)
    console.print(f"started {fmt_time(r.created_at)}  ended {fmt_time(r.ended_at)}  "
                  f"duration {fmt_duration(r.duration_s)}  model {escape(r.model or '-')}", highlight=False)
    if r.tags:
        console.print("tags: " + escape(", ".join(r.tags)))
    if r.notes:
        console.print(f"notes: {r.notes}", markup=False, highlight=False)
    if r.error:
        console.print(f"[red]error: {escape(r.error)}[/]", highlight=False)
    config = Table("setting", "value", title="config")
    for k, v in r.config.items():
        config.add_row(escape(k), escape(str(v)))
    console.print(config)
    if r.metrics:
        metrics = Table("metric", "last", "min", "max", "points", "last step", title="metrics")
        for k, m in sorted(r.metrics.items()):
            metrics.add_row(escape(k), *(_num(m[c]) for c in ("last", "min", "max")), str(m["count"]),
                            str(m["last_step"]))
        console.print(metrics)
    summary = Table("key", "value", title="summary")
    for k, v in r.summary.items():
        if k in ("checkpoints", "per_class_acc1"):
            continue
        summary.add_row(escape(k), escape(_num(v)))
    console.print(summary)
    per_class = r.summary.get("per_class_acc1")
    if per_class:
        per_class_text = "  ".join(f"{c} {fmt_pct(a)}" for c, a in per_class.items())
        console.print("per-class top-1: " + escape(per_class_text),
                      highlight=False)
    if r.dataset:
        console.print(f"dataset: {r.dataset.get('name')}  fingerprint {str(r.dataset.get('fingerprint'))[:16]}  "
                      f"train {r.dataset.get('train_size')}  test {r.dataset.get('test_size')}  "
                      f"from {r.dataset.get('source')}", highlight=False, markup=False)
    env = r.environment
    if env:
        git = env.get("git", {})
        code = (f"git {str(git.get('commit'))[:10]}{' (dirty)' if git.get('dirty') else ''} on {git.get('branch')}"
                if git.get("in_repo") else "not in a git repository")
        cpu = escape(str(env.get("cpu")))
        console.print(f"environment: python {env.get('python')}  torch {env.get('torch')}  {cpu}  "
                      f"{env.get('hostname')}  {code}", highlight=False)
        console.print(f"command: {' '.join(env.get('command', []))}", highlight=False, markup=False)
    if r.artifacts:
        arts = Table("artifact", "kind", "size", "sha256", title="artifacts")
        for a in r.artifacts:
            arts.add_row(escape(a["path"]), a["kind"], f"{a['size']:,}", a["sha256"][:16])
        console.print(arts)


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "-" if value is None else str(value)


def _param_value(key: str, r: RunRecord) -> Any:
    from striate.tracking.store.sql import flatten_params

    return flatten_params(r.config).get(key)


def _metric_value(key: str, aggregate: str, r: RunRecord) -> Any:
    return (r.metrics.get(key) or {}).get(aggregate)


def select_columns(records: list[RunRecord], columns: list[str]) -> list[dict[str, Any]]:
    """Rows with the chosen columns: run fields, params.KEY, metrics.KEY[.last|.min|.max|.count]."""
    from striate.errors import ConfigError
    from striate.tracking.query import parse_field

    basic = {"id": lambda r: r.id[:8], "name": lambda r: r.name, "status": lambda r: r.status,
             "model": lambda r: r.model, "project": lambda r: r.project, "tags": lambda r: ",".join(r.tags),
             "duration": lambda r: fmt_duration(r.duration_s), "started": lambda r: fmt_time(r.created_at),
             "notes": lambda r: r.notes}
    getters: list[tuple[str, Callable[[RunRecord], Any]]] = []
    for column in columns:
        if column in basic:
            getters.append((column, basic[column]))
            continue
        field = parse_field(column)
        if field.kind == "param":
            getters.append((column, functools.partial(_param_value, field.key)))
        elif field.kind == "metric":
            getters.append((column, functools.partial(_metric_value, field.key, field.aggregate)))
        else:
            raise ConfigError(f"unknown column {column!r}", f"use {', '.join(basic)}, params.KEY or metrics.KEY")
    return [{name: get(r) for name, get in getters} for r in records]
