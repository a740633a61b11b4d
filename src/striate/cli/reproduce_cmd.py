"""`striate resume` and `striate reproduce`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from striate.cli.common import JSON_OPTION, STORE_OPTION, console, err_console, print_json

commands = typer.Typer()  # registered on the app by striate.cli.app


@commands.command("resume")
def resume_command(
    run: str = typer.Argument(..., help="a stopped, crashed or failed run"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show the live progress bar"),
    store: Optional[str] = STORE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Continue a run from its last checkpoint: model, optimizer, schedule, RNG and data position."""
    from striate.cli.progress import ProgressBar
    from striate.cli.report import print_run_result
    from striate.tracking.store import default_store_location, open_store
    from striate.train.session import resume_session

    location = store or default_store_location()
    session = resume_session(location, run)
    result = session.run(callbacks=[ProgressBar(bar=progress and not as_json, echo=not as_json)])
    record = open_store(location).get_run(session.run_id)
    print_run_result(record, location, as_json)
    if result.status == "stopped":
        sys.exit(130)


@commands.command("reproduce")
def reproduce_command(
    run: str = typer.Argument(..., help="the run to reproduce"),
    verify: bool = typer.Option(False, "--verify", help="compare weights and metric series with the original"),
    strict: bool = typer.Option(False, "--strict", help="refuse to run when package versions differ"),
    tolerance: float = typer.Option(1e-6, "--tolerance", help="largest metric difference still 'within tolerance'"),
    progress: bool = typer.Option(True, "--progress/--no-progress",
                                  help="show the live progress bar (epoch lines are printed either way, as by train)"),
    trust: bool = typer.Option(False, "--trust", help="reproduce a run whose code did not come from this machine "
                                                      "(an imported archive, another host)"),
    repo: Optional[Path] = typer.Option(None, "--repo", help="for a run from elsewhere: the git repository to clone "
                                                              "its commit from (default: the current folder's)"),
    store: Optional[str] = STORE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Run a recorded run again (code, config, data, seeds) as a new linked run; --verify checks it matched.

    Exit codes with --verify: 0 identical, 3 within tolerance, 4 differs.
    """
    from striate.reproduce.drift import describe
    from striate.reproduce.reproduce import compare_runs, foreign_origin, reproduce, what_will_run
    from striate.tracking.store import default_store_location, open_store

    location = store or default_store_location()
    if not trust and not as_json and sys.stdin.isatty():
        opened = open_store(location)
        record = opened.get_run(run)
        origin = foreign_origin(opened, record)
        if origin:
            console.print(f"run {record.name} was {origin}. Reproducing it runs:", markup=False, highlight=False)
            for line in what_will_run(record):
                console.print(f"  {line}", markup=False, highlight=False)
            trust = typer.confirm("Run it?", default=False)
    outcome = reproduce(location, run, strict=strict, progress=progress and not as_json, trust=trust, repo=repo,
                        show=not as_json)
    if outcome["drift"] and not as_json:
        err_console.print(f"[yellow]warning:[/] packages differ from the original run: {describe(outcome['drift'])}",
                          highlight=False)
    opened = open_store(location)
    original, repro = opened.get_run(outcome["original"]), opened.get_run(outcome["reproduction"])
    verdict = compare_runs(opened, original, repro, tolerance) if verify else None
    if as_json:
        print_json({**outcome, "verdict": None if verdict is None else {
            "verdict": verdict.verdict, "weights_identical": verdict.weights_identical,
            "first_difference": verdict.first_difference, "max_abs_difference": verdict.max_abs_difference}})
    else:
        console.print(f"reproduced {original.name} ({original.id[:8]}) as {repro.name} ({repro.id[:8]}) "
                      f"from {outcome['code']}", highlight=False, markup=False)
        if verdict is not None:
            if verdict.verdict == "identical":
                console.print("[bold green]identical[/]: same weights hash, same metric series", highlight=False)
            elif verdict.verdict == "within tolerance":
                console.print(f"[yellow]within tolerance[/]: largest difference {verdict.max_abs_difference:.3g}",
                              highlight=False)
            elif verdict.first_difference:
                d = verdict.first_difference
                metric = escape(str(d.get("metric")))
                console.print(f"[bold red]differs from step {d.get('step')}[/] (first in {metric}: "
                              f"{d.get('original')} vs {d.get('reproduction')})", highlight=False)
            else:
                console.print("[bold red]differs[/]: the final weights differ, every compared metric point "
                              "is within tolerance", highlight=False)
    if verdict is not None:
        sys.exit(verdict.exit_code)
