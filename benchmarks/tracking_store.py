"""Tracking speed: log() latency, ingestion rate, read-back and search, on the embedded SQLite store,
each beside its physical floor measured in the same run (absolute figures swing 3-8x between machines).

    .venv/bin/python benchmarks/tracking_store.py            # prints one JSON object

- log_latency: 200,000 calls of run.log() with 10 scalars each; p50/p99/max per call (perf_counter_ns).
  Floor: the same loop doing only ``deque.append((step, dict(values)))``, timed the same way.
- ingestion: 1,000,000 points (100,000 calls x 10 keys) logged as fast as possible; points/s from the
  first log() to finish() returning, i.e. until every point is committed to SQLite. Floor: raw
  sqlite3 inserting the same 1,000,000 points one row per point (run, key, step, time, value) with
  one executemany in one transaction, same pragmas (WAL, synchronous=NORMAL), rows built beforehand.
- ratios: log p50 / floor p50 (target <= 3), ingestion / floor (target >= 5).
- read_back: one 100,000-point metric read back as numpy arrays (best of 5), and M4-downsampled to 1,000.
- search: 10,000 runs with params and metric summaries; a filtered, sorted query (best of 5).
"""

from __future__ import annotations

import json
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

import striate
from striate.tracking.store import MetricSeries, RunRecord, open_store


def log_latency(store_dir: Path, calls: int = 200_000) -> dict[str, float]:
    run = striate.init(store=store_dir, system_metrics=False)
    values = {f"metric_{i}": 0.5 for i in range(10)}
    samples = np.empty(calls, dtype=np.int64)
    clock = time.perf_counter_ns
    for step in range(calls):
        start = clock()
        run.log(values, step=step)
        samples[step] = clock() - start
    run.finish()
    us = samples / 1000
    return {"calls": calls, "scalars_per_call": 10, "p50_us": float(np.percentile(us, 50)),
            "p99_us": float(np.percentile(us, 99)), "max_us": float(us.max())}


def log_floor(calls: int = 200_000) -> dict[str, Any]:
    """The same loop as log_latency, doing only what any in-memory logger must: copy and queue."""
    queue: deque[tuple[int, dict[str, float]]] = deque()
    values = {f"metric_{i}": 0.5 for i in range(10)}
    samples = np.empty(calls, dtype=np.int64)
    clock = time.perf_counter_ns
    for step in range(calls):
        start = clock()
        queue.append((step, dict(values)))
        samples[step] = clock() - start
    us = samples / 1000
    return {"what": "deque.append((step, dict(values)))", "calls": calls,
            "p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99))}


def sqlite_floor(folder: Path, calls: int = 100_000) -> dict[str, Any]:
    """Raw sqlite3, one row per point, one transaction: what a naive store costs per point."""
    folder.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(folder / "floor.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE points (run_id TEXT, key TEXT, step INTEGER, time REAL, value REAL)")
    run_id = uuid.uuid4().hex
    now = time.time()
    rows = [(run_id, f"metric_{i}", step, now, 0.25) for step in range(calls) for i in range(10)]
    start = time.perf_counter()
    db.execute("BEGIN")
    db.executemany("INSERT INTO points VALUES (?, ?, ?, ?, ?)", rows)
    db.execute("COMMIT")
    total = time.perf_counter() - start
    db.close()
    return {"what": "sqlite3 executemany, one row per point, one transaction", "points": len(rows),
            "seconds": total, "points_per_s": len(rows) / total}


def ingestion(store_dir: Path, calls: int = 100_000) -> dict[str, float]:
    run = striate.init(store=store_dir, system_metrics=False)
    values = {f"metric_{i}": 0.25 for i in range(10)}
    start = time.perf_counter()
    for step in range(calls):
        run.log(values, step=step)
    logged = time.perf_counter() - start
    run.finish()
    total = time.perf_counter() - start
    stored = sum(len(open_store(store_dir).history(run.id, f"metric_{i}")) for i in range(10))
    return {"points": calls * 10, "stored_points": stored, "seconds_to_committed": total,
            "seconds_in_log_calls": logged, "points_per_s": calls * 10 / total}


def read_back(store_dir: Path, points: int = 100_000) -> dict[str, float]:
    store = open_store(store_dir)
    run = striate.init(store=store, system_metrics=False)
    for step in range(points):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
    run.finish()
    full, down = [], []
    for _ in range(5):
        start = time.perf_counter()
        series = store.history(run.id, "loss")
        full.append(time.perf_counter() - start)
        start = time.perf_counter()
        small = store.history(run.id, "loss", max_points=1000)
        down.append(time.perf_counter() - start)
    assert len(series) == points and len(small) <= 1000
    return {"points": points, "full_ms": min(full) * 1000, "downsampled_1000_ms": min(down) * 1000}


def search(store_dir: Path, runs: int = 10_000) -> dict[str, object]:
    store = open_store(store_dir)
    rng = np.random.default_rng(0)
    now = time.time()
    start = time.perf_counter()
    for i in range(runs):
        run_id = uuid.uuid4().hex
        lr = float(10 ** rng.uniform(-4, 0))
        store.create_run(RunRecord(id=run_id, name=f"run-{i}", project="bench", status="finished",
                                   created_at=now + i, ended_at=now + i + 60, heartbeat_at=now + i + 60,
                                   model="lenet5", config={"lr": lr, "batch_size": int(rng.choice([64, 128, 256])),
                                                           "optimizer": str(rng.choice(["sgd", "adamw"]))}))
        accs = np.sort(rng.uniform(0.5, 0.95, 5))
        store.log_batch(run_id, [MetricSeries("test_acc", np.arange(5), np.full(5, now), accs),
                                 MetricSeries("loss", np.arange(5), np.full(5, now), 1 - accs)])
    build = time.perf_counter() - start
    where = "params.lr > 0.01 and metrics.test_acc > 0.9"
    sort = "-metrics.test_acc"
    times, found = [], []
    for _ in range(5):
        start = time.perf_counter()
        found = store.search_runs(where=where, sort=sort)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    top = store.get_runs(found[:50])
    fetch_top = time.perf_counter() - start
    return {"runs": runs, "build_s": build, "where": where, "sort": sort, "matches": len(found),
            "search_ms": min(times) * 1000, "median_search_ms": statistics.median(times) * 1000,
            "fetch_top50_records_ms": fetch_top * 1000, "best_match_acc": top[0].metrics["test_acc"]["last"]}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        latency, latency_floor = log_latency(root / "latency"), log_floor()
        ingested, ingest_floor = ingestion(root / "ingest"), sqlite_floor(root / "floor")
        result = {
            "benchmark": "tracking_store",
            "command": ".venv/bin/python benchmarks/tracking_store.py",
            "python": sys.version.split()[0], "machine": platform.machine(), "cpu": _cpu(),
            "log_latency": latency, "log_floor": latency_floor,
            "ingestion": ingested, "ingestion_floor": ingest_floor,
            "ratios": {
                "log_p50_over_floor": latency["p50_us"] / latency_floor["p50_us"], "log_target_at_most": 3.0,
                "ingestion_over_floor": ingested["points_per_s"] / ingest_floor["points_per_s"],
                "ingestion_target_at_least": 5.0,
            },
            "read_back": read_back(root / "read"),
            "search": search(root / "search"),
        }
    print(json.dumps(result, indent=2))


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    main()
