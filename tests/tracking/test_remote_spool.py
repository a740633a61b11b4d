"""A remote store through the local spool: the real PostgreSQL server on 127.0.0.1:5432, and the team server
(a real `striate server` process) — each test runs on both; artifact files are checked through the store's
file API (a PostgreSQL store's artifact folder, the team server's uploads)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import striate
from striate.tracking.spool import Syncer
from striate.tracking.store import open_store
from striate.tracking.store.base import file_sha256
from tests.conftest import run_cli

UNREACHABLE = {"postgresql": "postgresql://postgres@127.0.0.1:9/nowhere", "http": "http://127.0.0.1:9"}


@pytest.fixture(params=["postgresql", "http"])
def pg_url(request, tmp_path, monkeypatch):
    """A fresh remote store per test — a PostgreSQL database, or the team server with its runs wiped; the spool
    and a PostgreSQL store's artifact folder in tmp_path."""
    url = request.getfixturevalue("postgres_url" if request.param == "postgresql" else "server_url")
    monkeypatch.setenv("STRIATE_SPOOL", str(tmp_path / "spool"))
    return url


@pytest.fixture
def unreachable(pg_url):
    """A store of the same kind that does not answer."""
    return UNREACHABLE["http" if pg_url.startswith("http") else "postgresql"]


def test_a_run_on_a_remote_store_is_spooled_then_synced(pg_url, tmp_path):
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"w" * 1000)
    run = striate.init(project="p", config={"lr": 0.1}, store=pg_url, system_metrics=False)
    for step in range(3000):
        run.log({"loss": 1 / (step + 1)}, step=step)
    run.log_artifact(weights, kind="model")
    run.finish()
    assert run.sync_error is None
    remote = open_store(pg_url)
    record = remote.get_run(run.id)
    assert record.status == "finished" and record.config == {"lr": 0.1} and record.environment["python"]
    series = remote.history(run.id, "loss")
    np.testing.assert_array_equal(series.steps, np.arange(3000))
    assert record.metrics["loss"]["count"] == 3000 and record.metrics["loss"]["min"] == 1 / 3000
    (artifact,) = [a for a in record.artifacts if a["kind"] == "model"]
    assert remote.artifact_file(run.id, artifact["path"]).read_bytes() == weights.read_bytes()
    assert remote.search_runs(where="params.lr = 0.1") == [run.id]

    # Syncing again, in-process or through the CLI, sends nothing twice.
    spool = open_store(tmp_path / "spool")
    assert Syncer(spool, remote, run.id).sync() == {"chunks_sent": 0, "artifacts_copied": 0, "superseded": 0}
    out = run_cli("sync", "--to", pg_url, "--spool", str(tmp_path / "spool"), "--json",
                  env={"STRIATE_ARTIFACTS": str(tmp_path / "remote-artifacts")})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["chunks_sent"] == 0
    assert len(open_store(pg_url).history(run.id, "loss")) == 3000


def test_an_unreachable_server_loses_nothing(pg_url, unreachable, tmp_path, capsys):
    run = striate.init(config={"lr": 0.2}, store=unreachable, system_metrics=False, capture_console=False)
    for step in range(500):
        run.log({"acc": step / 500}, step=step)
    run.finish()
    assert run.sync_error is not None
    assert "striate sync" in capsys.readouterr().err
    out = run_cli("sync", "--to", pg_url, "--spool", str(tmp_path / "spool"), "--json",
                  env={"STRIATE_ARTIFACTS": str(tmp_path / "remote-artifacts")})
    assert out.returncode == 0, out.stderr
    record = open_store(pg_url).get_run(run.id)
    assert record.status == "finished" and record.metrics["acc"]["count"] == 500


def test_train_on_a_remote_store(pg_url, synthetic_data, tmp_path):
    done = run_cli("train", "--data", str(synthetic_data), "--epochs", "1", "--store", pg_url, "--no-progress",
                   "--json", env={"STRIATE_SPOOL": str(tmp_path / "spool"),
                                  "STRIATE_ARTIFACTS": str(tmp_path / "remote-artifacts")})
    assert done.returncode == 0, done.stderr
    record = open_store(pg_url).get_run(json.loads(done.stdout)["id"])
    assert record.status == "finished" and "test/acc1" in record.metrics
    (weights,) = [a for a in record.artifacts if a["path"] == "model.safetensors"]
    stored = open_store(pg_url).artifact_file(record.id, "model.safetensors")  # the remote's file, not the spool's
    assert file_sha256(stored) == weights["sha256"] and stored.stat().st_size == weights["size"]
    assert not stored.is_relative_to(tmp_path / "spool")


def test_resume_on_a_remote_store_is_not_undone_by_a_later_sync(pg_url, tmp_path):
    import shutil

    from tests.conftest import train_killed_after_epoch_1, write_dataset

    data = write_dataset(tmp_path / "data", n_train=1200, n_test=80)
    # killed in epoch 2: the spool holds points the server may not have yet
    train_killed_after_epoch_1("--data", str(data), "--store", pg_url, "--epochs", "3", "--batch-size", "16",
                               "--no-progress")
    other_machine = tmp_path / "spool-elsewhere"
    shutil.copytree(tmp_path / "spool", other_machine)  # a stale copy of the same spool
    (run_id,) = [r.id for r in open_store(pg_url).list_runs()]

    done = run_cli("resume", run_id[:8], "--store", pg_url, "--no-progress", "--json")
    assert done.returncode == 0, done.stderr
    resumed = open_store(pg_url).get_run(run_id)
    assert resumed.status == "finished" and resumed.metrics["train/loss"]["last_step"] == 3 * 75

    for spool in (tmp_path / "spool", other_machine):
        out = run_cli("sync", "--to", pg_url, "--spool", str(spool), "--json")
        assert out.returncode == 0, out.stderr
        assert all(row["chunks_sent"] == 0 for row in json.loads(out.stdout))
    after = open_store(pg_url).get_run(run_id)
    assert after.status == "finished" and after.summary == resumed.summary
    steps = open_store(pg_url).history(run_id, "train/loss").steps
    assert (np.diff(steps) > 0).all(), "no duplicated or reordered points"
    assert json.loads(run_cli("sync", "--to", pg_url, "--spool", str(other_machine), "--json").stdout)[0][
        "superseded"] == 1


def test_train_while_the_server_is_away_spools_and_syncs_later(pg_url, unreachable, synthetic_data, tmp_path):
    away = unreachable
    done = run_cli("train", "--data", str(synthetic_data), "--epochs", "1", "--store", away, "--no-progress",
                   "--json")
    assert done.returncode == 0, done.stderr
    assert "warning:" in done.stderr and "striate sync --to" in done.stderr
    run_id = json.loads(done.stdout)["id"]
    assert open_store(tmp_path / "spool").get_run(run_id).status == "finished"
    out = run_cli("sync", "--to", pg_url, "--spool", str(tmp_path / "spool"), "--json")
    assert out.returncode == 0, out.stderr
    record = open_store(pg_url).get_run(run_id)
    assert record.status == "finished" and "test/acc1" in record.metrics
    (weights,) = [a for a in record.artifacts if a["path"] == "model.safetensors"]
    stored = open_store(pg_url).artifact_file(record.id, "model.safetensors")  # the remote's file, not the spool's
    assert file_sha256(stored) == weights["sha256"] and stored.stat().st_size == weights["size"]
    assert not stored.is_relative_to(tmp_path / "spool")
