"""`striate export-run` and `import-run` — move one run, with its metrics and artifacts, between stores."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from striate.cli.common import JSON_OPTION, STORE_OPTION, console, print_json

commands = typer.Typer()  # registered on the app by striate.cli.app


@commands.command("export-run")
def export_run_command(
    run: str = typer.Argument(..., help="run id, id prefix or name"),
    out: Path = typer.Argument(..., help="archive to write, e.g. run.tar.gz"),
    force: bool = typer.Option(False, "--force", help="replace OUT if it exists"),
    store: Optional[str] = STORE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Write a run (record, every metric point, every artifact) to one .tar.gz for `striate import-run`."""
    from striate.tracking.store import open_store
    from striate.tracking.transfer import export_run

    result = export_run(open_store(store, read_only=True), run, out, overwrite=force)
    if as_json:
        print_json(result)
        return
    console.print(f"exported {escape(result['name'])} ({result['id'][:8]}) to [bold]{escape(str(result['path']))}[/]: "
                  f"{result['metrics']} metric(s), {result['points']} point(s), {result['files']} file(s), "
                  f"{result['bytes'] / 1e6:.2f} MB", highlight=False)
    for item in result["skipped"]:
        console.print(f"[yellow]skipped[/] {escape(item['path'])}: {escape(item['reason'])}", highlight=False)


@commands.command("import-run")
def import_run_command(
    file: Path = typer.Argument(..., help="archive written by `striate export-run`"),
    store: Optional[str] = STORE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Add an exported run to this store under its original id (a no-op if it is already here)."""
    from striate.tracking.store import open_store
    from striate.tracking.transfer import import_run_details

    result = import_run_details(open_store(store), file)
    if as_json:
        print_json(result)
    elif result["imported"]:
        console.print(f"imported {result['name']} ({result['id'][:8]}): {result['metrics']} metric(s), "
                      f"{result['points']} point(s), {result['files']} file(s)", highlight=False, markup=False)
    else:
        console.print(f"{result['name']} ({result['id'][:8]}) is already in this store, unchanged: nothing imported",
                      highlight=False, markup=False)
