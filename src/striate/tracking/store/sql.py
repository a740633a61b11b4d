"""The embedded default store: SQLite (WAL) through SQLAlchemy Core, artifacts in a folder beside it.

Metric points are stored in chunks — one row per (run, key, flush) holding packed
step/time/value arrays — so ingestion and read-back cost one row per batch, not per
point. A per-(run, key) summary row keeps last/min/max for listing and filtering.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import sqlalchemy as sa
from sqlalchemy import event

from striate.errors import RunNotFoundError, StoreError
from striate.tracking.store.base import STALE_AFTER_S, MetricSeries, RunRecord, Store, downsample_m4

metadata = sa.MetaData()

runs = sa.Table(
    "runs", metadata,
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

params = sa.Table(
    "params", metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("key", sa.String(300), primary_key=True),
    sa.Column("value", sa.Text),
    sa.Column("num", sa.Float),  # numeric value, when the param is a number, for filtering
    sa.Index("ix_params_key_num", "key", "num"),
)

metric_chunks = sa.Table(
    "metric_chunks", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("key", sa.String(300), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("steps", sa.LargeBinary, nullable=False),  # int64 little-endian
    sa.Column("times", sa.LargeBinary, nullable=False),  # float64 Unix seconds
    sa.Column("values", sa.LargeBinary, nullable=False),  # float64
    sa.Column("uid", sa.String(100)),  # set when a chunk arrives by sync: makes re-syncing a no-op
    sa.Index("ix_metric_chunks_run_key", "run_id", "key", "id"),
    sa.Index("ix_metric_chunks_run_uid", "run_id", "uid", unique=True),
)

metric_summary = sa.Table(
    "metric_summary", metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("key", sa.String(300), primary_key=True),
    sa.Column("last", sa.Float),
    sa.Column("min", sa.Float),
    sa.Column("max", sa.Float),
    sa.Column("last_step", sa.Integer),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Index("ix_metric_summary_key_last", "key", "last"),
)

artifacts = sa.Table(
    "artifacts", metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("path", sa.String(1000), primary_key=True),
    sa.Column("kind", sa.String(50), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_artifacts_sha256", "sha256"),
)

SCHEMA_VERSION = 2
store_meta = sa.Table(
    "store_meta", metadata,
    sa.Column("key", sa.String(50), primary_key=True),
    sa.Column("value", sa.String(200), nullable=False),
)

_JSON_FIELDS = ("config", "summary", "tags", "environment", "dataset")


def _set_sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself, so writers can take the lock up front.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; a crash never corrupts
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def flatten_params(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> {"optimizer.lr": 0.1, ...}."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_params(value, name + "."))
        else:
            flat[name] = value
    return flat


class SqlStore(Store):
    """A store in a SQL database (SQLite by default) with artifacts in a local folder."""

    def __init__(self, url: str, artifact_root: Path) -> None:
        self.url = url
        self.artifact_root = str(artifact_root)
        self.engine = sa.create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _set_sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        try:
            self._check_schema()
        except sa.exc.OperationalError as exc:
            reason = " ".join(str(exc.orig).split())  # one line: drivers add hints on lines of their own
            if self.engine.dialect.name == "sqlite":
                fix = "check that the folder is writable, or choose another with --store"
            else:
                fix = "check that the database server is running and the URL (host, port, user, database) is right"
            shown = self.engine.url.render_as_string(hide_password=True)
            raise StoreError(f"cannot open the store database {shown}: {reason}", fix) from None
        self.mark_stale_runs_crashed(time.time())

    def _check_schema(self) -> None:
        inspector = sa.inspect(self.engine)
        existing = set(inspector.get_table_names())
        if "runs" in existing and "store_meta" not in existing:
            raise StoreError(f"the store {self.url} was written by an older, incompatible striate",
                             "move it aside and start a new store (or use --store with another folder)")
        metadata.create_all(self.engine)
        with self._begin() as conn:
            found = conn.execute(sa.select(store_meta.c.value).where(store_meta.c.key == "schema_version")).scalar()
            if found is None:
                conn.execute(store_meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
            elif int(found) < SCHEMA_VERSION:
                raise StoreError(f"the store {self.url} was written by an older striate (schema {found})",
                                 "move it aside and start a new store (or use --store with another folder)")
            elif int(found) > SCHEMA_VERSION:
                raise StoreError(f"the store {self.url} has schema version {found}, newer than this striate "
                                 f"understands ({SCHEMA_VERSION})", "upgrade striate: pip install -U striate")

    @classmethod
    def open_folder(cls, folder: Path) -> SqlStore:
        """Open (creating if needed) the embedded store in ``folder``: striate.db plus artifacts/."""
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "artifacts").mkdir(exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store folder {folder}: {exc.strerror}",
                             "choose a writable folder with --store or STRIATE_STORE") from None
        if not os.access(folder, os.W_OK) or not os.access(folder / "artifacts", os.W_OK):
            raise StoreError(f"the store folder {folder} is not writable",
                             "choose a writable folder with --store or STRIATE_STORE")
        from striate.tracking.store import DATABASE_FILE

        return cls(f"sqlite:///{folder.resolve() / DATABASE_FILE}", folder / "artifacts")

    # -- writes -----------------------------------------------------------------------------------
    def create_run(self, record: RunRecord) -> None:
        """Insert a new run and its flattened params."""
        row = {
            "id": record.id, "name": record.name, "project": record.project, "status": record.status,
            "created_at": record.created_at, "ended_at": record.ended_at, "heartbeat_at": record.heartbeat_at,
            "model": record.model, "notes": record.notes, "error": record.error,
            "reproduction_of": record.reproduction_of, "host": record.host, "pid": record.pid,
            "pid_started_at": record.pid_started_at, "archived": record.archived,
        }
        for name in _JSON_FIELDS:
            row[name] = json.dumps(getattr(record, name), default=str)
        param_rows = _param_rows(record.id, flatten_params(record.config))
        with self._begin() as conn:
            conn.execute(runs.insert().values(**row))
            if param_rows:
                conn.execute(params.insert(), param_rows)

    def set_params(self, run_id: str, flat: dict[str, Any]) -> None:
        """Replace a run's flattened params."""
        rows = _param_rows(run_id, flat)
        with self._begin() as conn:
            conn.execute(params.delete().where(params.c.run_id == run_id))
            if rows:
                conn.execute(params.insert(), rows)

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Change top-level fields of a run."""
        values = {k: (json.dumps(v, default=str) if k in _JSON_FIELDS else v) for k, v in fields.items()}
        with self._begin() as conn:
            conn.execute(runs.update().where(runs.c.id == run_id).values(**values))

    def log_batch(self, run_id: str, series: list[MetricSeries], heartbeat_at: float | None = None) -> None:
        """Append metric points and refresh the per-key summaries in one transaction."""
        with self._begin() as conn:
            if series:
                conn.execute(metric_chunks.insert(), [
                    {"run_id": run_id, "key": s.key, "count": len(s),
                     "steps": np.ascontiguousarray(s.steps, dtype="<i8").tobytes(),
                     "times": np.ascontiguousarray(s.times, dtype="<f8").tobytes(),
                     "values": np.ascontiguousarray(s.values, dtype="<f8").tobytes()}
                    for s in series])
                keys = [s.key for s in series]
                existing = {r.key: r for r in conn.execute(
                    sa.select(metric_summary).where(metric_summary.c.run_id == run_id,
                                                    metric_summary.c.key.in_(keys)))}
                for s in series:
                    finite = s.values[np.isfinite(s.values)]
                    lo = float(finite.min()) if finite.size else None
                    hi = float(finite.max()) if finite.size else None
                    old = existing.get(s.key)
                    row = {"last": _finite_or_none(s.values[-1]), "last_step": int(s.steps[-1])}
                    if old is None:
                        conn.execute(metric_summary.insert().values(run_id=run_id, key=s.key, min=lo, max=hi,
                                                                    count=len(s), **row))
                    else:
                        conn.execute(metric_summary.update().where(
                            metric_summary.c.run_id == run_id, metric_summary.c.key == s.key).values(
                            min=_combine(min, old.min, lo), max=_combine(max, old.max, hi),
                            count=old._mapping["count"] + len(s), **row))
            if heartbeat_at is not None:
                conn.execute(runs.update().where(runs.c.id == run_id).values(heartbeat_at=heartbeat_at))

    def chunks_since(self, run_id: str, after_id: int) -> list[tuple[int, str, bytes, bytes, bytes]]:
        """Raw metric chunks of a run with an id above ``after_id`` (what a sync has not sent yet)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(metric_chunks.c.id, metric_chunks.c.key, metric_chunks.c.steps,
                                          metric_chunks.c.times, metric_chunks.c["values"])
                                .where(metric_chunks.c.run_id == run_id, metric_chunks.c.id > after_id)
                                .order_by(metric_chunks.c.id)).all()
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def put_chunks(self, run_id: str, chunks: list[tuple[str, str, bytes, bytes, bytes]]) -> int:
        """Insert (uid, key, steps, times, values) chunks whose uid is new; refresh summaries. Idempotent."""
        if not chunks:
            return 0
        with self._begin() as conn:
            uids = [c[0] for c in chunks]
            seen: set[str] = set()
            for start in range(0, len(uids), 500):
                seen.update(r[0] for r in conn.execute(sa.select(metric_chunks.c.uid).where(
                    metric_chunks.c.run_id == run_id, metric_chunks.c.uid.in_(uids[start:start + 500]))))
            fresh = [c for c in chunks if c[0] not in seen]
            if fresh:
                conn.execute(metric_chunks.insert(), [
                    {"run_id": run_id, "uid": uid, "key": key, "count": len(steps) // 8, "steps": steps,
                     "times": times, "values": values} for uid, key, steps, times, values in fresh])
                for key in {c[1] for c in fresh}:
                    self._refresh_summary(conn, run_id, key)
        return len(fresh)

    def _refresh_summary(self, conn: sa.Connection, run_id: str, key: str) -> None:
        rows = conn.execute(sa.select(metric_chunks.c.steps, metric_chunks.c["values"]).where(
            metric_chunks.c.run_id == run_id, metric_chunks.c.key == key).order_by(metric_chunks.c.id)).all()
        steps = np.frombuffer(b"".join(r[0] for r in rows), dtype="<i8")
        values = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f8")
        conn.execute(metric_summary.delete().where(metric_summary.c.run_id == run_id, metric_summary.c.key == key))
        if steps.size:
            finite = values[np.isfinite(values)]
            conn.execute(metric_summary.insert().values(
                run_id=run_id, key=key, last=_finite_or_none(values[-1]), last_step=int(steps[-1]),
                count=int(steps.size),
                min=float(finite.min()) if finite.size else None, max=float(finite.max()) if finite.size else None))

    def claim_run(self, run_id: str, host: str, pid: int, pid_started_at: float | None) -> bool:
        """One UPDATE guarded by the status, so two resumes cannot both take the run."""
        with self._begin() as conn:
            result = conn.execute(runs.update().where(runs.c.id == run_id, runs.c.status != "running").values(
                status="running", ended_at=None, heartbeat_at=time.time(), error=None, host=host, pid=pid,
                pid_started_at=pid_started_at))
            return bool(result.rowcount)

    def truncate_metrics(self, run_id: str, after_step: int) -> int:
        """Drop points with step > after_step, rewriting the chunks that hold them and their summaries."""
        dropped = 0
        with self._begin() as conn:
            rows = conn.execute(sa.select(metric_chunks).where(metric_chunks.c.run_id == run_id)
                                .order_by(metric_chunks.c.id)).all()
            touched: set[str] = set()
            for row in rows:
                steps = np.frombuffer(row.steps, dtype="<i8")
                keep = steps <= after_step
                if keep.all():
                    continue
                touched.add(row.key)
                dropped += int((~keep).sum())
                conn.execute(metric_chunks.delete().where(metric_chunks.c.id == row.id))
                if keep.any():
                    conn.execute(metric_chunks.insert().values(
                        run_id=run_id, key=row.key, count=int(keep.sum()), steps=steps[keep].tobytes(),
                        times=np.frombuffer(row.times, dtype="<f8")[keep].tobytes(),
                        values=np.frombuffer(row._mapping["values"], dtype="<f8")[keep].tobytes()))
            for key in touched:
                self._refresh_summary(conn, run_id, key)
        return dropped

    def add_artifact(self, run_id: str, path: str, kind: str, size: int, sha256: str) -> None:
        """Record (or re-record) an artifact of a run."""
        with self._begin() as conn:
            conn.execute(artifacts.delete().where(artifacts.c.run_id == run_id, artifacts.c.path == path))
            conn.execute(artifacts.insert().values(run_id=run_id, path=path, kind=kind, size=size, sha256=sha256,
                                                   created_at=time.time()))

    def find_artifacts(self, sha256: str) -> list[tuple[str, str]]:
        """(run id, artifact path) of every artifact with this file hash."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(artifacts.c.run_id, artifacts.c.path).where(artifacts.c.sha256 == sha256))
            return [(r.run_id, r.path) for r in rows]

    def remove_artifact(self, run_id: str, path: str) -> None:
        """Forget an artifact record."""
        with self._begin() as conn:
            conn.execute(artifacts.delete().where(artifacts.c.run_id == run_id, artifacts.c.path == path))

    def mark_stale_runs_crashed(self, now: float) -> int:
        """Runs still `running` whose process is gone become `crashed`.

        A run on this host whose process no longer exists is crashed at once; any other
        run when its heartbeat is older than STALE_AFTER_S.
        """
        host = socket.gethostname()
        with self.engine.connect() as conn:
            running = conn.execute(sa.select(runs.c.id, runs.c.host, runs.c.pid, runs.c.pid_started_at,
                                             runs.c.heartbeat_at).where(runs.c.status == "running")).all()
        dead = [r.id for r in running
                if r.heartbeat_at < now - STALE_AFTER_S
                or (r.host == host and r.pid is not None and not _process_alive(r.pid, r.pid_started_at))]
        if not dead:
            return 0
        with self._begin() as conn:
            result = conn.execute(runs.update().where(runs.c.id.in_(dead), runs.c.status == "running").values(
                status="crashed", ended_at=runs.c.heartbeat_at))
            return int(result.rowcount or 0)

    def delete_run(self, run_id: str) -> None:
        """Remove a run's rows and its artifact folder."""
        with self._begin() as conn:
            for table in (metric_chunks, metric_summary, params, artifacts):
                conn.execute(table.delete().where(table.c.run_id == run_id))
            conn.execute(runs.delete().where(runs.c.id == run_id))
        folder = Path(self.artifact_root) / run_id
        if folder.is_dir():
            import shutil

            shutil.rmtree(folder)

    def search_runs(self, where: str | None = None, sort: str | None = None, project: str | None = None,
                    limit: int | None = None, include_archived: bool = False) -> list[str]:
        """Ids of the runs matching ``where``, ordered by ``sort`` (default newest first)."""
        from striate.tracking.store.sql_query import order_by_clause, where_clause

        query = sa.select(runs.c.id)
        if where:
            query = query.where(where_clause(where))
        if project:
            query = query.where(runs.c.project == project)
        if not include_archived:
            query = query.where(runs.c.archived.is_(False))
        if sort:
            query = query.order_by(*order_by_clause(sort))
        query = query.order_by(runs.c.created_at.desc())
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [row[0] for row in conn.execute(query)]

    def get_runs(self, run_ids: list[str]) -> list[RunRecord]:
        """Full records for ``run_ids``, in that order."""
        found: dict[str, RunRecord] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(run_ids), 500):
                chunk = run_ids[start:start + 500]
                rows = conn.execute(sa.select(runs).where(runs.c.id.in_(chunk))).all()
                found.update((r.id, r) for r in self._records(conn, rows))
        return [found[i] for i in run_ids if i in found]

    # -- reads ------------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> RunRecord:
        """One run by id or unique prefix."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(runs).where(runs.c.id.startswith(run_id, autoescape=True)).limit(2)).all()
            if not rows:
                rows = conn.execute(sa.select(runs).where(runs.c.name == run_id)
                                    .order_by(runs.c.created_at.desc()).limit(1)).all()
            if not rows:
                raise RunNotFoundError(f"no run {run_id!r} in this store", "`striate runs` lists the runs")
            if len(rows) > 1:
                raise RunNotFoundError(f"run id prefix {run_id!r} is ambiguous", "give more characters of the id")
            return self._records(conn, rows)[0]

    def list_runs(self, project: str | None = None, limit: int | None = None) -> list[RunRecord]:
        """Runs, newest first (archived ones included)."""
        query = sa.select(runs).order_by(runs.c.created_at.desc())
        if project:
            query = query.where(runs.c.project == project)
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return self._records(conn, conn.execute(query).all())

    def history(self, run_id: str, key: str, max_points: int | None = None) -> MetricSeries:
        """All points of one metric, concatenated from its chunks (M4-downsampled to ``max_points``)."""
        with self.engine.connect() as conn:
            chunks = conn.execute(sa.select(metric_chunks.c.steps, metric_chunks.c.times, metric_chunks.c["values"])
                                  .where(metric_chunks.c.run_id == run_id, metric_chunks.c.key == key)
                                  .order_by(metric_chunks.c.id)).all()
        if not chunks:
            return MetricSeries(key, np.empty(0, np.int64), np.empty(0), np.empty(0))
        series = MetricSeries(
            key,
            np.frombuffer(b"".join(c[0] for c in chunks), dtype="<i8"),
            np.frombuffer(b"".join(c[1] for c in chunks), dtype="<f8"),
            np.frombuffer(b"".join(c[2] for c in chunks), dtype="<f8"),
        )
        return downsample_m4(series, max_points) if max_points else series

    # -- helpers ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _begin(self) -> Iterator[sa.Connection]:
        """A write transaction. On SQLite it takes the write lock at BEGIN (IMMEDIATE): a reader
        upgrading to writer mid-transaction is what makes SQLite answer "database is locked"
        without waiting, so no transaction here ever upgrades."""
        with self.engine.connect() as conn:
            conn.info["begin_immediate"] = True
            with conn.begin():
                yield conn

    def _records(self, conn: sa.Connection, rows: Sequence[Any]) -> list[RunRecord]:
        if not rows:
            return []
        ids = [r.id for r in rows]
        metrics: dict[str, dict[str, dict[str, float]]] = {i: {} for i in ids}
        for m in conn.execute(sa.select(metric_summary).where(metric_summary.c.run_id.in_(ids))):
            metrics[m.run_id][m.key] = {"last": m.last, "min": m.min, "max": m.max,
                                        "count": m._mapping["count"], "last_step": m.last_step}
        arts: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        for a in conn.execute(sa.select(artifacts).where(artifacts.c.run_id.in_(ids)).order_by(artifacts.c.created_at)):
            arts[a.run_id].append({"path": a.path, "kind": a.kind, "size": a.size, "sha256": a.sha256})
        records = []
        for r in rows:
            data = {c: getattr(r, c) for c in ("id", "name", "project", "status", "created_at", "ended_at",
                                               "heartbeat_at", "model", "notes", "error", "reproduction_of",
                                               "host", "pid", "pid_started_at", "archived")}
            for name in _JSON_FIELDS:
                data[name] = json.loads(getattr(r, name) or ("[]" if name == "tags" else "{}"))
            records.append(RunRecord(**data, metrics=metrics[r.id], artifacts=arts[r.id]))
        return records


def _param_rows(run_id: str, flat: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key, value in flat.items():
        num = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        rows.append({"run_id": run_id, "key": key, "value": json.dumps(value, default=str), "num": num})
    return rows


def _sqlite_begin(conn: sa.Connection) -> None:
    mode = "IMMEDIATE" if conn.info.pop("begin_immediate", False) else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")


def _finite_or_none(value: Any) -> float | None:
    """A summary value: NaN and infinities are "no value" (NULL) on every backend. SQLite turns NaN into
    NULL by itself, PostgreSQL would keep it and sort it above every number."""
    number = float(value)
    return number if math.isfinite(number) else None


def _combine(pick: Any, old: float | None, new: float | None) -> float | None:
    values = [v for v in (old, new) if v is not None]
    return pick(values) if values else None


def _process_alive(pid: int, started_at: float | None) -> bool:
    try:
        import psutil
    except ImportError:  # without psutil only the heartbeat can tell
        return True
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started_at is None or abs(process.create_time() - started_at) < 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # it exists; we just may not look at it
        return True
