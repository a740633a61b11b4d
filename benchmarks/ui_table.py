"""The dashboard's runs table with many runs, measured in a real browser (Debian's Chromium via Playwright).

Seeds a local store with ``--runs`` runs (one project; each with a learning rate, a model and ``--metrics``
metrics of ``--steps`` points), starts ``striate ui`` on it, and per repetition, in a fresh browser
context: first paint (from opening the printed URL, token login included, until the first table row
is visible), a sort (clicking the Name header until the table shows the new order) and a filter
(``params.optimizer.lr > 0.005``, from pressing Apply until the count is shown). Medians over ``--reps``.
The table pages on the server: it asks for all matching ids (``ids_only``) in sort order and whole
records for the 100 rows shown.

Command: .venv/bin/python benchmarks/ui_table.py [--runs 10000] [--metrics 5] [--steps 10] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import command_line, cpu_model, git_state

CHROMIUM = "/usr/bin/chromium"


def seed(folder: Path, runs: int, metrics: int, steps: int) -> float:
    from striate.tracking.store import open_store
    from striate.tracking.store.base import RunRecord
    from striate.tracking.store.codec import MetricSeries

    started = time.perf_counter()
    store = open_store(folder)
    rng = np.random.default_rng(0)
    now = time.time()
    step_array = np.arange(steps, dtype=np.int64)
    for i in range(runs):
        run_id = f"{i:08x}" + "0" * 24
        lr = float(10 ** rng.uniform(-4, -1))
        store.create_run(RunRecord(id=run_id, name=f"run-{i:05d}", project="bench", status="finished",
                                   created_at=now - runs + i, ended_at=now, heartbeat_at=now,
                                   model=("lenet5", "vgg11", "resnet18")[i % 3],
                                   config={"optimizer": {"lr": lr}, "batch_size": int(2 ** (5 + i % 4))}))
        store.log_batch(run_id, [MetricSeries(f"metric_{k}", step_array, now + step_array.astype(np.float64),
                                              rng.random(steps)) for k in range(metrics)])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--metrics", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "store"
        folder.mkdir()
        seed_s = seed(folder, args.runs, args.metrics, args.steps)
        process = subprocess.Popen([sys.executable, "-m", "striate", "ui", "--store", str(folder)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            results: dict[str, list[float]] = {"first_paint_s": [], "sort_s": [], "filter_s": [],
                                               "page_runs_ms": [], "page_sort_ms": [], "page_filter_ms": []}
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                     args=["--no-sandbox", "--disable-gpu"])
                for _ in range(args.reps):
                    context = browser.new_context(viewport={"width": 1400, "height": 900})
                    page = context.new_page()
                    t0 = time.perf_counter()
                    page.goto(url)
                    page.wait_for_selector("#runs-table tbody tr", timeout=120_000)
                    results["first_paint_s"].append(time.perf_counter() - t0)
                    results["page_runs_ms"].append(page.evaluate("window.striate.timings.runsPageMs"))
                    t0 = time.perf_counter()
                    page.locator("button[data-sort='name']").click()
                    page.wait_for_selector("th[aria-sort='ascending'] button[data-sort='name']", timeout=120_000)
                    results["sort_s"].append(time.perf_counter() - t0)
                    results["page_sort_ms"].append(page.evaluate("window.striate.timings.lastQueryMs"))
                    page.get_by_label("Filter").fill("params.optimizer.lr > 0.005")
                    t0 = time.perf_counter()
                    page.get_by_role("button", name="Apply").click()
                    page.locator("#run-count", has_text="match").wait_for(timeout=120_000)
                    results["filter_s"].append(time.perf_counter() - t0)
                    results["page_filter_ms"].append(page.evaluate("window.striate.timings.lastQueryMs"))
                    count = page.locator("#run-count").inner_text()
                    context.close()
                browser.close()
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(json.dumps({
        "benchmark": "ui_table", "command": command_line(), "git": git_state(), "cpu": cpu_model(),
        "runs": args.runs, "metrics_per_run": args.metrics, "steps_per_metric": args.steps, "reps": args.reps,
        "seed_store_s": round(seed_s, 1), "filter_matched": count,
        "median": {key: round(statistics.median(values), 3) for key, values in results.items()},
        "all": {key: [round(v, 3) for v in values] for key, values in results.items()},
        "targets_issue_13": {"first_paint_s": 1.0, "sort_s": 0.3, "filter_s": 0.3},
    }, indent=1))


if __name__ == "__main__":
    main()
