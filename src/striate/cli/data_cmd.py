"""`striate data get|ls|show` — fetch a dataset into the cache, verifying every file, and look at what is there."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

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


def _dataset_folder(spec: object) -> tuple[Path | None, str]:
    """Where a catalog dataset is on this machine, without hashing or downloading: (folder, what it is)."""
    from striate.data.catalog import DatasetSpec
    from striate.data.fetch import cache_dir, has_all_files

    assert isinstance(spec, DatasetSpec)
    if has_all_files(cache_dir(spec)):
        return cache_dir(spec), "cache"
    for local in spec.local_copies:
        if has_all_files(Path(local)):
            return Path(local), "OS package copy"
    return None, "not available"


def _fmt_bytes(size: object) -> str:
    value = float(size)  # type: ignore[arg-type]
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def _files(folder: Path) -> list[dict[str, Any]]:
    from striate.data.catalog import ROLES
    from striate.data.fetch import find_file

    files: list[dict[str, Any]] = []
    for role in ROLES:
        found = find_file(folder, role)
        files.append({"role": role, "file": found.name if found else None,
                      "bytes": found.stat().st_size if found else None})
    return files


@data_app.command("ls")
def ls(as_json: bool = JSON_OPTION) -> None:
    """The datasets striate knows and where each is on this machine (nothing is hashed or downloaded)."""
    from rich.table import Table

    from striate.data.catalog import DATASETS

    rows = []
    for name, spec in sorted(DATASETS.items()):
        folder, where = _dataset_folder(spec)
        size = sum(int(f["bytes"] or 0) for f in _files(folder)) if folder else None
        rows.append({"dataset": name, "available": folder is not None, "where": where,
                     "folder": str(folder) if folder else None, "bytes": size, "classes": len(spec.classes)})
    if as_json:
        print_json(rows)
        return
    from rich.cells import cell_len

    cells = [[str(row["dataset"]), str(row["classes"]), str(row["where"]),
              _fmt_bytes(row["bytes"]) if row["bytes"] is not None else "-", str(row["folder"] or "-")]
             for row in rows]
    headers = ["dataset", "classes", "where", "size", "folder"]
    widths = [max(cell_len(h), *(cell_len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    # a folder is never cut: in its column where it fits whole, else on a line of its own below the table
    inline = sum(widths) + 3 * len(widths) + 1 <= console.width
    table = Table(*headers[:5 if inline else 4])
    for column in table.columns:
        column.no_wrap = column.header in ("dataset", "folder")
        column.overflow = "fold"
    for cell in cells:
        table.add_row(*map(escape, cell[:5 if inline else 4]))
    console.print(table)
    if not inline:
        for cell in cells:
            if cell[4] != "-":
                console.print(f"{cell[0]} folder: {cell[4]}", markup=False, highlight=False, soft_wrap=True)
    if any(not row["available"] for row in rows):
        console.print("`striate data get NAME` fetches and verifies one", highlight=False)
    console.print("a folder of IDX files works too: `--data FOLDER` (classes from its classes.txt)",
                  highlight=False)


@data_app.command("show")
def show(
    name: str = typer.Argument(..., help="fashion-mnist, mnist, or a folder of IDX files"),
    as_json: bool = JSON_OPTION,
) -> None:
    """One dataset's files and sizes, its classes, and whether its files match the catalog's checksums."""
    from striate.data.catalog import DATASETS
    from striate.data.fetch import check_file, find_file
    from striate.data.folder import folder_classes, folder_name
    from striate.data.idx import read_idx
    from striate.errors import DataError, StriateError

    spec = DATASETS.get(name)
    if spec is not None:
        folder, where = _dataset_folder(spec)
        shown_name, classes = spec.name, list(spec.classes)
    else:
        folder, where = Path(name).expanduser(), "folder"
        if not folder.is_dir():
            raise DataError(f"unknown dataset {name!r}",
                            f"use one of {', '.join(sorted(DATASETS))} or a folder holding the four IDX files")
        shown_name, classes = folder_name(folder), []
    files = _files(folder) if folder is not None else []
    if folder is None:
        verified = f"no: not on this machine; `striate data get {name}` fetches and verifies it"
    elif any(f["file"] is None for f in files):
        missing = ", ".join(str(f["role"]).replace("_", " ") for f in files if f["file"] is None)
        verified = f"no: missing {missing}"
    elif spec is not None:
        try:
            for role in spec.files:
                found = find_file(folder, role)
                assert found is not None
                check_file(found, spec.files[role])
            verified = "yes: every file matches the catalog's SHA-256"
        except StriateError as exc:
            verified = f"no: {exc.problem}"
    else:
        try:
            labels = [read_idx(folder / str(f["file"]))[0] for f in files if str(f["role"]).endswith("labels")]
            classes = list(folder_classes(folder, int(max(int(a.max()) for a in labels)) + 1))
            verified = "not checked (a folder has no catalog checksum)"
        except StriateError as exc:
            verified = f"no: {exc.problem}"
    data = {"dataset": shown_name, "where": where, "folder": str(folder) if folder else None, "files": files,
            "classes": classes, "verified": verified}
    if as_json:
        print_json(data)
        return
    console.print(f"[bold]{escape(shown_name)}[/] ({where}{': ' + escape(str(folder)) if folder else ''})",
                  highlight=False)
    for f in files:
        console.print(f"  {str(f['role']).replace('_', ' '):<13} {escape(str(f['file'] or '-')):<28} "
                      f"{_fmt_bytes(f['bytes']) if f['bytes'] is not None else '-':>9}", highlight=False)
    console.print(f"  classes ({len(classes)}): {escape(', '.join(classes)) if classes else '-'}", highlight=False)
    console.print(f"  verified: {escape(verified)}", highlight=False)
