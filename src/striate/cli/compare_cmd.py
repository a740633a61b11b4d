"""`striate compare` and `striate diff` — runs side by side."""

from __future__ import annotations

from typing import Optional

import typer

from striate.cli.common import JSON_OPTION, STORE_OPTION, console, print_json

commands = typer.Typer()  # registered on the app by striate.cli.app


@commands.command("compare")
def compare(
    runs: list[str] = typer.Argument(..., help="two or more run ids, prefixes or names"),
    metric: str = typer.Option("test/acc1", "--metric", "-m", help="metric to chart"),
    chart: bool = typer.Option(True, "--chart/--no-chart", help="draw the metric in the terminal"),
    show_all: bool = typer.Option(False, "--all", help="show identical params too"),
    store: Optional[str] = STORE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Params side by side (differences highlighted), final metrics, and a chart of one metric."""
    from striate.cli.compare_view import comparison, print_comparison
    from striate.errors import ConfigError
    from striate.tracking.store import open_store

    opened = open_store(store, read_only=True)
    records = [opened.get_run(r) for r in runs]
    if len({r.id for r in records}) < 2:
        raise ConfigError(f"compare needs two or more different runs, and {' and '.join(map(repr, runs))} "
                          f"name{'s' if len(runs) == 1 else ''} only {records[0].name} ({records[0].id[:8]})",
                          f"name another run too, e.g. `striate compare {runs[0]} OTHER` "
                          "(`striate show RUN` shows one run)")
    if (chart or as_json) and not any(metric in r.metrics for r in records):  # a typo, not an empty chart
        import difflib

        keys = sorted({k for r in records for k in r.metrics})
        close = difflib.get_close_matches(metric, keys, n=1, cutoff=0.4)
        shown = ", ".join(keys[:12]) + (f" and {len(keys) - 12} more" if len(keys) > 12 else "")
        raise ConfigError(f"none of these runs has the metric {metric!r} (--metric)",
                          f"{f'did you mean {close[0]!r}? ' if close else ''}"
                          f"{f'their metrics: {shown}' if keys else 'they logged no metrics'}")
    histories = {r.id: opened.history(r.id, metric, max_points=400) for r in records}
    data = comparison(records)
    if as_json:
        data["chart"] = {"metric": metric, "series": {
            rid: {"steps": h.steps.tolist(), "values": h.values.tolist()} for rid, h in histories.items()}}
        print_json(data)
        return
    print_comparison(records, data, show_all=show_all)
    if chart:
        from rich.text import Text

        from striate.cli.compare_view import metric_chart

        console.print(Text.from_ansi(metric_chart(records, histories, metric, width=console.width)))


@commands.command("diff")
def diff(
    run_a: str = typer.Argument(..., help="first run"),
    run_b: str = typer.Argument(..., help="second run"),
    store: Optional[str] = STORE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """What differs between two runs: config, environment (packages, hardware) and code."""
    from striate.cli.compare_view import print_run_diff, run_diff
    from striate.tracking.store import open_store

    opened = open_store(store, read_only=True)
    a, b = opened.get_run(run_a), opened.get_run(run_b)
    data = run_diff(a, b)
    print_json(data) if as_json else print_run_diff(a, b, data)
