"""`striate data get` — fetch a dataset into the cache, verifying every file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from striate.cli.common import JSON_OPTION, console, print_json

data_app = typer.Typer(help="Fetch and inspect datasets.", no_args_is_help=True)


@data_app.command("get")
def get(
    name: str = typer.Argument(..., help="fashion-mnist or mnist"),
    from_dir: Optional[Path] = typer.Option(None, "--from", help="a folder holding the four IDX files"),
    download: bool = typer.Option(False, "--download", help="download from the mirrors even when a local copy exists"),
    local_only: bool = typer.Option(False, "--local-only", help="never use the network"),
    mirror: Optional[list[str]] = typer.Option(
        None, "--mirror", help="base URL to download from instead of the official mirrors"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Make a dataset available: cache, --from folder, OS package copy, or the official mirrors."""
    from striate.data.catalog import DATASETS
    from striate.data.fetch import get as fetch
    from striate.errors import DataError

    spec = DATASETS.get(name)
    if spec is None:
        raise DataError(f"unknown dataset {name!r}", f"choose one of: {', '.join(sorted(DATASETS))}")
    folder = fetch(spec, from_dir=from_dir, force_download=download, mirrors=mirror or None,
                   allow_download=not local_only)
    if as_json:
        print_json({"dataset": name, "folder": str(folder), "verified": True})
    else:
        console.print(f"[green]✓[/] {name}: verified files in {escape(str(folder))}")
