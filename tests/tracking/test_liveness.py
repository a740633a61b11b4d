"""A live run cannot be taken over: real `striate train` processes, suspended with SIGSTOP.

A suspended job refreshes no heartbeat, but its process is alive on this host: its run stays
`running` and cannot be resumed. A run resumed elsewhere all the same (its claim taken) is no
longer written by the old process, which stops with a clear message once it continues.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from striate.tracking.store import liveness, open_store
from tests.conftest import run_cli, write_dataset

STALE_ENV = "STRIATE_STALE_AFTER_S"  # liveness.STALE_ENV, read by every process
STALE_S = "1"  # the stale-heartbeat threshold for every process of these tests (default 30 s)


@pytest.fixture
def training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[subprocess.Popen[str], Path, str]]:
    """A `striate train` process past its first epoch (a checkpoint exists), and its store and run id."""
    monkeypatch.setenv(STALE_ENV, STALE_S)
    monkeypatch.setattr(liveness, "STALE_AFTER_S", float(STALE_S))
    data = write_dataset(tmp_path / "data", n_train=320, n_test=40)
    store = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-m", "striate", "train", "--data", str(data), "--store", str(store),
                             "--epochs", "60", "--batch-size", "16", "--log-every", "1", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("epoch   1/"):
            break
    else:
        pytest.fail(f"training ended early: {proc.stderr.read() if proc.stderr else ''}")
    (record,) = open_store(store).list_runs()
    try:
        yield proc, store, record.id
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        proc.communicate()


def suspend(proc: subprocess.Popen[str], store: Path) -> None:
    """SIGSTOP ``proc`` at a moment it holds no write transaction (else every writer would wait on it)."""
    for _ in range(100):
        proc.send_signal(signal.SIGSTOP)
        time.sleep(0.05)
        probe = sqlite3.connect(store / "striate.db", timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:  # stopped mid-write: let it finish the transaction, try again
            proc.send_signal(signal.SIGCONT)
            time.sleep(0.01)
        finally:
            probe.close()
    pytest.fail("the training process always held the write lock")


def test_a_suspended_training_stays_running_and_cannot_be_resumed(training):
    proc, store, run_id = training
    suspend(proc, store)
    time.sleep(float(STALE_S) + 1.5)  # its heartbeat is now stale by the threshold every opener uses
    assert open_store(store).get_run(run_id).status == "running", "its process is alive on this host"
    listed = run_cli("runs", "--store", str(store), "--json", timeout=120)
    assert listed.returncode == 0 and '"running"' in listed.stdout
    resumed = run_cli("resume", run_id, "--store", str(store), "--no-progress", timeout=120)
    assert resumed.returncode != 0 and "running" in resumed.stderr, resumed.stderr
    record = open_store(store).get_run(run_id)
    assert record.status == "running" and record.pid == proc.pid
    proc.send_signal(signal.SIGCONT)
    time.sleep(0.5)
    assert proc.poll() is None, "the continued training goes on"


def test_a_training_whose_run_was_taken_over_stops_and_writes_no_more_points(training, monkeypatch):
    proc, store, run_id = training
    suspend(proc, store)
    opened = open_store(store)
    # Resumed by another process, as a host that cannot see this process would: crashed, then claimed.
    opened.update_run(run_id, status="crashed")
    assert opened.claim_run(run_id, host="another-host", pid=4242, pid_started_at=1.0)
    before = opened.get_run(run_id).metrics["train/loss"]["count"]
    proc.send_signal(signal.SIGCONT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode != 0, out + err
    assert "taken over" in err and "Traceback" not in err, err
    # The new owner ("another host") writes no heartbeat here: read with the usual threshold.
    monkeypatch.delenv(STALE_ENV)
    monkeypatch.setattr(liveness, "STALE_AFTER_S", 3600.0)
    record = open_store(store).get_run(run_id)
    assert record.metrics["train/loss"]["count"] == before, "the old process appended points after losing the run"
    assert record.status == "running" and record.host == "another-host" and record.pid == 4242, "the new owner keeps it"


def test_a_run_object_taken_over_refuses_log_and_finish_and_drops_its_queued_points(tmp_path):
    import striate
    from striate.errors import StoreError

    folder = tmp_path / "s"
    run = striate.init(store=folder, system_metrics=False, capture_environment=False, capture_console=False)
    run.log({"loss": 1.0}, step=0)
    kept = run.log  # the fast path, kept by the training loop
    run.flush()
    store = open_store(folder)
    store.update_run(run.id, status="crashed")  # as another host would see a silent run, then resume it
    assert store.claim_run(run.id, host="another-host", pid=4242, pid_started_at=1.0)
    run.log({"loss": 2.0}, step=1)  # queued before the writer learns it lost the run
    deadline = time.monotonic() + 10
    while not run.claim_lost and time.monotonic() < deadline:
        time.sleep(0.01)
    assert run.claim_lost
    with pytest.raises(StoreError, match="taken over"):
        run.log({"loss": 3.0}, step=2)
    with pytest.raises(StoreError, match="taken over"):
        kept({"loss": 3.0}, step=2)
    with pytest.raises(StoreError, match="taken over") as caught:
        run.finish()
    assert caught.value.fix
    run.finish()  # once reported, a `with` block's finish() adds nothing
    assert store.history(run.id, "loss").values.tolist() == [1.0]
    record = store.get_run(run.id)
    assert record.host == "another-host" and record.status == "running"
