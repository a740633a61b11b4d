"""striate vs MLflow (and Aim) on this machine, in one run.

    .venv/bin/python benchmarks/compare_trackers.py --other-python .bench-venv/bin/python

``--other-python`` is an interpreter with ``mlflow`` (and optionally ``aim``) installed, kept out of
striate's own environment (``python3 -m venv .bench-venv && .bench-venv/bin/pip install mlflow aim``).
Each tool uses its default local store (striate: SQLite; MLflow: sqlite:///; Aim: its own repo).
Prints one JSON object with each tool's figures and striate's ratios.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import command_line

import striate

HERE = Path(__file__).parent


def striate_side() -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        run = striate.init(store=tmp, system_metrics=False)
        times = np.empty(20_000, np.int64)
        for step in range(20_000):
            start = time.perf_counter_ns()
            run.log({"loss": 0.5}, step=step)
            times[step] = time.perf_counter_ns() - start
        out["log_1_scalar_p50_us"] = float(np.percentile(times, 50)) / 1000
        out["log_1_scalar_p99_us"] = float(np.percentile(times, 99)) / 1000
        values = {f"metric_{i}": 0.5 for i in range(10)}
        for step in range(20_000):
            start = time.perf_counter_ns()
            run.log(values, step=step)
            times[step] = time.perf_counter_ns() - start
        out["log_10_scalars_p50_us"] = float(np.percentile(times, 50)) / 1000
        start = time.perf_counter()
        for step in range(100_000):
            run.log({"series": 1.0 / (step + 1)}, step=step)
        run.flush()
        out["ingest_points_per_s"] = 100_000 / (time.perf_counter() - start)
        run.finish()
        api = striate.Api(tmp)
        start = time.perf_counter()
        series = api.run(run.id).history("series")
        out["read_100k_ms"] = (time.perf_counter() - start) * 1000
        out["read_points"] = len(series)
    return out


def other_side(python: str, script: str) -> dict[str, float] | str:
    done = subprocess.run([python, str(HERE / script)], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        return f"failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--other-python", required=True, help="interpreter with mlflow (and aim) installed")
    args = parser.parse_args()
    ours = striate_side()
    mlflow = other_side(args.other_python, "_mlflow_side.py")
    aim = other_side(args.other_python, "_aim_side.py")
    ratios: dict[str, float] = {}
    if isinstance(mlflow, dict):
        ratios["mlflow_log_metric_latency_over_striate"] = mlflow["log_metric_p50_us"] / ours["log_1_scalar_p50_us"]
        ratios["striate_ingest_over_mlflow_log_batch"] = ours["ingest_points_per_s"] / mlflow["log_batch_points_per_s"]
        ratios["mlflow_read_100k_over_striate"] = mlflow["read_100k_ms"] / ours["read_100k_ms"]
    if isinstance(aim, dict):
        ratios["aim_track_latency_over_striate"] = aim["track_p50_us"] / ours["log_1_scalar_p50_us"]
        ratios["striate_ingest_over_aim"] = ours["ingest_points_per_s"] / aim["ingest_points_per_s"]
        if aim.get("read_100k_ms"):
            ratios["aim_read_100k_over_striate"] = aim["read_100k_ms"] / ours["read_100k_ms"]
    print(json.dumps({"benchmark": "compare_trackers", "command": command_line(), "striate": ours,
                      "mlflow": mlflow, "aim": aim, "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
