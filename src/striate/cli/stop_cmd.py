"""`striate stop RUN`: ask a running training to stop after its current step, with a checkpoint to resume from."""

from __future__ import annotations

from typing import Optional

import typer

from striate.cli.common import JSON_OPTION, STORE_OPTION, console, print_json

commands = typer.Typer()


@commands.command("stop")
def stop(
    run: str = typer.Argument(..., help="run id, prefix or name"),
    store: Optional[str] = STORE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Ask a running run (on any machine) to stop after its step, with a checkpoint; `striate resume` continues it.

    The training process ends after the current step, saves a checkpoint and records the run as stopped."""
    from striate.tracking.store import open_store

    opened = open_store(store)
    record = opened.get_run(run)
    asked_at = opened.request_stop(record.id)
    if as_json:
        print_json({"id": record.id, "name": record.name, "stop_requested_at": asked_at})
        return
    console.print(f"asked run {record.name} ({record.id[:8]}) to stop: its training ends after the current "
                  "step (within seconds) with a checkpoint", markup=False, highlight=False)
    where = f" --store {store}" if store else ""
    console.print(f"continue it later: striate resume {record.id[:8]}{where}", markup=False, highlight=False,
                  soft_wrap=True)
