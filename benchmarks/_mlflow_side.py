"""MLflow's side of compare_trackers.py; runs in an interpreter that has mlflow (not a striate dependency)."""

import json
import sys
import tempfile
import time

import numpy as np


def main() -> None:
    import mlflow
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    out = {"mlflow": mlflow.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
        client = MlflowClient()
        with mlflow.start_run() as run:
            mlflow.log_metric("warmup", 0.0, step=0)
            times = []
            for step in range(300):
                start = time.perf_counter_ns()
                mlflow.log_metric("loss", 0.5, step=step)
                times.append(time.perf_counter_ns() - start)
            out["log_metric_p50_us"] = float(np.percentile(times, 50)) / 1000
            out["log_metric_p99_us"] = float(np.percentile(times, 99)) / 1000
            times = []
            values = {f"metric_{i}": 0.5 for i in range(10)}
            for step in range(100):
                start = time.perf_counter_ns()
                mlflow.log_metrics(values, step=step)
                times.append(time.perf_counter_ns() - start)
            out["log_metrics_10_scalars_p50_us"] = float(np.percentile(times, 50)) / 1000
            points = 100_000
            now = int(time.time() * 1000)
            start = time.perf_counter()
            for first in range(0, points, 1000):
                client.log_batch(run.info.run_id, metrics=[Metric("series", 1.0 / (s + 1), now, s)
                                                           for s in range(first, first + 1000)])
            seconds = time.perf_counter() - start
            out["log_batch_points_per_s"] = points / seconds
            start = time.perf_counter()
            history = client.get_metric_history(run.info.run_id, "series")
            out["read_100k_ms"] = (time.perf_counter() - start) * 1000
            out["read_points"] = len(history)
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
