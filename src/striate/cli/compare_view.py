"""Computing and rendering comparisons and diffs of runs."""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np
from rich.markup import escape
from rich.table import Table

from striate.cli.common import console
from striate.tracking.store import MetricSeries, RunRecord
from striate.tracking.store.sql import flatten_params

_ENV_KEYS = ("python", "torch", "cuda", "cudnn", "platform", "cpu", "cpu_count", "hostname")


def comparison(records: list[RunRecord]) -> dict[str, Any]:
    """Flattened params and final metrics of each run, plus which params differ."""
    params = {r.id: flatten_params(r.config) for r in records}
    keys = sorted({k for p in params.values() for k in p})
    differing = [k for k in keys if len({repr(p.get(k)) for p in params.values()}) > 1]
    metric_keys = sorted({k for r in records for k in r.metrics if not k.startswith("system/")})
    return {
        "runs": [{"id": r.id, "name": r.name, "status": r.status} for r in records],
        "params": {k: {r.id: params[r.id].get(k) for r in records} for k in keys},
        "differing_params": differing,
        "metrics": {k: {r.id: (r.metrics.get(k) or {}).get("last") for r in records} for k in metric_keys},
    }


def print_comparison(records: list[RunRecord], data: dict[str, Any], show_all: bool = False) -> None:
    """Params side by side with differences highlighted, then final metrics."""
    headers = [escape(f"{r.name} ({r.id[:8]})") for r in records]
    same = len(data["params"]) - len(data["differing_params"])
    title = "params (differences in yellow)" if show_all else f"params that differ ({same} identical hidden; --all)"
    table = Table("param", *headers, title=title)
    for key, values in data["params"].items():
        differs = key in data["differing_params"]
        if differs or show_all:
            style = "bold yellow" if differs else "dim"
            table.add_row(f"[{style}]{escape(key)}[/]", *(f"[{style}]{escape(str(values[r.id]))}[/]" for r in records))
    console.print(table)
    metrics = Table("metric (last)", *headers, title="final metrics")
    for key, values in data["metrics"].items():
        numbers = [v for v in values.values() if isinstance(v, (int, float))]
        best = (max(numbers) if "acc" in key else min(numbers) if "loss" in key else None) if numbers else None
        cells = []
        for r in records:
            v = values[r.id]
            text = "-" if v is None else f"{v:.6g}"
            cells.append(f"[bold green]{text}[/]" if v is not None and v == best and len(numbers) > 1 else text)
        metrics.add_row(escape(key), *cells)
    console.print(metrics)


def metric_chart(records: list[RunRecord], histories: dict[str, MetricSeries], metric: str) -> str:
    """A terminal line chart of ``metric`` for each run (plotext)."""
    import plotext as plt

    plt.clear_figure()
    plt.theme("clear")
    plt.plotsize(100, 20)
    drawn = 0
    for r in records:
        series = histories[r.id]
        finite = np.isfinite(series.values)  # NaN and infinities cannot be drawn (and crash plotext)
        if finite.any():
            plt.plot(series.steps[finite].tolist(), series.values[finite].tolist(), label=f"{r.name} ({r.id[:8]})")
            drawn += 1
    if not drawn:
        return f"(no run has finite points for {metric!r})"
    plt.title(metric)
    plt.xlabel("step")
    return str(plt.build())


def run_diff(a: RunRecord, b: RunRecord) -> dict[str, Any]:
    """Differences between two runs' config, environment and code."""
    pa, pb = flatten_params(a.config), flatten_params(b.config)
    config = {k: [pa.get(k), pb.get(k)] for k in sorted(set(pa) | set(pb)) if pa.get(k) != pb.get(k)}
    ea, eb = a.environment, b.environment
    env = {k: [ea.get(k), eb.get(k)] for k in _ENV_KEYS if ea.get(k) != eb.get(k)}
    pka, pkb = ea.get("packages", {}), eb.get("packages", {})
    packages = {k: [pka.get(k), pkb.get(k)] for k in sorted(set(pka) | set(pkb)) if pka.get(k) != pkb.get(k)}
    ga, gb = ea.get("git", {}), eb.get("git", {})
    code: dict[str, Any] = {}
    for key in ("commit", "branch", "dirty"):
        if ga.get(key) != gb.get(key):
            code[key] = [ga.get(key), gb.get(key)]
    code.update(_untracked_diff(a, b))
    if (ga.get("diff") or "") != (gb.get("diff") or ""):
        code["uncommitted_diff"] = "".join(difflib.unified_diff(
            (ga.get("diff") or "").splitlines(keepends=True), (gb.get("diff") or "").splitlines(keepends=True),
            f"{a.id[:8]} uncommitted", f"{b.id[:8]} uncommitted"))
    data = {"dataset": [a.dataset.get("fingerprint"), b.dataset.get("fingerprint")]}
    return {"a": a.id, "b": b.id, "config": config, "environment": env, "packages": packages, "code": code,
            "dataset": data["dataset"] if data["dataset"][0] != data["dataset"][1] else None}


def _untracked_diff(a: RunRecord, b: RunRecord) -> dict[str, Any]:
    """Untracked files (recorded by name; the source files among them snapshotted) that differ between two runs."""
    ua = set((a.environment.get("git") or {}).get("untracked") or [])
    ub = set((b.environment.get("git") or {}).get("untracked") or [])
    found: dict[str, Any] = {}
    if ua != ub:
        found["untracked_files"] = [sorted(ua - ub), sorted(ub - ua)]  # [only in a, only in b]
    sa = (a.summary.get("code_snapshot") or {}).get("sha256")
    sb = (b.summary.get("code_snapshot") or {}).get("sha256")
    if ua == ub and ua and sa != sb:  # same names, other contents
        found["untracked_contents"] = [sa, sb]
    in_repo = (a.environment.get("git") or {}).get("in_repo") or (b.environment.get("git") or {}).get("in_repo")
    if not in_repo and sa != sb:  # outside git the snapshot of the folder is the code
        found["source_snapshot"] = [sa, sb]
    return found


def print_run_diff(a: RunRecord, b: RunRecord, data: dict[str, Any]) -> None:
    """Render run_diff() as tables."""
    sections = (("config", data["config"]), ("environment", data["environment"]), ("packages", data["packages"]))
    same = True
    for title, rows in sections:
        if rows:
            same = False
            table = Table(title, escape(f"{a.name} ({a.id[:8]})"), escape(f"{b.name} ({b.id[:8]})"), title=title)
            for key, (va, vb) in rows.items():
                table.add_row(escape(str(key)), f"[red]{escape(str(va))}[/]", f"[green]{escape(str(vb))}[/]")
            console.print(table)
    code = dict(data["code"])
    patch = code.pop("uncommitted_diff", None)
    only = code.pop("untracked_files", None)
    if only:
        same = False
        for files, run in ((only[0], a), (only[1], b)):
            if files:
                console.print(f"untracked files only in {escape(run.name)} ({run.id[:8]}): "
                              f"{escape(', '.join(files))}", highlight=False)
    if code.pop("untracked_contents", None):
        same = False
        console.print("untracked files: same names, different contents (their snapshots differ)", highlight=False)
    for key, (va, vb) in code.items():
        same = False
        console.print(f"code {escape(str(key))}: [red]{escape(str(va))}[/] -> [green]{escape(str(vb))}[/]",
                      highlight=False)
    if patch:
        same = False
        console.print("uncommitted changes differ:")
        console.print(patch, markup=False, highlight=False)
    if data["dataset"]:
        same = False
        console.print(f"dataset fingerprint: [red]{data['dataset'][0]}[/] -> [green]{data['dataset'][1]}[/]")
    if same:
        console.print("no differences in config, environment, code or data")
