"""Computing and rendering comparisons and diffs of runs."""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np
from rich.markup import escape
from rich.table import Table

from striate.cli.common import console
from striate.cli.report import folding_table
from striate.tracking.store import MetricSeries, RunRecord
from striate.tracking.store.sql import flatten_params

_ENV_KEYS = ("python", "torch", "cuda", "cudnn", "platform", "cpu", "cpu_count", "hostname")


# Params that differ between any two runs by nature, not by choice: never listed as a difference.
_NOT_A_DIFFERENCE = ("name",)
DIFF_MARK = "*"  # marks differences and best values in text too: colour alone is lost without a colour terminal
SERIES_MARKERS = ("•", "+", "x", "o", "#", "%", "@", "&")  # one per run in the chart, also without colour


def comparison(records: list[RunRecord]) -> dict[str, Any]:
    """Flattened params and final metrics of each run, plus which params differ."""
    params = {r.id: flatten_params(r.config) for r in records}
    keys = sorted({k for p in params.values() for k in p})
    differing = [k for k in keys if k not in _NOT_A_DIFFERENCE and len({repr(p.get(k)) for p in params.values()}) > 1]
    metric_keys = sorted({k for r in records for k in r.metrics if not k.startswith("system/")})
    return {
        "runs": [{"id": r.id, "name": r.name, "status": r.status} for r in records],
        "params": {k: {r.id: params[r.id].get(k) for r in records} for k in keys},
        "differing_params": differing,
        "metrics": {k: {r.id: (r.metrics.get(k) or {}).get("last") for r in records} for k in metric_keys},
    }


def print_comparison(records: list[RunRecord], data: dict[str, Any], show_all: bool = False) -> None:
    """Params side by side with differences marked (colour and a * that survives no colour), then
    final metrics with the best of each marked."""
    headers = [escape(f"{r.name} ({r.id[:8]})") for r in records]
    same = len(data["params"]) - len(data["differing_params"])
    title = (f"params ({DIFF_MARK} differs)" if show_all else
             f"params that differ ({same} identical hidden; --all)")
    table = folding_table("param", *headers, title=title)
    for key, values in data["params"].items():
        differs = key in data["differing_params"]
        if (differs or show_all) and key not in _NOT_A_DIFFERENCE:
            style = "bold yellow" if differs else "dim"
            mark = f"{DIFF_MARK} " if differs else "  "
            table.add_row(f"[{style}]{mark}{escape(key)}[/]",
                          *(f"[{style}]{escape(_value_text(values[r.id]))}[/]" for r in records))
    if not data["differing_params"] and not show_all:
        table.add_row("(none)", *("" for _ in records))
    console.print(table)
    metrics = folding_table("metric (last)", *headers, title=f"final metrics ({DIFF_MARK} best)")
    for key, values in data["metrics"].items():
        numbers = [v for v in values.values() if isinstance(v, (int, float))]
        best = (max(numbers) if "acc" in key else min(numbers) if "loss" in key else None) if numbers else None
        cells = []
        for r in records:
            v = values[r.id]
            text = "-" if v is None else f"{v:.6g}"
            marked = v is not None and v == best and len(numbers) > 1
            cells.append(f"[bold green]{text}{DIFF_MARK}[/]" if marked else text)
        metrics.add_row(escape(key), *cells)
    console.print(metrics)


def _value_text(value: Any) -> str:
    """A param as text; a float with at most 6 significant digits (0.15, not 0.15000000000000002)."""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _is_fraction(metric: str) -> bool:
    """Whether ``metric`` is an accuracy, a fraction in [0, 1]."""
    return "acc" in metric.rsplit("/", 1)[-1]


def _integer_ticks(low: float, high: float, count: int = 5) -> list[int]:
    """Up to ``count`` evenly spread whole-number ticks from ``low`` to ``high`` (steps are whole)."""
    low_i, high_i = int(np.floor(low)), int(np.ceil(high))
    if high_i - low_i < count:
        return list(range(low_i, high_i + 1))
    return sorted({int(round(t)) for t in np.linspace(low_i, high_i, count)})


def metric_chart(records: list[RunRecord], histories: dict[str, MetricSeries], metric: str,
                 width: int = 100) -> str:
    """A terminal line chart of ``metric`` for each run (plotext), ``width`` columns wide: each run
    with its own marker (told apart without colour), whole-number step ticks, and an accuracy axis
    within [0, 1]. Where no run has more than one point, a line per run with a bar and the value."""
    import plotext as plt

    finite = {r.id: np.isfinite(histories[r.id].values) for r in records}
    drawn = [r for r in records if finite[r.id].any()]
    if not drawn:
        return f"(no run has finite points for {metric!r})"
    if all(int(finite[r.id].sum()) <= 1 for r in drawn):
        return _value_bars(drawn, histories, metric, width)
    plt.clear_figure()
    plt.theme("clear")
    plt.plotsize(max(40, min(width, 120)), 20)
    low, high, first, last = np.inf, -np.inf, np.inf, -np.inf
    for i, r in enumerate(drawn):
        series = histories[r.id]
        steps, values = series.steps[finite[r.id]], series.values[finite[r.id]]
        low, high = min(low, float(values.min())), max(high, float(values.max()))
        first, last = min(first, float(steps.min())), max(last, float(steps.max()))
        marker = SERIES_MARKERS[i % len(SERIES_MARKERS)]
        plt.plot(steps.tolist(), values.tolist(), marker=marker, label=f"{r.name} ({r.id[:8]})")
    if _is_fraction(metric):
        low, high = max(0.0, low), min(1.0, high)
    pad = (high - low) * 0.05 or abs(high) * 0.05 or 0.05
    bottom, top = low - pad, high + pad
    if _is_fraction(metric):
        bottom, top = max(0.0, bottom), min(1.0, top)
    plt.ylim(bottom, top)
    plt.xlim(first, last)
    plt.xticks(_integer_ticks(first, last))
    plt.title(metric)
    plt.xlabel("step")
    return str(plt.build())


def _value_bars(records: list[RunRecord], histories: dict[str, MetricSeries], metric: str, width: int) -> str:
    """One line per run for a metric with a single point each (e.g. 1-epoch runs): a bar and the value."""
    points = {}
    for r in records:
        series = histories[r.id]
        ok = np.isfinite(series.values)
        points[r.id] = (float(series.values[ok][-1]), int(series.steps[ok][-1]))
    labels = {r.id: f"{r.name} ({r.id[:8]})" for r in records}
    label_width = max(len(t) for t in labels.values())
    values = [v for v, _ in points.values()]
    top = 1.0 if _is_fraction(metric) and max(values) <= 1 else max(max(values), 0.0) or 1.0
    bar_width = max(10, width - label_width - 24)
    lines = [f"{metric}: one point per run (--metric train/loss draws per-step lines)"]
    for r in records:
        value, step = points[r.id]
        filled = int(round(bar_width * max(value, 0.0) / top)) if top > 0 else 0
        bar = "#" * min(filled, bar_width) + "." * (bar_width - min(filled, bar_width))
        lines.append(f"{labels[r.id]:<{label_width}}  {bar}  {value:.4g} (step {step})")
    return "\n".join(lines)


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
