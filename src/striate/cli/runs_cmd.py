"""`striate runs` and `striate show` — look at recorded runs."""

from __future__ import annotations

import dataclasses
from typing import Optional

import typer

from striate.cli.app import app, print_json


@app.command("runs")
def list_runs(
    store: Optional[str] = typer.Option(None, "--store", help="store folder (default ./striate-runs)"),
    project: Optional[str] = typer.Option(None, "--project", help="only runs of this project"),
    limit: Optional[int] = typer.Option(None, "--limit", help="at most this many runs, newest first"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """List runs: id, name, status, model, key params, best test accuracy, duration."""
    from striate.cli.report import print_runs, run_row
    from striate.tracking.store import open_store

    records = open_store(store).list_runs(project=project, limit=limit)
    if as_json:
        print_json([run_row(r) for r in records])
    else:
        print_runs(records)


@app.command("show")
def show(
    run: str = typer.Argument(..., help="run id, id prefix or name"),
    store: Optional[str] = typer.Option(None, "--store", help="store folder (default ./striate-runs)"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Show one run in full: config, metrics, summary, dataset, environment, artifacts."""
    from striate.cli.report import print_run
    from striate.tracking.store import open_store

    record = open_store(store).get_run(run)
    if as_json:
        data = dataclasses.asdict(record)
        data["duration_s"] = record.duration_s
        print_json(data)
    else:
        print_run(record)
