"""`striate artifacts` and `striate history` — a run's files and a metric's recorded points, to read or to keep."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from striate.cli.common import JSON_OPTION, STORE_OPTION, console, print_json

commands = typer.Typer()  # registered on the app by striate.cli.app


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


@commands.command("artifacts")
def artifacts(
    run: str = typer.Argument(..., help="run id, id prefix or name"),
    path: Optional[str] = typer.Argument(None, help="one artifact, or a folder of them (e.g. checkpoints)"),
    download: Optional[Path] = typer.Option(None, "--download", "-d", help="copy the artifact(s) into this folder, "
                                            "keeping their paths"),
    force: bool = typer.Option(False, "--force", help="with --download: replace files that differ"),
    store: Optional[str] = STORE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """List a run's artifacts (path, kind, size, SHA-256), or download them with --download DIR."""
    from striate.tracking.artifacts import download_artifacts, select_artifacts
    from striate.tracking.store import open_store

    opened = open_store(store, read_only=True)
    record = opened.get_run(run)
    if download is not None:
        done = download_artifacts(opened, record, download, path, overwrite=force)
        if as_json:
            print_json(done)
            return
        for item in done:
            check = f"sha256 {item['sha256'][:12]} checked" if item["checked"] else "not checked (no recorded hash)"
            console.print(f"{item['file']} ({_size(item['size'])}, {check})",
                          highlight=False, markup=False)
        console.print(f"downloaded {len(done)} file(s) of {record.name} ({record.id[:8]}), "
                      f"{_size(sum(i['size'] for i in done))}, to {escape(str(download))}", highlight=False)
        return
    rows = select_artifacts(record, path)
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print(f"{record.name} ({record.id[:8]}) has no artifacts", highlight=False, markup=False)
        return
    width = max(len(r["path"]) for r in rows)
    kinds = max(len(r["kind"]) for r in rows)
    for r in rows:  # paths whole, one line each: they are what --download and PATH take
        console.print(f"{r['path']:<{width}}  {r['kind']:<{kinds}}  {_size(r['size']):>8}  {r['sha256'][:12]}",
                      highlight=False, markup=False, soft_wrap=True)
    console.print(f"{len(rows)} artifact(s), {_size(sum(r['size'] for r in rows))} (--download DIR copies them)",
                  highlight=False, markup=False)


@commands.command("history")
def history(
    run: str = typer.Argument(..., help="run id, id prefix or name"),
    metric: Optional[str] = typer.Option(None, "--metric", "-m", help="metric key, e.g. train/loss or test/acc1 "
                                         "(without it: the run's metric keys)"),
    csv: bool = typer.Option(False, "--csv", help="CSV (step,time,value; time in Unix seconds) for piping"),
    max_points: Optional[int] = typer.Option(None, "--max-points", help="downsample to about this many points "
                                             "(extremes kept)"),
    store: Optional[str] = STORE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Print every recorded point of one metric of a run: step, time, value."""
    import math
    from datetime import datetime

    from striate.errors import ConfigError
    from striate.tracking.api import metric_history
    from striate.tracking.store import open_store

    if max_points is not None and max_points < 4:
        raise ConfigError(f"--max-points {max_points} is too few", "give 4 or more (or leave it out for every point)")
    opened = open_store(store, read_only=True)
    record = opened.get_run(run)
    if metric is None:
        keys = {k: int(v.get("count") or 0) for k, v in sorted(record.metrics.items())}
        if as_json:
            print_json(keys)
        else:
            for key, count in keys.items():
                console.print(f"{key}  ({count} points)", highlight=False, markup=False)
            console.print(f"`striate history {record.id[:8]} --metric KEY` prints one", highlight=False, markup=False)
        return
    series = metric_history(opened, record, metric, max_points=max_points)
    steps, times, values = series.steps.tolist(), series.times.tolist(), series.values.tolist()
    if as_json:
        # NaN and ±inf (a diverged loss) as the strings the team server also uses; JSON has no such numbers
        shown = [v if math.isfinite(v) else ("NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity"))
                 for v in values]
        print_json({"id": record.id, "metric": metric, "steps": steps, "times": times, "values": shown})
    elif csv:
        out = sys.stdout  # plain text, no console: a pipe gets exactly the rows
        out.write("step,time,value\n")
        out.writelines(f"{s},{t!r},{v!r}\n" for s, t, v in zip(steps, times, values))
    else:
        console.print(f"{'step':>10}  {'time':<19}  value", highlight=False, markup=False)
        for s, t, v in zip(steps, times, values):
            when = datetime.fromtimestamp(t).isoformat(sep=" ", timespec="seconds")
            console.print(f"{s:>10}  {when:<19}  {v:.6g}", highlight=False, markup=False)
