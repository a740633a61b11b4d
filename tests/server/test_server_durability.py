"""SIGKILL of the team server under write load: no acknowledged point is lost, and the runs that kept
training through the outage (into their local spools) arrive complete after the restart, nothing twice.

The server runs on PostgreSQL (the real one at 127.0.0.1:5432). Two kinds of writers run at once:
- direct writers send 100-point batches with ``HttpStore.log_batch`` and write down each batch the
  server acknowledged (fsync'd) — after the kill and restart, every acknowledged batch must be there,
  exactly once;
- training-like writers log through ``striate.init(store=URL)`` (the spool and its syncer) for the
  whole outage — every point must reach the server, exactly once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from striate.tracking.store import open_store
from tests.conftest import TeamServer, run_cli

pytest.importorskip("fastapi")

DIRECT_WRITER = r"""
import os, sys, time, uuid
import numpy as np
from striate.errors import StriateError
from striate.tracking.store import MetricSeries, RunRecord, open_store

url, acked_file, run_file, stop_file = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
store = open_store(url)
now = time.time()
run_id = uuid.uuid4().hex
store.create_run(RunRecord(id=run_id, name="direct-" + os.path.basename(acked_file), project="default",
                           status="running", created_at=now, ended_at=None, heartbeat_at=now))
open(run_file, "w").write(run_id)
deadline = time.monotonic() + 180
failures = 0
acked_after_stop = 0
with open(acked_file, "a") as acked:
    batch = 0
    while time.monotonic() < deadline and acked_after_stop < 20:  # until 20 batches after the restart
        steps = np.arange(batch * 100, batch * 100 + 100)
        try:
            store.log_batch(run_id, [MetricSeries("loss", steps, np.full(100, time.time()), steps * 0.5)])
        except StriateError:  # the server is away: this batch was not acknowledged; try the next later
            failures += 1
            time.sleep(0.05)
            batch += 1
            continue
        if os.path.exists(stop_file):
            acked_after_stop += 1
        acked.write(f"{batch}\n")
        acked.flush()
        os.fsync(acked.fileno())
        batch += 1
print(failures)
"""

SPOOL_WRITER = r"""
import sys, time
import striate
url, points = sys.argv[1], int(sys.argv[2])
run = striate.init(store=url, name="spooled-" + sys.argv[3], system_metrics=False, capture_console=False,
                   capture_environment=False)
for step in range(points):
    run.log({"loss": 1.0 / (step + 1), "acc": step / points}, step=step)
    if step % 200 == 0:
        time.sleep(0.05)  # about 8 s in all: before, during and after the outage
run.finish()
print(run.id)
"""


def test_sigkill_of_the_server_under_load_loses_no_acknowledged_point(postgres_url: str, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    server = TeamServer(tmp_path / "server", db=postgres_url)
    env = {**os.environ, "STRIATE_TOKEN": server.token, "STRIATE_SPOOL": str(tmp_path / "spool")}
    monkeypatch.setenv("STRIATE_TOKEN", server.token)
    direct = [subprocess.Popen([sys.executable, "-c", DIRECT_WRITER, server.url, str(tmp_path / f"acked-{i}"),
                                str(tmp_path / f"run-{i}"), str(tmp_path / "restarted")],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for i in range(2)]
    spooled = [subprocess.Popen([sys.executable, "-c", SPOOL_WRITER, server.url, "30000", str(i)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"acked-{i}").is_file() and (tmp_path / f"acked-{i}").stat().st_size > 40
                      for i in range(2)):
            assert time.monotonic() < deadline, "the writers acknowledged nothing in 120 s"
            assert all(p.poll() is None for p in direct), [p.communicate()[1] for p in direct]
            time.sleep(0.1)
        server.kill()  # mid-write: requests in flight are cut
        killed_at = {i: len((tmp_path / f"acked-{i}").read_text().split()) for i in range(2)}
        time.sleep(2.0)
        server.start()  # same database, same port
        (tmp_path / "restarted").touch()
        outputs = [p.communicate(timeout=300) for p in spooled]
        direct_outputs = [p.communicate(timeout=300) for p in direct]
    finally:
        for p in direct + spooled:
            if p.poll() is None:
                p.kill()

    try:
        # Whatever a spool still holds (a sync cut by the kill) goes now; sending twice stores nothing twice.
        synced = run_cli("sync", "--to", server.url, "--spool", str(tmp_path / "spool"), "--json")
        assert synced.returncode == 0 and all(row["error"] is None for row in json.loads(synced.stdout)), synced
        store = open_store(server.url)
        assert any(int(out.split()[-1]) > 0 for out, _ in direct_outputs), "no write met the outage"
        for i, p in enumerate(direct):
            assert p.returncode == 0, direct_outputs[i][1]
            acked = [int(line) for line in (tmp_path / f"acked-{i}").read_text().split()]
            assert len(acked) > killed_at[i], "writing went on after the restart"
            run_id = (tmp_path / f"run-{i}").read_text()
            steps = store.history(run_id, "loss").steps
            assert len(np.unique(steps)) == len(steps), "a batch stored twice"
            missing = set(acked) - set((steps // 100).tolist())
            assert not missing, f"acknowledged batches lost: {sorted(missing)[:10]}"
        for p, (out, err) in zip(spooled, outputs):
            assert p.returncode == 0, err
            record = store.get_run(out.strip().splitlines()[-1])
            assert record.status == "finished", (record.status, err)
            for key in ("loss", "acc"):
                got = store.history(record.id, key).steps
                np.testing.assert_array_equal(got, np.arange(30000))  # every point, each once, in order
    finally:
        server.stop()
