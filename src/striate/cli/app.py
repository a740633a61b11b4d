"""The Typer application, shared console and error handling of the `striate` command."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console

app = typer.Typer(help="striate — build, train, track and reproduce CNNs.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Fetch and inspect datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True)


def print_json(value: Any) -> None:
    """Machine-readable output: plain JSON on stdout."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def main() -> None:
    """Entry point: run the app; turn striate errors into one red line and a non-zero exit."""
    # Importing the command modules registers their commands on `app`.
    from sqlalchemy.exc import SQLAlchemyError

    from striate.cli import (  # noqa: F401
        compare_cmd,
        data_cmd,
        export_cmd,
        integrations_cmd,
        models_cmd,
        portable_cmd,
        reproduce_cmd,
        runs_cmd,
        train_cmd,
    )
    from striate.errors import StriateError

    try:
        app()
    except StriateError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except SQLAlchemyError as exc:
        # A database problem outside the cases the store checks for: still one line, not a traceback.
        problem = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        err_console.print(f"[bold red]error:[/] the store database failed: {problem} — fix: check --store, "
                          "its disk space and permissions", highlight=False, soft_wrap=True)
        sys.exit(3)
