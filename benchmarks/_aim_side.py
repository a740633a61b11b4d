"""Aim's side of compare_trackers.py; runs in an interpreter that has aim (not a striate dependency)."""

import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np


def main() -> None:
    from importlib.metadata import version

    import aim

    out = {"aim": version("aim")}
    tmp = tempfile.mkdtemp()
    if True:  # Aim keeps background writers on its repo: clean up only after printing, then exit hard
        run = aim.Run(repo=tmp, system_tracking_interval=None)
        run.track(0.0, name="warmup", step=0)
        times = []
        for step in range(20_000):
            start = time.perf_counter_ns()
            run.track(0.5, name="loss", step=step)
            times.append(time.perf_counter_ns() - start)
        out["track_p50_us"] = float(np.percentile(times, 50)) / 1000
        out["track_p99_us"] = float(np.percentile(times, 99)) / 1000
        values = {f"metric_{i}": 0.5 for i in range(10)}
        times = []
        for step in range(5_000):
            start = time.perf_counter_ns()
            run.track(values, step=step)
            times.append(time.perf_counter_ns() - start)
        out["track_10_scalars_p50_us"] = float(np.percentile(times, 50)) / 1000
        points = 100_000
        start = time.perf_counter()
        for step in range(points):
            run.track(1.0 / (step + 1), name="series", step=step)
        run.close()
        out["ingest_points_per_s"] = points / (time.perf_counter() - start)
        start = time.perf_counter()
        repo = aim.Repo(tmp)
        values_read = 0
        for found in repo.query_metrics("metric.name == 'series'").iter():
            _steps, vals = found.values.sparse_numpy()
            values_read += len(vals)
        out["read_100k_ms"] = (time.perf_counter() - start) * 1000 if values_read else None
        out["read_points"] = values_read  # Aim's query API found no points here: read-back not compared
    print(json.dumps(out), flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
