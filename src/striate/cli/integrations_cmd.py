"""`striate import mlflow` and `striate export-tensorboard` — moving runs between striate and other tools."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from striate.cli.common import JSON_OPTION, STORE_OPTION, console, print_json

commands = typer.Typer()  # registered on the app by striate.cli.app

import_app = typer.Typer(help="Bring runs from other trackers into striate.", no_args_is_help=True)


@import_app.command("mlflow")
def import_mlflow(
    source: str = typer.Argument(..., help="mlruns folder, mlflow.db file, or a database URL (sqlite:///...)"),
    project: Optional[str] = typer.Option(None, "--project", help="put every run in this project "
                                          "(default: the MLflow experiment name)"),
    store: Optional[str] = STORE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Import MLflow runs (params, every metric point, tags). Running it twice imports nothing twice."""
    from striate.integrations.mlflow_import import import_runs
    from striate.tracking.store import open_store

    rows = import_runs(source, open_store(store), project=project)
    if as_json:
        print_json(rows)
        return
    new = sum(r["imported"] for r in rows)
    console.print(f"imported {new} MLflow run(s); {len(rows) - new} were already here")


@commands.command("export-tensorboard")
def export_tensorboard(
    run: str = typer.Argument(..., help="run id, prefix or name"),
    out_dir: Path = typer.Argument(..., help="folder for the event files (point TensorBoard's --logdir here)"),
    store: Optional[str] = STORE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Write a run's metrics as TensorBoard event files."""
    from striate.integrations.tensorboard import export_run
    from striate.tracking.store import open_store

    written = export_run(open_store(store, read_only=True), run, out_dir)
    if as_json:
        print_json({"folder": str(out_dir), "points": written})
    else:
        console.print(f"wrote {sum(written.values())} points of {len(written)} metrics to {out_dir}")
