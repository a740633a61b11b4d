"""`striate stop`: a training process anywhere learns of the request through its writer, stops after its
current step with a checkpoint there, and `striate resume` finishes it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import striate
from striate.errors import StriateError
from striate.tracking.store import open_store
from striate.train.events import STOP_REQUESTED
from tests.conftest import run_cli, write_dataset


@pytest.fixture(params=["folder", "server"])
def stop_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A local store folder, or the team server (the training process then learns of the stop through
    its spool's sync)."""
    if request.param == "server":
        return str(request.getfixturevalue("server_url"))
    return str(tmp_path / "store")


def test_stop_ends_a_training_process_with_a_checkpoint_and_resume_finishes_it(tmp_path: Path, stop_store: str) -> None:
    data = write_dataset(tmp_path / "data", n_train=640, n_test=80)
    store = stop_store
    # Over a server the request travels server -> the run's spool sync (each second) -> its writer: the run
    # trains long enough that it cannot end before the request arrives, however fast the machine.
    epochs = 3 if not store.startswith("http") else 12
    proc = subprocess.Popen([sys.executable, "-m", "striate", "train", "--data", str(data), "--epochs", str(epochs),
                             "--batch-size", "16", "--log-every", "2", "--store", store, "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the first epoch is done: the run is well into training
            if line.startswith(f"epoch   1/{epochs}"):
                break
        deadline = time.monotonic() + 30
        while not open_store(store).list_runs() and time.monotonic() < deadline:
            time.sleep(0.2)  # on the server: until the spool's first sync
        (record,) = open_store(store).list_runs()
        asked = run_cli("stop", record.id[:8], "--store", str(store))
        assert asked.returncode == 0, asked.stderr
        assert "asked run" in asked.stdout and f"striate resume {record.id[:8]} --store {store}" in asked.stdout
        started = time.monotonic()
        out, err = proc.communicate(timeout=120)
        waited = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert waited < 30, f"the process took {waited:.0f} s to stop"
    stopped = open_store(store).get_run(record.id)
    assert stopped.status == "stopped" and stopped.summary["stop_reason"] == STOP_REQUESTED
    last = stopped.summary["last_checkpoint"]
    steps_per_epoch = 640 // 16
    # stopped after epoch 1 had ended: the checkpoint is where it stopped, not an epoch's start
    assert steps_per_epoch < last["global_step"] < epochs * steps_per_epoch
    assert last["weights"] in {a["path"] for a in stopped.artifacts}

    again = run_cli("stop", record.id, "--store", str(store))
    assert again.returncode != 0 and "nothing to stop" in again.stderr

    resumed = run_cli("resume", record.id, "--store", str(store), "--no-progress", subprocess=True)
    assert resumed.returncode == 0, resumed.stderr
    done = open_store(store).get_run(record.id)
    assert done.status == "finished" and done.stop_requested_at is None  # the resume started without the request
    assert done.summary["last_checkpoint"]["global_step"] == epochs * steps_per_epoch


def test_a_stop_request_reaches_the_writer_and_only_a_running_run_takes_one(tmp_path: Path) -> None:
    run = striate.init(store=str(tmp_path), capture_console=False, system_metrics=False, capture_environment=False)
    store = open_store(tmp_path)
    run.log({"loss": 1.0})
    run.flush()
    assert run.stop_requested_at is None
    first = store.request_stop(run.id)
    assert store.request_stop(run.id) == first  # asking twice keeps the first time
    run.log({"loss": 0.5})
    run.flush()
    assert run.stop_requested_at == pytest.approx(first)
    run.finish()
    with pytest.raises(StriateError, match="nothing to stop"):
        store.request_stop(run.id)
