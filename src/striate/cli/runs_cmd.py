"""`striate runs`, `show`, `tag`, `note`, `archive`, `delete` — look at and curate recorded runs."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, Optional

import typer

from striate.cli.common import JSON_OPTION, STORE_OPTION, console, err_console, print_json

commands = typer.Typer()  # registered on the app by striate.cli.app


@commands.command("runs")
def list_runs(
    where: Optional[str] = typer.Option(None, "--where", "-w",
                                        help="filter, e.g. 'params.lr > 0.01 and metrics.test/acc1.max > 0.9'"),
    sort: Optional[str] = typer.Option(None, "--sort", "-s", help="sort key, '-' for descending: -metrics.test/acc1"),
    columns: Optional[str] = typer.Option(None, "--columns", "-c",
                                          help="comma-separated: id,name,status,params.lr,metrics.test/acc1.max,..."),
    project: Optional[str] = typer.Option(None, "--project", help="only runs of this project"),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", help="at most this many runs"),
    archived: bool = typer.Option(False, "--archived", help="include archived runs"),
    store: Optional[str] = STORE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """List runs: id, name, status, model, key params, best test accuracy, duration."""
    from striate.cli.report import print_column_table, print_runs, run_row, select_columns
    from striate.tracking.store import open_store

    opened = open_store(store, read_only=True)
    records = opened.get_runs(opened.search_runs(where=where, sort=sort, project=project, limit=limit,
                                                 include_archived=archived))
    selection = [f"--where {where!r}"] if where else []
    selection += [f"--project {project!r}"] if project else []
    if selection:
        empty_note = f"no runs match {' and '.join(selection)}"
    elif not records and not archived and opened.search_runs(include_archived=True, limit=1):
        empty_note = "no runs shown: every run is archived (--archived shows them)"
    else:
        empty_note = "no runs in this store yet (`striate train` records one)"
    if columns is not None:
        rows = select_columns(records, [c.strip() for c in columns.split(",") if c.strip()])
        if as_json:
            print_json(rows)
        elif not rows:
            console.print(empty_note, markup=False, highlight=False)
        else:
            print_column_table(rows)
        return
    if as_json:
        print_json([run_row(r) for r in records])
    else:
        print_runs(records, empty_note)


@commands.command("show")
def show(
    run: str = typer.Argument(..., help="run id, id prefix or name"),
    requirements: bool = typer.Option(False, "--requirements", help="print the run's exact package list"),
    store: Optional[str] = STORE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show one run in full: config, metrics, summary, dataset, environment, artifacts."""
    from striate.cli.report import print_run
    from striate.tracking.store import open_store

    record = open_store(store, read_only=True).get_run(run)
    if requirements:
        packages = record.environment.get("packages", {})
        sys.stdout.write("".join(f"{name}=={version}\n" for name, version in packages.items()))
        return
    if as_json:
        data = dataclasses.asdict(record)
        data["duration_s"] = record.duration_s
        print_json(data)
    else:
        print_run(record, store)


@commands.command("tag")
def tag(
    run: str = typer.Argument(..., help="run id, prefix or name"),
    tags: list[str] = typer.Argument(..., help="tags to add"),
    remove: bool = typer.Option(False, "--remove", help="remove these tags instead"),
    store: Optional[str] = STORE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Add (or --remove) tags on a run."""
    from striate.tracking.store import open_store
    from striate.tracking.store.limits import check_tags

    check_tags(tags)
    opened = open_store(store)
    record = opened.get_run(run)
    new = opened.change_tags(record.id, remove=tags) if remove else opened.change_tags(record.id, add=tags)
    if as_json:
        print_json({"id": record.id, "tags": new})
    else:
        console.print(f"{record.name}: tags {', '.join(new) or '-'}", markup=False, highlight=False)


@commands.command("note")
def note(
    run: str = typer.Argument(..., help="run id, prefix or name"),
    text: str = typer.Argument(..., help="the note (replaces the previous one)"),
    store: Optional[str] = STORE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Attach a note to a run."""
    from striate.tracking.store import open_store

    opened = open_store(store)
    record = opened.get_run(run)
    opened.update_run(record.id, notes=text)
    if as_json:
        print_json({"id": record.id, "notes": text})
    else:
        console.print(f"{record.name}: note saved", markup=False)


@commands.command("archive")
def archive(
    runs: list[str] = typer.Argument(..., help="run ids, prefixes or names"),
    undo: bool = typer.Option(False, "--undo", help="bring archived runs back"),
    store: Optional[str] = STORE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Hide runs from `striate runs` without deleting them (`--archived` shows them)."""
    from striate.tracking.store import open_store

    opened = open_store(store)
    ids = [opened.get_run(r).id for r in runs]
    for run_id in ids:
        opened.update_run(run_id, archived=not undo)
    print_json({"archived": not undo, "ids": ids}) if as_json else console.print(
        f"{'un' if undo else ''}archived {len(ids)} run(s)")


@commands.command("delete")
def delete(
    runs: list[str] = typer.Argument(..., help="run ids, prefixes or names"),
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation"),
    store: Optional[str] = STORE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Delete runs with their metrics and artifacts (asks first unless --yes)."""
    from striate.errors import ConfigError
    from striate.tracking.store import open_store

    opened = open_store(store)
    records = [opened.get_run(r) for r in runs]
    _refuse_live(records)
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError("delete needs confirmation", "add --yes to delete without a prompt")
        names = ", ".join(f"{r.name} ({r.id[:8]})" for r in records)
        if not typer.confirm(f"delete {names} and their artifacts?"):
            raise typer.Exit(1)
    for record in records:
        opened.delete_run(record.id)
    print_json({"deleted": [r.id for r in records]}) if as_json else console.print(f"deleted {len(records)} run(s)")


def _refuse_live(records: list[Any]) -> None:
    """Deleting a run whose process is still recording it would leave that process writing into nothing."""
    from striate.errors import ConfigError

    for record in records:
        if record.status == "running":  # the store has already judged liveness: a dead process reads `crashed`
            where = f"process {record.pid} on {record.host}" if record.pid else f"host {record.host}"
            raise ConfigError(f"run {record.name} ({record.id[:8]}) is still running ({where}); nothing was deleted",
                              f"stop it first (Ctrl-C in its terminal, or `kill -INT {record.pid or 'PID'}` on "
                              f"{record.host or 'its host'}) or wait for it to end, then delete it")


@commands.command("which")
def which(
    file: str = typer.Argument(..., help="a weight file, checkpoint or any artifact"),
    store: Optional[str] = STORE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Trace a file back to the run(s) that produced it, by its SHA-256 (artifacts and exported models)."""
    import os
    from pathlib import Path

    from striate.errors import ConfigError, RunNotFoundError
    from striate.tracking.api import find_file
    from striate.tracking.store import open_store

    path = Path(file)
    if not path.is_file():
        problem = "is not a regular file" if os.path.lexists(path) else "does not exist"
        raise ConfigError(f"{path} {problem}", "pass the path of a weight file, artifact or exported model")
    digest, rows = find_file(open_store(store, read_only=True), path)
    if not rows:
        raise RunNotFoundError(f"no run in this store produced {path} (sha256 {digest[:16]})",
                               "check --store, or the file was changed after it was saved")
    if as_json:
        print_json(rows)
    else:
        for row in rows:
            console.print(f"{row['name']} ({row['id'][:8]}, {row['status']}): {row['artifact']}", highlight=False,
                          markup=False)


@commands.command("sync")
def sync(
    to: str = typer.Option(..., "--to", help="the remote store, e.g. postgresql://user@host/db"),
    spool: Optional[str] = typer.Option(None, "--spool", help="the local spool (default ~/.cache/striate/spool)"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Send every spooled run to a remote store (idempotent: running it twice sends nothing twice)."""
    from pathlib import Path

    from striate.tracking.spool import sync_all

    rows = sync_all(to, Path(spool) if spool else None)
    if as_json:
        print_json(rows)
    else:
        sent = sum(r["chunks_sent"] for r in rows)
        console.print(f"synced {sum(not r.get('error') for r in rows)} run(s): {sent} new metric chunks, "
                      f"{sum(r['artifacts_copied'] for r in rows)} artifacts copied")
        for r in rows:
            if r["superseded"]:
                console.print(f"skipped {r['name']} ({r['id'][:8]}): resumed on the server since; "
                              "its spooled copy is older and was not sent", markup=False, highlight=False)
    failed = [r for r in rows if r.get("error")]
    for r in failed:  # one line each, to stderr; the other runs were sent
        err_console.print(f"could not sync {r['name']} ({r['id'][:8]}): {r['error']}", markup=False,
                          highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)
