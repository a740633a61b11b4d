"""A remote (PostgreSQL) store through the local spool: the real server on 127.0.0.1:5432."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
import sqlalchemy as sa

import striate
from striate.tracking.spool import Syncer
from striate.tracking.store import open_store
from tests.conftest import run_cli

ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def pg_url(tmp_path, monkeypatch):
    """A fresh database per test; the spool and the remote artifact folder in tmp_path."""
    try:
        admin = sa.create_engine(ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            name = f"striate_test_{uuid.uuid4().hex[:10]}"
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not running on 127.0.0.1:5432 ({exc.orig})")
    monkeypatch.setenv("STRIATE_SPOOL", str(tmp_path / "spool"))
    monkeypatch.setenv("STRIATE_ARTIFACTS", str(tmp_path / "remote-artifacts"))
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


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
    assert (tmp_path / "remote-artifacts" / run.id / artifact["path"]).read_bytes() == weights.read_bytes()
    assert remote.search_runs(where="params.lr = 0.1") == [run.id]

    # Syncing again, in-process or through the CLI, sends nothing twice.
    spool = open_store(tmp_path / "spool")
    assert Syncer(spool, remote, run.id).sync() == {"chunks_sent": 0, "artifacts_copied": 0}
    out = run_cli("sync", "--to", pg_url, "--spool", str(tmp_path / "spool"), "--json",
                  env={"STRIATE_ARTIFACTS": str(tmp_path / "remote-artifacts")})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["chunks_sent"] == 0
    assert len(open_store(pg_url).history(run.id, "loss")) == 3000


def test_an_unreachable_server_loses_nothing(pg_url, tmp_path, capsys):
    unreachable = "postgresql://postgres@127.0.0.1:9/nowhere"
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
    assert any(a["path"] == "model.safetensors" for a in record.artifacts)
