"""MLflow's side of server_load.py; runs in an interpreter that has mlflow (not a striate dependency).

N writer processes, each its own MLflow run on the tracking server at --url, send the same batches as
striate's writers (KEYS metrics x STEPS steps = one ``log_batch`` of 1,000 ``Metric``s), bounded by
--seconds; afterwards every run's full metric histories are read back and counted. Prints one JSON object.
"""

import argparse
import json
import multiprocessing
import sys
import time

import numpy as np


def writer(url, experiment_id, index, batches, keys, steps, seconds, ready, go, results):
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    run_id = client.create_run(experiment_id, run_name=f"writer-{index}").info.run_id
    prepared = []
    for b in range(batches):
        step_array = np.arange(b * steps, (b + 1) * steps, dtype=np.int64)
        prepared.append([Metric(f"m{k}", float(v), int(1.7e12 + s * 1000), int(s))
                         for k in range(keys)
                         for s, v in zip(step_array, np.sin(step_array * 0.001 + index + k))])
    client.log_batch(run_id, metrics=prepared[0])  # warm-up: counted, not timed
    sent = keys * steps
    ready.release()
    go.wait()
    start = time.monotonic()
    deadline = start + seconds
    latencies, timed = [], 0
    for metrics in prepared[1:]:
        if time.monotonic() > deadline:
            break
        t0 = time.perf_counter()
        client.log_batch(run_id, metrics=metrics)
        latencies.append(time.perf_counter() - t0)
        sent += keys * steps
        timed += keys * steps
    end = time.monotonic()
    results.put({"run": run_id, "sent": sent, "timed": timed, "start": start, "end": end, "latencies": latencies})


def main():
    import mlflow
    from mlflow.tracking import MlflowClient

    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--writers", type=int, required=True)
    parser.add_argument("--batches", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--keys", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True)
    args = parser.parse_args()
    client = MlflowClient(tracking_uri=args.url)
    experiment_id = client.create_experiment(f"load-{int(time.time())}")
    ctx = multiprocessing.get_context("spawn")
    ready, go, results = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    processes = [ctx.Process(target=writer, args=(args.url, experiment_id, i, args.batches, args.keys, args.steps,
                                                  args.seconds, ready, go, results)) for i in range(args.writers)]
    for p in processes:
        p.start()
    try:
        for _ in processes:
            if not ready.acquire(timeout=args.seconds + 300):
                raise RuntimeError("an MLflow writer did not get ready in time")
        go.set()
        collected = [results.get(timeout=args.seconds + 300) for _ in processes]
        for p in processes:
            p.join(timeout=30)
    finally:
        for p in processes:
            if p.is_alive():
                p.kill()
                p.join()
    latencies = [x for r in collected for x in r["latencies"]]
    start = min(r["start"] for r in collected)
    end = max(r["end"] for r in collected)
    timed = sum(r["timed"] for r in collected)
    stored, duplicated = 0, 0
    t0 = time.perf_counter()
    for r in collected:
        for k in range(args.keys):
            history = client.get_metric_history(r["run"], f"m{k}")
            stored += len(history)
            duplicated += len(history) - len({m.step for m in history})
    read_s = time.perf_counter() - t0
    sent = sum(r["sent"] for r in collected)
    print(json.dumps({"mlflow": mlflow.__version__, "load": {
        "writers": len(collected), "points_per_batch": args.keys * args.steps, "batches_timed": len(latencies),
        "seconds": round(end - start, 2), "points_per_s": round(timed / (end - start)),
        "ack_latency_ms_p50": round(float(np.percentile(latencies, 50)) * 1000, 2),
        "ack_latency_ms_p99": round(float(np.percentile(latencies, 99)) * 1000, 2),
        "ack_latency_ms_max": round(float(np.max(latencies)) * 1000, 2),
        "points_sent": sent, "points_stored": stored, "duplicated_points": duplicated,
        "lost_points": sent - stored + duplicated, "exact": stored == sent and duplicated == 0,
        "read_back_s": round(read_s, 1)}}))


if __name__ == "__main__":
    sys.exit(main())
