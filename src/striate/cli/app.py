"""The `striate` command: the Typer application with every command registered at import.

``from striate.cli.app import app`` gives the complete app (for `striate`, `python -m striate` and
tests alike). Command modules never import this one: the arrows run from here to them only.
"""

from __future__ import annotations

import typer

from striate.cli import (
    artifacts_cmd,
    compare_cmd,
    data_cmd,
    export_cmd,
    integrations_cmd,
    models_cmd,
    portable_cmd,
    reproduce_cmd,
    runs_cmd,
    server_cmd,
    stop_cmd,
    store_cmd,
    sweep_cmd,
    train_cmd,
    ui_cmd,
)
from striate.cli.common import OneLineErrors

app = typer.Typer(cls=OneLineErrors, help="striate — build, train, track and reproduce CNNs.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("striate")
        except PackageNotFoundError:  # running from a source tree that was never installed
            from striate import __version__ as number
        typer.echo(f"striate {number}")
        raise typer.Exit()


@app.callback()
def _root(_version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                        help="print striate's version and exit")) -> None:
    """striate — build, train, track and reproduce CNNs."""


# The order here is the order `striate --help` lists them in.
for module in (runs_cmd, stop_cmd, compare_cmd, artifacts_cmd, export_cmd, integrations_cmd, portable_cmd,
               reproduce_cmd, train_cmd, ui_cmd):
    app.add_typer(module.commands)
app.add_typer(data_cmd.data_app, name="data")
app.add_typer(models_cmd.models_app, name="models")
app.add_typer(integrations_cmd.import_app, name="import")
app.add_typer(server_cmd.server_app, name="server")
app.add_typer(store_cmd.store_app, name="store")
app.add_typer(sweep_cmd.sweep_app, name="sweep")


def main() -> None:
    """Entry point: run the app (a striate error ends as one red line and a non-zero exit, see OneLineErrors)."""
    app()
