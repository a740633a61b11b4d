"""The Typer application, shared console and error handling of the `striate` command."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(help="striate — build, train, track and reproduce CNNs.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Fetch and inspect datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True)


def strict_json(value: Any) -> Any:
    """``value`` with NaN and infinities as null: JSON has no such numbers, and parsers reject them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def print_json(value: Any) -> None:
    """Machine-readable output: plain, standard JSON on stdout (a diverged loss is null, not NaN)."""
    sys.stdout.write(json.dumps(strict_json(value), indent=2, default=str, allow_nan=False) + "\n")


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
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except SQLAlchemyError as exc:
        # A database problem outside the cases the store checks for: still one line, not a traceback.
        problem = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        err_console.print(f"[bold red]error:[/] the store database failed: {escape(problem)} — fix: check --store, "
                          "its disk space and permissions", highlight=False, soft_wrap=True)
        sys.exit(3)
