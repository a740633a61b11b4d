"""`striate store upgrade`: a schema-2 store (what striate wrote before frames) upgraded in place.

The schema-2 store is built with a frozen copy of that schema's tables (as striate 2's schema.py
declared them) and rows written the way its store wrote them: every chunk with its own steps and
times. The same runs written through today's store into a fresh store are the reference: every
read path of the upgraded store must answer exactly as the fresh one does.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

import striate.tracking.store.upgrade as upgrade
from striate.errors import StoreError
from striate.tracking.spool import Syncer
from striate.tracking.store import MetricSeries, RunRecord, Store, open_store
from striate.tracking.store.base import chunk_sink, chunk_source, downsample_m4, file_sha256
from striate.tracking.store.codec import PackedChunk, merge, pack, summarize
from striate.tracking.store.liveness import process_start_time
from striate.tracking.store.sql import flatten_params
from striate.tracking.transfer import export_run, import_run_details
from tests.conftest import run_cli

# -- schema 2, frozen (striate's schema.py before metric_frames) ----------------------------------
V2 = sa.MetaData()
sa.Table(
    "runs", V2,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("project", sa.String(200), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("ended_at", sa.Float),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
    sa.Column("model", sa.String(200)),
    sa.Column("config", sa.Text, nullable=False, default="{}"),
    sa.Column("summary", sa.Text, nullable=False, default="{}"),
    sa.Column("tags", sa.Text, nullable=False, default="[]"),
    sa.Column("notes", sa.Text, nullable=False, default=""),
    sa.Column("environment", sa.Text, nullable=False, default="{}"),
    sa.Column("dataset", sa.Text, nullable=False, default="{}"),
    sa.Column("error", sa.Text),
    sa.Column("reproduction_of", sa.String(32)),
    sa.Column("host", sa.String(255)),
    sa.Column("pid", sa.Integer),
    sa.Column("pid_started_at", sa.Float),
    sa.Column("archived", sa.Boolean, nullable=False, default=False),
)
sa.Table(
    "params", V2,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("key", sa.String(300), primary_key=True),
    sa.Column("value", sa.Text),
    sa.Column("num", sa.Float),
    sa.Index("ix_params_key_num", "key", "num"),
)
sa.Table(
    "metric_chunks", V2,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("key", sa.String(300), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("steps", sa.LargeBinary, nullable=False),
    sa.Column("times", sa.LargeBinary, nullable=False),
    sa.Column("values", sa.LargeBinary, nullable=False),
    sa.Column("uid", sa.String(100)),
    sa.Index("ix_metric_chunks_run_key", "run_id", "key", "id"),
    sa.Index("ix_metric_chunks_run_uid", "run_id", "uid", unique=True),
)
sa.Table(
    "metric_summary", V2,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("key", sa.String(300), primary_key=True),
    sa.Column("last", sa.Float),
    sa.Column("min", sa.Float),
    sa.Column("max", sa.Float),
    sa.Column("last_step", sa.Integer),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Index("ix_metric_summary_key_last", "key", "last"),
)
sa.Table(
    "artifacts", V2,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("path", sa.String(1000), primary_key=True),
    sa.Column("kind", sa.String(50), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_artifacts_sha256", "sha256"),
)
sa.Table(
    "store_meta", V2,
    sa.Column("key", sa.String(50), primary_key=True),
    sa.Column("value", sa.String(200), nullable=False),
)
T = V2.tables


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "store")
    return str(request.getfixturevalue("postgres_url"))


def raw_engine(location: str) -> sa.Engine:
    if location.startswith("postgresql://"):
        return sa.create_engine("postgresql+psycopg://" + location.removeprefix("postgresql://"))
    Path(location, "artifacts").mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(f"sqlite:///{Path(location) / 'striate.db'}")
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")  # as striate 2 left its stores
    return engine


def artifact_root(location: str) -> Path:
    return Path(os.environ["STRIATE_ARTIFACTS"]) if location.startswith("postgresql") else Path(location, "artifacts")


# -- the runs both stores get ---------------------------------------------------------------------
def make_runs() -> list[dict[str, Any]]:
    """Two runs: several keys over several flushes (the keys of a flush share their points), one key
    logged alone at other steps, NaN and infinities, params, summaries, an artifact."""
    base = 1.7e9
    runs = []
    for r, (lr, opt) in enumerate([(0.1, "sgd"), (0.01, "adam")]):
        flushes = []
        for f in range(4):
            steps = np.arange(f * 50, (f + 1) * 50, dtype=np.int64)
            times = base + r * 1000 + steps * 0.25
            loss = 1 / (steps + 1.0) + r
            if f == 1:
                loss[[3, 7]] = np.nan
                loss[10] = np.inf
            acc = np.tanh(steps / 100) - r / 10
            if f == 2:
                acc[5] = -np.inf
            batch = [MetricSeries("loss", steps, times, loss), MetricSeries("acc", steps, times, acc)]
            if f % 2:
                lone = np.arange(f, f + 3, dtype=np.int64)
                batch.append(MetricSeries("val/loss", lone, base + r + lone * 9.5, np.array([0.5, np.nan, 0.25])))
            flushes.append(batch)
        record = RunRecord(id=uuid.uuid4().hex, name=f"run-{r}", project="up", status="finished",
                           created_at=base + r, ended_at=base + r + 500, heartbeat_at=base + r + 500,
                           model="lenet5", config={"lr": lr, "optimizer": {"name": opt}, "epochs": 3 + r},
                           summary={"best": 0.9 - r / 10}, tags=["a", f"t{r}"], notes=f"note {r}",
                           environment={"python": "3.11"}, dataset={"name": "mnist"}, host="elsewhere", pid=4242,
                           pid_started_at=12.5, archived=bool(r))
        runs.append({"record": record, "flushes": flushes})
    return runs


def write_schema2(location: str, runs: list[dict[str, Any]], tmp_path: Path) -> None:
    """The runs as striate 2's store wrote them: one chunk per (key, flush), steps and times in each."""
    engine = raw_engine(location)
    with engine.begin() as conn:
        V2.create_all(conn)
        conn.execute(T["store_meta"].insert().values(key="schema_version", value="2"))
        for run in runs:
            record: RunRecord = run["record"]
            row = {k: getattr(record, k) for k in ("id", "name", "project", "status", "created_at", "ended_at",
                                                   "heartbeat_at", "model", "notes", "error", "reproduction_of",
                                                   "host", "pid", "pid_started_at", "archived")}
            row.update({k: json.dumps(getattr(record, k)) for k in ("config", "summary", "tags", "environment",
                                                                    "dataset")})
            conn.execute(T["runs"].insert().values(**row))
            conn.execute(T["params"].insert(), [
                {"run_id": record.id, "key": k, "value": json.dumps(v),
                 "num": float(v) if isinstance(v, (int, float)) else None}
                for k, v in flatten_params(record.config).items()])
        # flushes of the two runs interleaved, as two processes writing one store would leave them
        summaries: dict[tuple[str, str], Any] = {}
        for f in range(max((len(run["flushes"]) for run in runs), default=0)):
            for run in runs:
                run_id = run["record"].id
                rows = []
                for s in run["flushes"][f]:
                    c = pack(s)
                    uid = f"origin:{f}:{s.key}" if run_id == runs[1]["record"].id else None  # arrived by sync
                    rows.append({"run_id": run_id, "key": s.key, "count": c.count, "steps": c.steps,
                                 "times": c.times, "values": c.values, "uid": uid})
                    summaries[run_id, s.key] = merge(summaries.get((run_id, s.key)), summarize(s))
                conn.execute(T["metric_chunks"].insert(), rows)
        if summaries:
            conn.execute(T["metric_summary"].insert(), [
                {"run_id": run_id, "key": key, **summary.as_dict()} for (run_id, key), summary in summaries.items()])
        for run in runs:
            run_id = run["record"].id
            folder = artifact_root(location) / run_id
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "model.pt").write_bytes(b"weights" * 100)
            conn.execute(T["artifacts"].insert().values(run_id=run_id, path="model.pt", kind="model", size=700,
                                                        sha256=file_sha256(folder / "model.pt"),
                                                        created_at=run["record"].created_at))
    engine.dispose()


def write_reference(store: Store, runs: list[dict[str, Any]]) -> None:
    """The same runs through today's store."""
    for run in runs:
        store.create_run(run["record"])
        for batch in run["flushes"]:
            store.log_batch(run["record"].id, batch)
        folder = Path(store.artifact_root) / run["record"].id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.pt").write_bytes(b"weights" * 100)
        store.add_artifact(run["record"].id, "model.pt", "model", 700, file_sha256(folder / "model.pt"))


def answers(store: Store, ids: list[str]) -> dict[str, Any]:
    """What every read path answers about these runs."""
    out: dict[str, Any] = {"records": [], "history": {}, "m4": {}}
    for record in store.get_runs(ids):
        out["records"].append({k: v for k, v in record.__dict__.items()})
        for key in sorted(record.metrics):
            full = store.history(record.id, key)
            out["history"][f"{record.id} {key}"] = [a.tolist() for a in (full.steps, full.times, full.values)]
            small = store.history(record.id, key, max_points=20)
            out["m4"][f"{record.id} {key}"] = [a.tolist() for a in (small.steps, small.times, small.values)]
    for where, sort in [("params.lr = 0.1", None), ("params.optimizer.name = adam", None),
                        ("metrics.loss < 1.5", "metrics.loss"), ("metrics.acc > 0", "-metrics.acc"),
                        ("tags = t1", None), (None, "params.epochs")]:
        out[f"search {where} {sort}"] = store.search_runs(where=where, sort=sort, include_archived=True)
    out["archived hidden"] = store.search_runs()
    return out


def same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN (json keeps NaN as NaN on both sides)."""
    return json.dumps(a, default=str, sort_keys=True) == json.dumps(b, default=str, sort_keys=True)


def schema_of(location: str) -> tuple[str, set[str], set[str]]:
    engine = raw_engine(location)
    with engine.connect() as conn:
        version = conn.execute(sa.text("SELECT value FROM store_meta WHERE key = 'schema_version'")).scalar()
        inspector = sa.inspect(conn)
        tables = set(inspector.get_table_names())
        columns = {c["name"] for c in inspector.get_columns("metric_chunks")}
    engine.dispose()
    return version, tables, columns


def sqlite_dump(path: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


# -- the upgrade ----------------------------------------------------------------------------------
def test_an_upgraded_store_answers_as_before_and_takes_new_points(location: str, tmp_path: Path) -> None:
    runs = make_runs()
    ids = [r["record"].id for r in runs]
    write_schema2(location, runs, tmp_path)
    sqlite = not location.startswith("postgresql")
    before = sqlite_dump(Path(location, "striate.db")) if sqlite else None

    with pytest.raises(StoreError, match="older striate") as refused:  # what a user upgrading sees first
        open_store(location)
    assert f"striate store upgrade --store {location}" in str(refused.value.fix)

    out = run_cli("store", "upgrade", "--store", location)
    assert out.returncode == 0, out.stderr
    assert "from schema 2 to 3: 2 run(s), 20 metric chunk(s) now sharing 12 frame(s)" in out.stdout
    assert schema_of(location)[0] == "3"
    assert {"steps", "times"}.isdisjoint(schema_of(location)[2])
    if sqlite:
        backup = Path(location, "striate.db.schema2-backup")
        assert str(backup) in out.stdout.replace("\n", "")
        assert sqlite_dump(backup) == before  # every row and table of the schema-2 store, untouched
        assert not Path(str(backup) + "-wal").exists()
        with sqlite3.connect(Path(location, "striate.db")) as db:  # the old chunk table's pages given back
            assert db.execute("PRAGMA freelist_count").fetchone()[0] == 0

    upgraded = open_store(location)
    reference = open_store(tmp_path / "reference")
    write_reference(reference, runs)
    got, expected = answers(upgraded, ids), answers(reference, ids)
    assert same(got, expected)
    # and exactly what was logged, NaN and infinities included
    for run in runs:
        for key in ("loss", "acc", "val/loss"):
            logged = [s for batch in run["flushes"] for s in batch if s.key == key]
            history = upgraded.history(run["record"].id, key)
            np.testing.assert_array_equal(history.steps, np.concatenate([s.steps for s in logged]))
            np.testing.assert_array_equal(history.times, np.concatenate([s.times for s in logged]))
            np.testing.assert_array_equal(history.values, np.concatenate([s.values for s in logged]))
            small = upgraded.history(run["record"].id, key, max_points=20)
            m4 = downsample_m4(MetricSeries(key, history.steps, history.times, history.values), 20)
            np.testing.assert_array_equal(small.values, m4.values)
    assert upgraded.get_run(ids[0]).metrics["loss"]["count"] == 200
    assert upgraded.get_run(ids[0]).stop_requested_at is None

    # chunk ids (sync positions) and uids of chunks that arrived by sync are kept
    chunks = chunk_source(upgraded).chunks_since(ids[1], 0)
    assert [c.uid for c in chunks][:2] == ["origin:0:loss", "origin:0:acc"]
    assert chunk_sink(upgraded).put_chunks(ids[1], chunks) == 0, "re-syncing what is there adds nothing"

    # new points into an upgraded run, and a new run
    steps = np.arange(200, 210, dtype=np.int64)
    upgraded.log_batch(ids[0], [MetricSeries("loss", steps, steps + 2e9, steps * 0.0),
                                MetricSeries("acc", steps, steps + 2e9, steps * 1.0)])
    assert len(upgraded.history(ids[0], "loss")) == 210
    assert upgraded.get_run(ids[0]).metrics["loss"]["last_step"] == 209
    assert upgraded.truncate_metrics(ids[0], 100) == 218
    assert upgraded.history(ids[0], "acc").steps.tolist() == list(range(101))
    fresh = RunRecord(id=uuid.uuid4().hex, name="after", project="up", status="finished", created_at=time.time(),
                      ended_at=None, heartbeat_at=time.time())
    upgraded.create_run(fresh)
    upgraded.log_batch(fresh.id, [MetricSeries("loss", steps, steps + 2e9, steps * 2.0)])
    assert upgraded.history(fresh.id, "loss").values.tolist() == (steps * 2.0).tolist()
    upgraded.delete_run(ids[1])
    assert upgraded.get_runs(ids) == upgraded.get_runs([ids[0]])

    again = run_cli("store", "upgrade", "--store", location, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["upgraded"] is False
    assert "up to date (schema 3)" in run_cli("store", "upgrade", "--store", location).stdout


def test_an_interrupted_upgrade_leaves_the_store_at_schema_2(location: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    runs = make_runs()
    write_schema2(location, runs, tmp_path)
    monkeypatch.setattr(upgrade, "_PAGE", 3)

    def crash(done: int) -> None:
        if done >= 9:
            raise KeyboardInterrupt  # Ctrl-C, mid-way through moving the chunks

    monkeypatch.setattr(upgrade, "_after_page", crash)
    with pytest.raises(KeyboardInterrupt):
        upgrade.upgrade_store(location)
    version, tables, columns = schema_of(location)
    assert version == "2" and "metric_frames" not in tables and "metric_chunks_schema2" not in tables
    assert {"steps", "times"} <= columns and "frame_id" not in columns
    with pytest.raises(StoreError, match="striate store upgrade"):
        open_store(location)

    monkeypatch.setattr(upgrade, "_after_page", lambda done: None)
    result = upgrade.upgrade_store(location)  # the interrupted upgrade, run again
    assert result.upgraded and result.chunks == 20 and result.frames == 12
    reference = open_store(tmp_path / "reference")
    write_reference(reference, runs)
    ids = [r["record"].id for r in runs]
    assert same(answers(open_store(location), ids), answers(reference, ids))


def test_an_empty_schema_2_store_upgrades(location: str, tmp_path: Path) -> None:
    write_schema2(location, [], tmp_path)
    result = upgrade.upgrade_store(location)
    assert (result.from_version, result.to_version, result.chunks, result.frames) == (2, 3, 0, 0)
    store = open_store(location)
    record = RunRecord(id=uuid.uuid4().hex, name="n", project="p", status="finished", created_at=1.0, ended_at=2.0,
                       heartbeat_at=2.0)
    store.create_run(record)
    store.log_batch(record.id, [MetricSeries("x", np.arange(3), np.arange(3) + 1e9, np.ones(3))])
    assert store.history(record.id, "x").values.tolist() == [1.0, 1.0, 1.0]


# -- refusals -------------------------------------------------------------------------------------
def test_a_run_still_recorded_by_a_live_process_is_not_upgraded_under(location: str, tmp_path: Path) -> None:
    runs = make_runs()
    record = runs[0]["record"]
    record.status, record.ended_at = "running", None
    record.host, record.pid, record.pid_started_at = socket.gethostname(), os.getpid(), process_start_time()
    write_schema2(location, runs, tmp_path)
    out = run_cli("store", "upgrade", "--store", location)
    assert out.returncode != 0
    assert "still being written" in out.stderr and record.id[:8] in out.stderr and "nothing was changed" in out.stderr
    assert schema_of(location)[0] == "2"


def test_a_store_newer_than_this_striate_or_without_a_version_is_refused(location: str, tmp_path: Path) -> None:
    write_schema2(location, make_runs(), tmp_path)
    engine = raw_engine(location)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE store_meta SET value = '4' WHERE key = 'schema_version'"))
    out = run_cli("store", "upgrade", "--store", location)
    assert out.returncode != 0 and "newer than this striate" in out.stderr
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE store_meta SET value = '1' WHERE key = 'schema_version'"))
    out = run_cli("store", "upgrade", "--store", location)
    assert out.returncode != 0 and "much older" in out.stderr and "export-run" in out.stderr
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE store_meta"))
    out = run_cli("store", "upgrade", "--store", location)
    assert out.returncode != 0 and "records no schema version" in out.stderr
    engine.dispose()


def test_no_store_there_is_an_error_and_nothing_is_created(tmp_path: Path) -> None:
    out = run_cli("store", "upgrade", "--store", str(tmp_path / "nowhere"))
    assert out.returncode != 0 and "there is no store in" in out.stderr and "--store" in out.stderr
    assert not (tmp_path / "nowhere").exists()


def test_a_fresh_store_is_up_to_date(location: str) -> None:
    open_store(location)
    result = upgrade.upgrade_store(location)
    assert not result.upgraded and result.to_version == 3 and result.backup is None


def test_an_upgrade_waits_for_another_writer_then_refuses(location: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    write_schema2(location, make_runs(), tmp_path)
    monkeypatch.setattr(upgrade, "LOCK_WAIT_S", 0.5)
    engine = raw_engine(location)
    with engine.connect() as conn:  # a writer mid-transaction
        if location.startswith("postgresql"):
            conn.execute(sa.text("UPDATE runs SET notes = 'busy'"))
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            conn.exec_driver_sql("UPDATE runs SET notes = 'busy'")
        started = time.monotonic()
        out = run_cli("store", "upgrade", "--store", location)
        assert time.monotonic() - started >= 0.4, "it waited for the writer first"
        conn.rollback()
    engine.dispose()
    assert out.returncode != 0 and "being written by another process" in out.stderr
    assert "nothing was changed" in out.stderr and schema_of(location)[0] == "2"
    assert upgrade.upgrade_store(location).upgraded  # once the writer is done


def test_two_upgrades_at_once_migrate_once(location: str, tmp_path: Path) -> None:
    write_schema2(location, make_runs(), tmp_path)
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(upgrade.upgrade_store(location))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.upgraded for r in results) == [False, True]
    assert schema_of(location)[0] == "3"


# -- stop_requested_at ----------------------------------------------------------------------------
def test_a_stop_request_is_stored_kept_by_sync_and_not_imported(tmp_path: Path, postgres_url: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(tmp_path / "a")
    record = RunRecord(id=uuid.uuid4().hex, name="s", project="p", status="finished", created_at=1.0, ended_at=2.0,
                       heartbeat_at=2.0, stop_requested_at=1.5)
    store.create_run(record)
    assert store.get_run(record.id).stop_requested_at == 1.5
    store.update_run(record.id, stop_requested_at=1.75)
    assert store.get_run(record.id).stop_requested_at == 1.75

    # sync carries it to the server, and a spool that has none never clears the server's
    assert Syncer(store, postgres_url, record.id).sync()["superseded"] == 0
    remote = open_store(postgres_url)
    assert remote.get_run(record.id).stop_requested_at == 1.75
    remote.update_run(record.id, stop_requested_at=9.0)
    store.update_run(record.id, stop_requested_at=None)
    Syncer(store, remote, record.id).sync()
    assert remote.get_run(record.id).stop_requested_at == 9.0
    store.update_run(record.id, stop_requested_at=1.75)
    Syncer(store, remote, record.id).sync()
    assert remote.get_run(record.id).stop_requested_at == 1.75

    # an archive's stop request stays where it was asked: the import has none, and importing it again is a no-op
    archive = tmp_path / "run.tar.gz"
    export_run(store, record.id, archive)
    other = open_store(tmp_path / "b")
    assert import_run_details(other, archive)["imported"]
    assert other.get_run(record.id).stop_requested_at is None
    assert import_run_details(other, archive)["imported"] is False


def test_the_frozen_store_is_packed_as_schema_2_packed_chunks() -> None:
    # the schema-2 rows above are packed by today's pack(): schema 2's byte layout, which never changed
    s = MetricSeries("k", np.array([1, 2], np.int64), np.array([3.0, 4.0]), np.array([np.nan, np.inf]))
    assert pack(s) == PackedChunk("k", np.array([1, 2], "<i8").tobytes(), np.array([3.0, 4.0], "<f8").tobytes(),
                                  np.array([np.nan, np.inf], "<f8").tobytes())


def layout(location: str) -> dict[str, Any]:
    """Tables, columns (type, nullability), indexes and foreign keys, as the database reports them."""
    engine = raw_engine(location)
    found: dict[str, Any] = {}
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        for table in sorted(inspector.get_table_names()):
            found[table] = {
                # PostgreSQL adds a column last (ALTER TABLE), which no query here depends on
                "columns": (sorted if conn.dialect.name == "postgresql" else list)(
                    (c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)),
                "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                                  for i in inspector.get_indexes(table)),
                "foreign keys": sorted((tuple(f["constrained_columns"]), f["referred_table"],
                                        tuple(f["referred_columns"])) for f in inspector.get_foreign_keys(table)),
                "primary key": inspector.get_pk_constraint(table)["constrained_columns"],
            }
    engine.dispose()
    return found


def test_an_upgraded_store_has_the_layout_of_a_new_one(location: str, tmp_path: Path) -> None:
    write_schema2(location, make_runs(), tmp_path)
    upgrade.upgrade_store(location)
    fresh = location + "_fresh" if location.startswith("postgresql") else str(tmp_path / "fresh")
    if location.startswith("postgresql"):  # a second database on the same server
        admin = sa.create_engine(raw_engine(location).url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{fresh.rsplit("/", 1)[1]}"'))
        admin.dispose()
    try:
        open_store(fresh)
        assert layout(location) == layout(fresh)
    finally:
        if location.startswith("postgresql"):
            admin = sa.create_engine(raw_engine(location).url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE "{fresh.rsplit("/", 1)[1]}" WITH (FORCE)'))
            admin.dispose()


def test_a_server_password_is_never_shown(postgres_url: str) -> None:
    open_store(postgres_url)
    with_password = postgres_url.replace("postgres@", "postgres:s3cret@")
    out = run_cli("store", "upgrade", "--store", with_password)
    assert out.returncode == 0, out.stderr
    assert "up to date" in out.stdout and "s3cret" not in out.stdout + out.stderr
