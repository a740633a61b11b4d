"""Load on the team server (issue 12, item 6), with MLflow's tracking server side by side in the same run.

    .venv/bin/python benchmarks/server_load.py --other-python .bench-venv/bin/python

Loopback only. Against a `striate server` on a fresh PostgreSQL database (created here, dropped at the end):

(a) metric points per second acknowledged with 32 concurrent writer processes, each writing its own run
    in 1,000-point batches through ``HttpStore.log_batch`` (10 metrics x 100 steps per batch); afterwards
    every run's full history is read back and its points counted: zero lost, zero duplicated;
(b) p50/p99 acknowledgement latency of one 1,000-point batch under that load (client side, request sent
    to answer read);
(c) server-side time to read a 100,000-point series downsampled to 1,000 points: the ``Server-Timing``
    header the server adds to every answer (time from the request reaching the application to the
    answer's start, body already rendered), the client's round trip beside it;
(d) listing with a filter over 10,000 runs (created first with ``SqlStore.create_run`` straight into the
    database), server-side as in (c).

Then the same 32 writers log the same points (the same keys, steps and batch size: ``log_batch`` of
1,000 ``Metric``s) to ``mlflow server`` on its own fresh PostgreSQL database, from an interpreter that
has mlflow (``--other-python``; python3 -m venv .bench-venv && .bench-venv/bin/pip install mlflow
psycopg2-binary), bounded by ``--mlflow-seconds``; its points are counted back the same way.

Everything started here (servers, writers, databases) is stopped or dropped before it exits. Prints one
JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from _machine import command_line, cpu_model, cpu_seconds, git_state, other_cpu_since

HERE = Path(__file__).parent
PG = "postgresql://postgres@127.0.0.1:5432"
KEYS = 10  # metrics per batch
STEPS = 100  # steps per batch: KEYS * STEPS = 1,000 points


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for this run; dropped afterwards (whatever happened)."""
    import psycopg

    name = f"{prefix}_{os.getpid()}_{int(time.time())}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG}/{name}"
    finally:
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if process.poll() is not None:
                raise RuntimeError(f"the server exited: {log.read_text()[-2000:]}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer within {seconds} s") from None
            time.sleep(0.3)


@contextlib.contextmanager
def server_process(command: list[str], health: str, log: Path, env: dict[str, str] | None = None,
                   ) -> Iterator[subprocess.Popen[bytes]]:
    """A server process in its own process group; SIGINT at the end, then SIGKILL of the group if needed."""
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            wait_healthy(health, process, log)
            yield process
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            with contextlib.suppress(ProcessLookupError):  # workers the server started, if any outlived it
                os.killpg(process.pid, signal.SIGKILL)


def batch(writer: int, index: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """The steps, times and per-key values of one writer's batch ``index`` (distinct values everywhere)."""
    steps = np.arange(index * STEPS, (index + 1) * STEPS, dtype=np.int64)
    times = 1.7e9 + steps.astype(np.float64)
    values = [np.sin(steps * 0.001 + writer + k) for k in range(KEYS)]
    return steps, times, values


# -- one striate writer process -------------------------------------------------------------------
def _striate_writer(url: str, token: str, writer: int, batches: int, ready: Any, go: Any, seconds: float,
                    results: Any) -> None:
    from striate.tracking.store.base import RunRecord
    from striate.tracking.store.codec import MetricSeries
    from striate.tracking.store.http import HttpStore
    from striate.tracking.store.liveness import process_start_time

    store = HttpStore(url, token=token)
    now = time.time()
    run_id = f"load{writer:02d}{os.getpid():08d}"
    store.create_run(RunRecord(id=run_id, name=f"writer-{writer}", project="load", status="running",
                               created_at=now, ended_at=None, heartbeat_at=now, host=socket.gethostname(),
                               pid=os.getpid(), pid_started_at=process_start_time()))
    prepared = []
    for index in range(batches):
        steps, times, values = batch(writer, index)
        prepared.append([MetricSeries(f"m{k}", steps, times, values[k]) for k in range(KEYS)])
    store.log_batch(run_id, prepared[0], heartbeat_at=time.time())  # warm-up: counted, not timed
    sent = KEYS * STEPS
    ready.release()
    go.wait()
    start, cpu = time.monotonic(), time.process_time()
    deadline = start + seconds
    latencies, timed = [], 0
    for series in prepared[1:]:
        if time.monotonic() > deadline:
            break
        t0 = time.perf_counter()
        store.log_batch(run_id, series, heartbeat_at=time.time())
        latencies.append(time.perf_counter() - t0)
        sent += KEYS * STEPS
        timed += KEYS * STEPS
    end, cpu = time.monotonic(), time.process_time() - cpu
    store.close()
    results.put({"run": run_id, "sent": sent, "timed": timed, "start": start, "end": end, "latencies": latencies,
                 "cpu_s": cpu})


def run_writers(target: Any, args: tuple[Any, ...], writers: int, timeout_s: float) -> list[dict[str, Any]]:
    """Start ``writers`` processes, release them together once all are ready, collect their results."""
    ctx = multiprocessing.get_context("spawn")
    ready, go, results = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    processes = [ctx.Process(target=target, args=(*args[:2], w, *args[2:3], ready, go, *args[3:], results))
                 for w in range(writers)]
    for p in processes:
        p.start()
    try:
        deadline = time.monotonic() + timeout_s
        for _ in range(writers):
            while not ready.acquire(timeout=1):
                if any(p.exitcode not in (None, 0) for p in processes) or time.monotonic() > deadline:
                    raise RuntimeError("a writer failed or did not get ready in time (see its error above)")
        go.set()
        collected = [results.get(timeout=timeout_s) for _ in range(writers)]
        for p in processes:
            p.join(timeout=30)
        return collected
    finally:
        for p in processes:
            if p.is_alive():
                p.kill()
                p.join()


def process_tree_cpu_s(pid: int) -> float:
    """CPU seconds used so far by a process and its children (a server and its uvicorn workers)."""
    import psutil

    total = 0.0
    root = psutil.Process(pid)
    for process in (root, *root.children(recursive=True)):
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def postgres_cpu_s(database: str) -> float:
    """CPU seconds used so far by the PostgreSQL backends serving ``database`` (their titles name it); a backend
    that ends in between is missed (the server's pooled connections stay)."""
    import psutil

    total = 0.0
    for process in psutil.process_iter(["name", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if "postgres" in (process.info["name"] or "") and any(
                    f" {database} " in f" {part} " for part in process.info["cmdline"] or ()):
                times = process.cpu_times()
                total += times.user + times.system
    return total


def percentile_ms(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values), q)) * 1000, 2)


def server_ms(response: Any) -> float:
    """The server's own time for a request, from its Server-Timing header (``app;dur=MS``)."""
    header = response.headers["server-timing"]
    return float(header.split("dur=")[1].split(",")[0])


def timed_gets(client: Any, path: str, params: dict[str, Any], repeats: int) -> dict[str, Any]:
    client.get(path, params=params).raise_for_status()  # warm-up
    server, total, size = [], [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        response = client.get(path, params=params)
        total.append((time.perf_counter() - t0) * 1000)
        response.raise_for_status()
        server.append(server_ms(response))
        size = len(response.content)
    return {"server_ms_p50": round(float(np.median(server)), 2), "server_ms_max": round(max(server), 2),
            "round_trip_ms_p50": round(float(np.median(total)), 2), "response_bytes": size, "repeats": repeats}


# -- the striate side ---------------------------------------------------------------------------------
def striate_side(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import httpx

    from striate.tracking.store import open_store
    from striate.tracking.store.base import RunRecord
    from striate.tracking.store.codec import MetricSeries
    from striate.tracking.store.http import HttpStore

    out: dict[str, Any] = {"uvicorn_workers": args.workers}
    env = {**os.environ, "STRIATE_ARTIFACTS": str(tmp / "artifacts")}
    with fresh_database("striate_load") as db:
        cli = [sys.executable, "-m", "striate", "server"]
        subprocess.run([*cli, "upgrade", "--db", db], check=True, capture_output=True, env=env, timeout=300)
        made = subprocess.run([*cli, "create-admin", "bench", "--db", db], check=True, capture_output=True,
                              text=True, env=env, timeout=300)
        token = made.stdout.strip().splitlines()[-1]
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        command = [*cli, "--db", db, "--port", str(port), "--workers", str(args.workers)]
        with server_process(command, f"{url}/api/v1/health", tmp / "striate-server.log", env) as server:
            # (a), (b): 32 writers
            database = db.rsplit("/", 1)[1]
            noise, server_cpu, pg_cpu = cpu_seconds(), process_tree_cpu_s(server.pid), postgres_cpu_s(database)
            results = run_writers(_striate_writer, (url, token, args.batches, args.seconds), args.writers,
                                  timeout_s=args.seconds + 300)
            out["load"] = summarize(results, other_cpu_since(noise))
            batches = out["load"]["batches_timed"] + args.writers  # the warm-up batches fall in the window too
            out["load"]["cpu_ms_per_batch"] = {
                "server": round((process_tree_cpu_s(server.pid) - server_cpu) / batches * 1000, 2),
                "postgres": round((postgres_cpu_s(database) - pg_cpu) / batches * 1000, 2),
                "writer": round(sum(r["cpu_s"] for r in results) / out["load"]["batches_timed"] * 1000, 2)}
            # zero lost or duplicated: every run's full history, read back and counted
            store = HttpStore(url, token=token)
            stored, duplicated = 0, 0
            for r in results:
                for k in range(KEYS):
                    series = store.history(r["run"], f"m{k}")
                    stored += len(series)
                    duplicated += len(series) - len(np.unique(series.steps))
            sent = sum(r["sent"] for r in results)
            out["load"].update(points_sent=sent, points_stored=stored, duplicated_points=duplicated,
                               lost_points=sent - stored + duplicated, exact=stored == sent and duplicated == 0)

            # (c) a 100,000-point series, downsampled by the server to 1,000 points
            now = time.time()
            store.create_run(RunRecord(id="read100k", name="read-100k", project="load", status="finished",
                                       created_at=now, ended_at=now, heartbeat_at=now))
            for first in range(0, 100_000, 1000):
                steps = np.arange(first, first + 1000, dtype=np.int64)
                store.log_batch("read100k", [MetricSeries("loss", steps, 1.7e9 + steps * 0.01,
                                                          np.exp(-steps / 30_000) + 0.01 * np.sin(steps))])
            store.close()
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
                read = timed_gets(client, "/api/v1/runs/read100k/metrics/loss", {"max_points": 1000}, args.repeats)
                read["points_returned"] = len(client.get("/api/v1/runs/read100k/metrics/loss",
                                                         params={"max_points": 1000}).json()["steps"])
                out["read_100k_downsampled_1000"] = read

                # (d) 10,000 runs, created straight in the database through the store API
                direct = open_store(db)
                t0 = time.perf_counter()
                for i in range(args.runs):
                    created = 1.7e9 + i
                    direct.create_run(RunRecord(
                        id=f"r{i:07d}", name=f"sweep-{i}", project="sweep",
                        status=("finished", "crashed", "stopped")[i % 3], created_at=created, ended_at=created + 60,
                        heartbeat_at=created + 60, model=("lenet5", "resnet18")[i % 2],
                        config={"lr": 10 ** -(1 + (i % 40) / 10), "batch_size": 2 ** (5 + i % 4),
                                "optimizer": {"name": "sgd", "momentum": 0.9}},
                        tags=["sweep"] if i % 5 else ["sweep", "baseline"]))
                out["runs_created"] = args.runs
                out["runs_create_s"] = round(time.perf_counter() - t0, 1)
                direct.engine.dispose()  # type: ignore[attr-defined]
                where = "params.lr < 0.01 and status = finished"
                listing: dict[str, Any] = {"where": where}
                listing["page_100_records"] = timed_gets(client, "/api/v1/runs",
                                                         {"where": where, "limit": 100}, args.repeats)
                every_id = {"where": where, "ids_only": "true", "limit": 1_000_000}
                listing["all_matching_ids"] = timed_gets(client, "/api/v1/runs", every_id, args.repeats)
                listing["matching"] = len(client.get("/api/v1/runs", params=every_id).json()["ids"])
                listing["all_matching_records"] = timed_gets(client, "/api/v1/runs",
                                                             {"where": where, "limit": 10_000}, args.repeats)
                out["list_10k_runs_filtered"] = listing
    return out


def summarize(results: list[dict[str, Any]], other_cpu_s: float) -> dict[str, Any]:
    latencies = [x for r in results for x in r["latencies"]]
    start = min(r["start"] for r in results)
    end = max(r["end"] for r in results)
    timed = sum(r["timed"] for r in results)
    return {"writers": len(results), "points_per_batch": KEYS * STEPS, "batches_timed": len(latencies),
            "seconds": round(end - start, 2), "points_per_s": round(timed / (end - start)),
            "ack_latency_ms_p50": percentile_ms(latencies, 50), "ack_latency_ms_p99": percentile_ms(latencies, 99),
            "ack_latency_ms_max": percentile_ms(latencies, 100),
            # busy CPU of the whole machine in the window, less the writers' (the server and PostgreSQL are in it)
            "machine_cpu_s_not_writers": other_cpu_s}


# -- MLflow's side --------------------------------------------------------------------------------------
def mlflow_side(args: argparse.Namespace, tmp: Path) -> dict[str, Any] | str:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with fresh_database("mlflow_load") as db:
        python = args.other_python
        backend = db.replace("postgresql://", "postgresql+psycopg2://")  # the driver installed beside mlflow
        command = [python, "-m", "mlflow", "server", "--backend-store-uri", backend,
                   "--default-artifact-root", (tmp / "mlflow-artifacts").as_uri(),
                   "--host", "127.0.0.1", "--port", str(port), "--workers", str(args.workers)]
        env = {**os.environ, "MLFLOW_TRACKING_URI": url}
        try:
            with server_process(command, f"{url}/health", tmp / "mlflow-server.log", env) as server:
                database = db.rsplit("/", 1)[1]
                noise, server_cpu, pg_cpu = cpu_seconds(), process_tree_cpu_s(server.pid), postgres_cpu_s(database)
                done = subprocess.run([python, str(HERE / "_mlflow_load_side.py"), "--url", url,
                                       "--writers", str(args.writers), "--batches", str(args.batches),
                                       "--seconds", str(args.mlflow_seconds), "--keys", str(KEYS),
                                       "--steps", str(STEPS)],
                                      capture_output=True, text=True, timeout=args.mlflow_seconds + 900)
                other = other_cpu_since(noise)
                used = {"server_s": round(process_tree_cpu_s(server.pid) - server_cpu, 1),
                        "postgres_s": round(postgres_cpu_s(database) - pg_cpu, 1)}
        except RuntimeError as error:
            return f"failed: {error}"
        if done.returncode != 0:
            return f"failed: {done.stderr.strip()[-2000:]}"
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        result["uvicorn_workers"] = args.workers
        result["load"]["machine_cpu_s_not_writers"] = other
        result["load"]["cpu_whole_run"] = used  # writing and counting back (MLflow's read-back is in it)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--other-python", help="interpreter with mlflow and psycopg2 (omit: striate only)")
    parser.add_argument("--writers", type=int, default=32)
    parser.add_argument("--batches", type=int, default=60, help="1,000-point batches per writer (first: warm-up)")
    parser.add_argument("--seconds", type=float, default=120, help="bound on each striate writer's timed phase")
    parser.add_argument("--mlflow-seconds", type=float, default=60, help="bound on each MLflow writer's timed phase")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes, for both servers")
    parser.add_argument("--runs", type=int, default=10_000, help="runs for the listing measurement")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    load_before = os.getloadavg()
    started = time.time()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        ours = striate_side(args, tmp)
        mlflow = mlflow_side(args, tmp) if args.other_python else "not run (no --other-python)"
    ratios: dict[str, float] = {}
    if isinstance(mlflow, dict):
        ratios["striate_points_per_s_over_mlflow"] = round(ours["load"]["points_per_s"]
                                                           / mlflow["load"]["points_per_s"], 1)
        ratios["mlflow_ack_p50_over_striate"] = round(mlflow["load"]["ack_latency_ms_p50"]
                                                      / ours["load"]["ack_latency_ms_p50"], 1)
    targets = {
        "points_per_s_at_least_100000": ours["load"]["points_per_s"] >= 100_000,
        "ack_p99_at_most_50ms": ours["load"]["ack_latency_ms_p99"] <= 50,
        "read_100k_to_1000_at_most_30ms_server_side":
            ours["read_100k_downsampled_1000"]["server_ms_p50"] <= 30,
        "list_10k_filtered_page_at_most_100ms_server_side":
            ours["list_10k_runs_filtered"]["page_100_records"]["server_ms_p50"] <= 100,
        "zero_lost_or_duplicated": ours["load"]["exact"],
    }
    print(json.dumps({"benchmark": "server_load", "command": command_line(), "date": time.strftime(
        "%Y-%m-%d %H:%M UTC", time.gmtime(started)), "cpu": cpu_model(), "cores": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()], "git": git_state(),
        "striate": ours, "mlflow": mlflow, "ratios": ratios, "targets_met": targets,
        "wall_s": round(time.time() - started, 1)}, indent=2))


if __name__ == "__main__":
    main()
