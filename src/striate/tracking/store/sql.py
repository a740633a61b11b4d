"""The SQL store: SQLite (the embedded default, WAL) and PostgreSQL through SQLAlchemy Core.

Metric points are stored in chunks — one row per (run, key, flush) holding the values packed by
the codec (codec.py), pointing at the frame row that holds the steps and times of that flush,
shared by every key logged at the same points — so ingestion and read-back cost one row per
batch, not per point, and a flush of 10 keys writes its steps and times once. A
per-(run, key) summary row keeps last/min/max/count for listing and filtering, always built by
the codec's summary merge. The tables and the version check live in schema.py, the crash policy
applied when a store is opened in liveness.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import time
import urllib.parse
from pathlib import Path
from typing import Any, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy import event

from striate.errors import RunNotFoundError, StoreError, StriateError
from striate.tracking.store import codec
from striate.tracking.store.base import (
    DATABASE_FILE,
    ArtifactMissingError,
    ClaimLostError,
    Owner,
    RunRecord,
    SyncableStore,
    confined_file,
    copy_hashing,
    downsample_m4,
    file_sha256,
)
from striate.tracking.store.codec import MetricChunk, MetricSeries, PackedChunk, Summary
from striate.tracking.store.liveness import RunningProcess, crashed_runs
from striate.tracking.store.schema import (
    artifacts,
    ensure_schema,
    flatten_params,
    metric_chunks,
    metric_frames,
    metric_summary,
    params,
    runs,
    store_argument,
)

_JSON_FIELDS = ("config", "summary", "tags", "environment", "dataset")
_AMBIGUOUS_SHOWN = 5  # candidates an ambiguous run reference lists
_IN_BATCH = 500  # ids per IN (...) list
SCHEMA_OPEN_RETRY_S = 60.0


def _set_sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself, so writers can take the lock up front.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    # First, so that switching a new database to WAL waits for a concurrent creator instead of failing.
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; a crash never corrupts
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _set_sqlite_reader_pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
    # A reader changes nothing: the store is already in WAL mode (it persists in the file), and a
    # read-only or immutable connection could not switch it anyway.
    dbapi_conn.isolation_level = None
    dbapi_conn.execute("PRAGMA busy_timeout=30000")


class SqlStore(SyncableStore):
    """A store in a SQL database (SQLite by default) with artifacts in a local folder."""

    def __init__(self, url: str, artifact_root: Path, read_only: bool = False, writable: bool = True) -> None:
        """``read_only``: opened by a command that only reads — opening takes no write lock and
        marks crashed runs only when that costs no wait; ``writable`` False: nothing is written at all."""
        self.url = url
        self.artifact_root = str(artifact_root)
        self.read_only = read_only
        # Runs recorded as running whose process the crash policy takes for dead, where this store
        # could not record that (a read-only copy, or a writer held the lock): shown as crashed.
        self._presumed_crashed: set[str] = set()
        self.engine = sa.create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _set_sqlite_reader_pragmas if read_only else _set_sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        shown = self.engine.url.render_as_string(hide_password=True)
        try:
            self._ensure_schema(shown)
        except sa.exc.DatabaseError as exc:
            reason = " ".join(str(exc.orig).split())  # one line: drivers add hints on lines of their own
            if not isinstance(exc, sa.exc.OperationalError):  # e.g. "file is not a database"
                fix = "this is not a striate store: move it aside, or choose another with --store"
            elif self.engine.dialect.name == "sqlite":
                fix = "check that the folder is writable, or choose another with --store"
            else:
                fix = "check that the database server is running and the URL (host, port, user, database) is right"
            raise StoreError(f"cannot open the store database {shown}: {reason}", fix) from None
        if writable:
            self.mark_stale_runs_crashed(time.time(), wait=not read_only)
        else:
            self._presumed_crashed = set(self._dead_runs(time.time()))

    def _ensure_schema(self, shown: str) -> None:
        """Check (or create) the schema. On SQLite, a "database is locked" answer while several processes
        open a new store at once (switching it to WAL, creating its tables) is retried for up to
        SCHEMA_OPEN_RETRY_S: on a heavily loaded machine the 30 s busy wait has been seen to run out."""
        deadline = time.monotonic() + SCHEMA_OPEN_RETRY_S
        while True:
            try:
                ensure_schema(self.engine, self._begin, shown, store_argument(self.engine.url))
                return
            except sa.exc.OperationalError as exc:
                locked = self.engine.dialect.name == "sqlite" and "locked" in str(exc.orig)
                if not locked or time.monotonic() > deadline:
                    raise
                self.engine.dispose()  # a fresh connection runs the connect pragmas (WAL) again
                time.sleep(0.05 + 0.2 * (os.getpid() % 7) / 7)  # processes retry out of step

    @classmethod
    def open_folder(cls, folder: Path, read_only: bool = False) -> SqlStore:
        """Open (creating if needed) the embedded store in ``folder``: striate.db plus artifacts/.

        ``read_only``: an existing store is opened for reading only, even in a folder this user
        cannot write (a read-only mount or copy): SQLite then opens the file read-only."""
        database = folder / DATABASE_FILE
        if read_only and database.is_file():
            path = database.resolve()
            if os.access(folder, os.W_OK) and os.access(database, os.W_OK):
                return cls(f"sqlite:///{path}", folder / "artifacts", read_only=True)
            # Read-only SQLite: with a write-ahead log present it is read through its -shm index
            # (mode=ro); without one the file holds everything and is opened immutable, since a
            # WAL reader would otherwise need to create the -shm file in a folder it cannot write.
            wal = path.with_name(path.name + "-wal")
            mode = "mode=ro" if wal.is_file() and wal.stat().st_size else "immutable=1"
            quoted = urllib.parse.quote(str(path))
            return cls(f"sqlite:///file:{quoted}?{mode}&uri=true", folder / "artifacts", read_only=True,
                       writable=False)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store folder {folder}: {exc.strerror}",
                             "choose a writable folder with --store or STRIATE_STORE") from None
        # Checked before creating artifacts/ inside it, so a read-only folder is named as such.
        if not os.access(folder, os.W_OK) or (folder / "artifacts").is_dir() and not os.access(
                folder / "artifacts", os.W_OK):
            raise StoreError(f"the store folder {folder} is not writable",
                             "choose a writable folder with --store or STRIATE_STORE")
        try:
            (folder / "artifacts").mkdir(exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store folder {folder}: {exc.strerror}",
                             "choose a writable folder with --store or STRIATE_STORE") from None
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
            "stop_requested_at": record.stop_requested_at,
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

    def update_run(self, run_id: str, *, owner: Owner | None = None, **fields: Any) -> None:
        """Change top-level fields of a run; with ``owner``, only while it holds the run's claim."""
        values = {k: (json.dumps(v, default=str) if k in _JSON_FIELDS else v) for k, v in fields.items()}
        with self._begin() as conn:
            if owner is not None:
                self._hold_claim(conn, run_id, owner, None)
            conn.execute(runs.update().where(runs.c.id == run_id).values(**values))

    def change_tags(self, run_id: str, add: Sequence[str] = (), remove: Sequence[str] = ()) -> list[str]:
        """Add and remove tags in one write transaction (concurrent changes all land); the new tags."""
        from striate.tracking.store.limits import check_tags

        check_tags(list(add))
        with self._begin() as conn:
            query = sa.select(runs.c.tags).where(runs.c.id == run_id)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()  # SQLite's BEGIN IMMEDIATE already holds the write lock
            row = conn.execute(query).first()
            if row is None:
                raise RunNotFoundError(f"no run {run_id!r} in this store", "`striate runs` lists the runs")
            gone = set(remove)
            tags = [t for t in json.loads(row[0] or "[]") if t not in gone]
            tags += [t for t in dict.fromkeys(add) if t not in tags]
            conn.execute(runs.update().where(runs.c.id == run_id).values(tags=json.dumps(tags)))
        return tags

    # -- metric points ---------------------------------------------------------------------------
    def log_batch(self, run_id: str, series: list[MetricSeries], heartbeat_at: float | None = None,
                  owner: Owner | None = None) -> float | None:
        """Append metric points (one chunk per series) and merge their summaries, in one transaction;
        with ``owner``, only while that process holds the run's claim (checked in the same transaction),
        and then returns when a stop was requested for the run (None: not asked to stop)."""
        series = [s for s in series if len(s)]
        stop_requested_at = None
        with self._begin() as conn:
            if owner is not None:
                self._hold_claim(conn, run_id, owner, heartbeat_at)
                heartbeat_at = None  # written with the claim
                stop_requested_at = conn.execute(sa.select(runs.c.stop_requested_at)
                                                 .where(runs.c.id == run_id)).scalar()
            if series:
                self._lock_run(conn, run_id)
                packed = codec.pack_all(series)
                self._insert_chunks(conn, run_id, packed, [None] * len(packed))
                added: dict[str, Summary] = {}
                for s in series:  # a batch normally holds each key once; more is merged in order
                    added[s.key] = codec.merge(added.get(s.key), codec.summarize(s))
                self._merge_summaries(conn, run_id, added)
            if heartbeat_at is not None:
                conn.execute(runs.update().where(runs.c.id == run_id).values(heartbeat_at=heartbeat_at))
        return stop_requested_at

    def chunks_since(self, run_id: str, after_seq: int) -> list[MetricChunk]:
        """The run's chunks stored after ``after_seq``; a chunk logged here gets the uid ``run:seq``."""
        query = (_CHUNK_ROWS.add_columns(metric_chunks.c.id, metric_chunks.c.uid, metric_chunks.c.key,
                                         metric_chunks.c.frame_id)
                 .where(metric_chunks.c.run_id == run_id, metric_chunks.c.id > after_seq).order_by(metric_chunks.c.id))
        chunks: list[MetricChunk] = []
        frames: dict[int, tuple[bytes, bytes]] = {}
        with self.engine.connect() as conn:
            for steps, times, values, seq, uid, key, frame in conn.execute(query):
                # the chunks of one frame keep one copy of its steps and times (put_chunks shares them again)
                steps, times = frames.setdefault(frame, (steps, times))
                # A chunk that itself arrived by sync keeps its uid, so a store synced onward stays idempotent.
                chunks.append(MetricChunk(uid or f"{run_id}:{seq}", key, steps, times, values, seq))
        return chunks

    def put_chunks(self, run_id: str, chunks: list[MetricChunk]) -> int:
        """Insert the chunks whose uid is new for this run and merge their summaries. Idempotent."""
        if not chunks:
            return 0
        with self._begin() as conn:
            self._lock_run(conn, run_id)
            uids = [c.uid for c in chunks]
            seen: set[str] = set()
            for start in range(0, len(uids), _IN_BATCH):
                seen.update(r[0] for r in conn.execute(sa.select(metric_chunks.c.uid).where(
                    metric_chunks.c.run_id == run_id, metric_chunks.c.uid.in_(uids[start:start + _IN_BATCH]))))
            fresh: list[MetricChunk] = []
            for chunk in chunks:
                if chunk.uid not in seen:
                    seen.add(chunk.uid)  # the same uid twice in one call is stored once
                    fresh.append(chunk)
            if fresh:
                self._insert_chunks(conn, run_id, [c.packed for c in fresh], [c.uid for c in fresh])
                added: dict[str, Summary] = {}
                for chunk in fresh:
                    added[chunk.key] = codec.merge(added.get(chunk.key),
                                                   codec.summarize(codec.unpack(chunk.key, [chunk.packed])))
                self._merge_summaries(conn, run_id, added)
        return len(fresh)

    def truncate_metrics(self, run_id: str, after_step: int) -> int:
        """Drop points with step > after_step, rewriting the chunks that hold them, then their summaries."""
        dropped = 0
        with self._begin() as conn:
            self._lock_run(conn, run_id)
            rows = conn.execute(_CHUNK_ROWS.add_columns(metric_chunks.c.id, metric_chunks.c.key, metric_chunks.c.uid)
                                .where(metric_chunks.c.run_id == run_id).order_by(metric_chunks.c.id)).all()
            touched: set[str] = set()
            rewritten: list[PackedChunk] = []
            uids: list[str | None] = []
            for row in rows:
                chunk = PackedChunk(row.key, row.steps, row.times, row._mapping["values"])
                kept = codec.truncate(chunk, after_step)
                if kept is chunk:
                    continue
                touched.add(row.key)
                dropped += chunk.count - (kept.count if kept else 0)
                conn.execute(metric_chunks.delete().where(metric_chunks.c.id == row.id))
                if kept is not None:
                    rewritten.append(kept)
                    uids.append(row.uid)
            if rewritten:  # in their order, after the chunks kept whole; chunks cut alike share new frames
                self._insert_chunks(conn, run_id, rewritten, uids)
            if touched:  # the frames of the chunks rewritten, when no chunk refers to them any more
                conn.execute(metric_frames.delete().where(
                    metric_frames.c.run_id == run_id,
                    ~sa.exists().where(metric_chunks.c.frame_id == metric_frames.c.id)))
            for key in touched:
                self._refresh_summary(conn, run_id, key)
        return dropped

    def history(self, run_id: str, key: str, max_points: int | None = None) -> MetricSeries:
        """All points of one metric, concatenated from its chunks (M4-downsampled to ``max_points``)."""
        with self.engine.connect() as conn:
            rows = _fetch_bytes(conn, _CHUNK_ROWS.where(metric_chunks.c.run_id == run_id, metric_chunks.c.key == key)
                                .order_by(metric_chunks.c.id))
        series = codec.unpack(key, [PackedChunk(key, *row) for row in rows])
        return downsample_m4(series, max_points) if max_points else series

    @staticmethod
    def _hold_claim(conn: sa.Connection, run_id: str, owner: Owner, heartbeat_at: float | None) -> None:
        """Inside a write transaction: go on only while ``owner`` holds the run's claim, else ClaimLostError.

        One UPDATE guarded by host, PID and process start time: a resume elsewhere (claim_run) changes
        them, so the old process's next write fails instead of interleaving with the new owner's. A run
        marked crashed while its process was paused (seen from another host) and claimed by nobody is
        taken back."""
        same = [runs.c.id == run_id, runs.c.status.in_(("running", "crashed"))]
        for column, value in ((runs.c.host, owner.host), (runs.c.pid, owner.pid),
                              (runs.c.pid_started_at, owner.pid_started_at)):
            same.append(column.is_(None) if value is None else column == value)
        values: dict[str, Any] = {"status": "running", "ended_at": None}
        if heartbeat_at is not None:
            values["heartbeat_at"] = heartbeat_at
        if conn.execute(runs.update().where(*same).values(**values)).rowcount:
            return
        now = conn.execute(sa.select(runs.c.status, runs.c.host, runs.c.pid).where(runs.c.id == run_id)).first()
        held = ("it was deleted" if now is None else
                f"it is {now.status} under host {now.host}, pid {now.pid}" if now.status == "running" else
                f"it is {now.status}")
        raise ClaimLostError(f"run {run_id[:12]} was taken over by another process ({held}): "
                             f"this process (pid {owner.pid}) may not write it any more",
                             "stop this process; the run goes on where it was resumed (or start a new run)")

    @staticmethod
    def _lock_run(conn: sa.Connection, run_id: str) -> None:
        """Serialize writers of one run's points and summaries. SQLite's BEGIN IMMEDIATE already does;
        on PostgreSQL two syncs of the same chunks would otherwise both find a uid new, and two
        summary merges would each miss the other's points."""
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:run_id))"), {"run_id": run_id})

    def _insert_chunks(self, conn: sa.Connection, run_id: str, chunks: Sequence[PackedChunk],
                       uids: Sequence[str | None]) -> None:
        """Store chunks in order: each distinct (steps, times) once as a frame, each chunk's values once."""
        frames, refs = codec.share_frames(chunks)
        frame_ids = []
        for steps, times in frames:
            inserted = conn.execute(metric_frames.insert().values(
                run_id=run_id, count=len(steps) // codec.STEP_SIZE, steps=steps, times=times))
            frame_ids.append(inserted.inserted_primary_key[0])  # type: ignore[index]  # one row: never None
        conn.execute(metric_chunks.insert(), [
            {"run_id": run_id, "key": c.key, "frame_id": frame_ids[ref], "count": c.count, "values": c.values,
             "uid": uid} for c, ref, uid in zip(chunks, refs, uids)])

    def _merge_summaries(self, conn: sa.Connection, run_id: str, added: dict[str, Summary]) -> None:
        """Merge summaries of points appended after everything stored into the stored summaries."""
        existing = {r.key: _summary(r) for r in conn.execute(sa.select(metric_summary).where(
            metric_summary.c.run_id == run_id, metric_summary.c.key.in_(list(added))))}
        updates: list[dict[str, Any]] = []
        inserts: list[dict[str, Any]] = []
        for key, summary in added.items():
            merged = codec.merge(existing.get(key), summary)
            (updates if key in existing else inserts).append({"b_run": run_id, "b_key": key, **merged.as_dict()})
        if updates:
            conn.execute(_UPDATE_SUMMARY, updates)
        if inserts:
            conn.execute(metric_summary.insert(), [{"run_id": r.pop("b_run"), "key": r.pop("b_key"), **r}
                                                   for r in inserts])

    def _refresh_summary(self, conn: sa.Connection, run_id: str, key: str) -> None:
        """Rebuild one summary from all of its chunks (after a rewrite): the same merge, from nothing."""
        rows = conn.execute(_CHUNK_ROWS.where(metric_chunks.c.run_id == run_id, metric_chunks.c.key == key)
                            .order_by(metric_chunks.c.id)).all()
        conn.execute(metric_summary.delete().where(metric_summary.c.run_id == run_id, metric_summary.c.key == key))
        if rows:
            summary = codec.summarize_chunks(PackedChunk(key, *row) for row in rows)
            conn.execute(metric_summary.insert().values(run_id=run_id, key=key, **summary.as_dict()))

    # -- runs --------------------------------------------------------------------------------------
    def claim_run(self, run_id: str, host: str, pid: int, pid_started_at: float | None) -> bool:
        """One UPDATE guarded by the status, so two resumes cannot both take the run."""
        with self._begin() as conn:
            result = conn.execute(runs.update().where(runs.c.id == run_id, runs.c.status != "running").values(
                status="running", ended_at=None, heartbeat_at=time.time(), error=None, host=host, pid=pid,
                pid_started_at=pid_started_at, stop_requested_at=None))  # a resumed run starts with no stop asked
            return bool(result.rowcount)

    def request_stop(self, run_id: str) -> float:
        """Ask the run's training process to stop (it learns of it at its next flush); when it was asked.
        StriateError when the run is not running; asking twice keeps the first time."""
        now = time.time()
        with self._begin() as conn:
            conn.execute(runs.update().where(runs.c.id == run_id, runs.c.status == "running",
                                             runs.c.stop_requested_at.is_(None)).values(stop_requested_at=now))
            row = conn.execute(sa.select(runs.c.status, runs.c.name, runs.c.stop_requested_at)
                               .where(runs.c.id == run_id)).first()
        if row is None:
            raise RunNotFoundError(f"no run {run_id!r} in this store", "`striate runs` lists the runs")
        if row.status != "running":
            raise StriateError(f"run {row.name} ({run_id[:8]}) is {row.status}: there is nothing to stop",
                               "`striate runs --where \"status = 'running'\"` lists the running runs")
        return float(row.stop_requested_at)

    def mark_stale_runs_crashed(self, now: float, wait: bool = True) -> int:
        """Runs still `running` that the crash policy (liveness.py) takes for dead become `crashed`.

        ``wait`` False (a read-only command): only when the write lock is free at once; a reader
        never waits on a writer for it, the next writer marks them; until then this store shows them
        as crashed without recording it."""
        dead = self._dead_runs(now)
        if not dead:
            return 0
        try:
            with self._begin(wait=wait) as conn:
                result = conn.execute(runs.update().where(runs.c.id.in_(dead), runs.c.status == "running").values(
                    status="crashed", ended_at=runs.c.heartbeat_at))
                return int(result.rowcount or 0)
        except sa.exc.OperationalError:
            if wait:
                raise
            self._presumed_crashed = set(dead)  # a writer holds the lock: shown as crashed, not recorded
            return 0

    def _dead_runs(self, now: float) -> list[str]:
        """Ids of the runs recorded as running that the crash policy takes for dead."""
        with self.engine.connect() as conn:
            running = [RunningProcess(r.id, r.host, r.pid, r.pid_started_at, r.heartbeat_at) for r in conn.execute(
                sa.select(runs.c.id, runs.c.host, runs.c.pid, runs.c.pid_started_at, runs.c.heartbeat_at)
                .where(runs.c.status == "running"))]
        return crashed_runs(running, now)

    def add_artifact(self, run_id: str, path: str, kind: str, size: int, sha256: str) -> None:
        """Record (or re-record) an artifact of a run."""
        with self._begin() as conn:
            conn.execute(artifacts.delete().where(artifacts.c.run_id == run_id, artifacts.c.path == path))
            conn.execute(artifacts.insert().values(run_id=run_id, path=path, kind=kind, size=size, sha256=sha256,
                                                   created_at=time.time()))

    def put_artifact_file(self, run_id: str, path: str, source: Path, kind: str = "file") -> dict[str, Any]:
        """Copy ``source`` into the run's artifact folder (hashing it while copying; a file already in place
        is only hashed), then record it."""
        target = confined_file(Path(self.artifact_root), run_id, path)
        source = Path(source)
        if not source.is_file():
            raise StoreError(f"artifact source {source} is not a file", "pass the path of an existing file")
        if target.exists() and source.resolve() == target.resolve():
            size, digest = source.stat().st_size, file_sha256(source)
        else:
            size, digest = copy_hashing(source, target)
        self.add_artifact(run_id, path, kind, size, digest)
        return {"path": path, "kind": kind, "size": size, "sha256": digest}

    def artifact_file(self, run_id: str, path: str) -> Path:
        """The artifact's file in this store's artifact folder."""
        target = confined_file(Path(self.artifact_root), run_id, path)
        if not target.is_file():
            raise ArtifactMissingError(f"artifact {path} of run {run_id[:8]} has no file at {target}",
                             "restore the file, or forget the artifact (Store.remove_artifact)")
        return target

    def find_artifacts(self, sha256: str) -> list[tuple[str, str]]:
        """(run id, artifact path) of every artifact with this file hash."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(artifacts.c.run_id, artifacts.c.path).where(artifacts.c.sha256 == sha256))
            return [(r.run_id, r.path) for r in rows]

    def remove_artifact(self, run_id: str, path: str) -> None:
        """Forget an artifact record."""
        with self._begin() as conn:
            conn.execute(artifacts.delete().where(artifacts.c.run_id == run_id, artifacts.c.path == path))

    def delete_run(self, run_id: str) -> None:
        """Remove a run's rows and its artifact folder."""
        with self._begin() as conn:
            for table in (metric_chunks, metric_frames, metric_summary, params, artifacts):  # chunks before frames
                conn.execute(table.delete().where(table.c.run_id == run_id))
            conn.execute(runs.delete().where(runs.c.id == run_id))
        root = Path(self.artifact_root).resolve()
        folder = (root / run_id).resolve()
        # Only a folder directly inside the artifact root: an id such as '..' or '.' (a crafted record)
        # must never remove the store itself or every run's files.
        if folder.parent == root and folder.name == run_id and folder.is_dir() and not (root / run_id).is_symlink():
            shutil.rmtree(folder)

    def search_runs(self, where: str | None = None, sort: str | None = None, project: str | None = None,
                    limit: int | None = None, include_archived: bool = False,
                    projects: Sequence[str] | None = None) -> list[str]:
        """Ids of the runs matching ``where``, by ``sort`` (default newest first); QueryError when unreadable.

        ``projects``: only runs of these projects (the server's view of a member's projects)."""
        from striate.tracking.query import check_text
        from striate.tracking.store.sql_query import (
            check_fields_exist,
            check_limit,
            order_by_clause,
            ordered_text,
            where_clause,
        )

        dialect = self.engine.dialect.name
        limit = check_limit(limit)
        query = sa.select(runs.c.id)
        if where:
            query = query.where(where_clause(where, dialect))
        if project:
            check_text("project", project)
            query = query.where(runs.c.project == project)
        if projects is not None:
            for name in projects:
                check_text("project", name)
            query = query.where(runs.c.project.in_(list(projects)))
        if not include_archived:
            query = query.where(runs.c.archived.is_(False))
        if sort:
            query = query.order_by(*order_by_clause(sort, dialect))
        # the id breaks ties, so that runs created in the same instant come in one order everywhere
        query = query.order_by(runs.c.created_at.desc(), ordered_text(runs.c.id, dialect))
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            if where or sort:  # after compiling them: a filter that cannot be read says so first
                check_fields_exist(conn, where, sort, projects=projects)
            return [row[0] for row in conn.execute(query)]

    def get_runs(self, run_ids: list[str]) -> list[RunRecord]:
        """Full records for ``run_ids``, in that order."""
        found: dict[str, RunRecord] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(run_ids), _IN_BATCH):
                chunk = run_ids[start:start + _IN_BATCH]
                rows = conn.execute(sa.select(runs).where(runs.c.id.in_(chunk))).all()
                found.update((r.id, r) for r in self._records(conn, rows))
        return [found[i] for i in run_ids if i in found]

    # -- reads ------------------------------------------------------------------------------------
    def get_run(self, run_id: str, projects: Sequence[str] | None = None) -> RunRecord:
        """One run by full id, unique id prefix or unique name; an empty or blank reference matches
        nothing. A reference that fits several runs (an id prefix of two runs, a name two runs
        share, or one run's name that starts another run's id) is an error listing them: it never
        picks one silently. A full id always wins.

        ``projects``: look only among the runs of these projects (what a server's caller may see)."""
        if not run_id or not run_id.strip():
            # The empty prefix would match every run: `delete ""` must not pick one.
            raise RunNotFoundError(f"no run {run_id!r}: a run reference cannot be empty",
                                   "give a run id, an id prefix or a name (`striate runs` lists them)")
        scope = [] if projects is None else [runs.c.project.in_(list(projects))]
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(runs).where(runs.c.id == run_id, *scope)).all()
            if rows:
                return self._records(conn, rows)[0]
            match = sa.or_(runs.c.id.startswith(run_id, autoescape=True), runs.c.name == run_id)
            rows = conn.execute(sa.select(runs).where(match, *scope)
                                .order_by(runs.c.created_at.desc()).limit(_AMBIGUOUS_SHOWN + 1)).all()
            if not rows:
                raise RunNotFoundError(f"no run {run_id!r} in this store", "`striate runs` lists the runs")
            if len(rows) == 1:
                return self._records(conn, rows)[0]
            named = sa.func.sum(sa.case((runs.c.name == run_id, 1), else_=0))
            total, by_name = conn.execute(sa.select(sa.func.count(), named).select_from(runs)
                                          .where(match, *scope)).one()
            shown = ", ".join(f"{r.id[:12]} ({r.name})" for r in rows[:_AMBIGUOUS_SHOWN])
            more = f", and {total - _AMBIGUOUS_SHOWN} more" if total > _AMBIGUOUS_SHOWN else ""
            what = (f"{total} runs are named {run_id!r}" if by_name == total
                    else f"{total} runs match {run_id!r} (by id prefix or name)")
            raise RunNotFoundError(f"ambiguous run reference: {what}: {shown}{more}",
                                   "give the run's id, or enough of its first characters to match only it "
                                   "(`striate runs` lists ids and names)")

    def list_runs(self, project: str | None = None, limit: int | None = None) -> list[RunRecord]:
        """Runs, newest first (archived ones included)."""
        query = sa.select(runs).order_by(runs.c.created_at.desc())
        if project:
            query = query.where(runs.c.project == project)
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return self._records(conn, conn.execute(query).all())

    # -- helpers ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _begin(self, wait: bool = True) -> Iterator[sa.Connection]:
        """A write transaction. On SQLite it takes the write lock at BEGIN (IMMEDIATE): a reader
        upgrading to writer mid-transaction is what makes SQLite answer "database is locked"
        without waiting, so no transaction here ever upgrades. ``wait`` False: fail at once
        (OperationalError) when another process holds the lock."""
        with self.engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if not wait and sqlite:
                _set_busy_timeout(conn, 0)
            try:
                conn.info["begin_immediate"] = True
                with conn.begin():
                    if not wait and not sqlite:
                        conn.execute(sa.text("SET LOCAL lock_timeout = '100ms'"))
                    yield conn
            finally:
                if not wait and sqlite:
                    _set_busy_timeout(conn, 30000)

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
                                               "host", "pid", "pid_started_at", "archived",
                                               "stop_requested_at")}
            for name in _JSON_FIELDS:
                data[name] = json.loads(getattr(r, name) or ("[]" if name == "tags" else "{}"))
            if data["status"] == "running" and r.id in self._presumed_crashed:
                data.update(status="crashed", ended_at=data["heartbeat_at"])  # as the next writer will record
            records.append(RunRecord(**data, metrics=metrics[r.id], artifacts=arts[r.id]))
        return records



def _param_rows(run_id: str, flat: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key, value in flat.items():
        num = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        rows.append({"run_id": run_id, "key": key, "value": json.dumps(value, default=str), "num": num})
    return rows


def _fetch_bytes(conn: sa.Connection, query: sa.Select[Any]) -> Sequence[Any]:
    """The rows of a query over packed arrays. On PostgreSQL they come in the binary result format:
    bytea in the text format is hex, twice the bytes to send and decode (a 100,000-point history reads
    in half the time)."""
    if conn.dialect.name != "postgresql" or conn.dialect.driver != "psycopg":
        return conn.execute(query).all()
    compiled = query.compile(dialect=conn.dialect)
    with conn.connection.driver_connection.cursor(binary=True) as cursor:  # type: ignore[union-attr]
        return cursor.execute(str(compiled), compiled.params).fetchall()


def _set_busy_timeout(conn: sa.Connection, milliseconds: int) -> None:
    # On the driver's connection: a statement through SQLAlchemy would begin a transaction.
    driver = conn.connection.driver_connection
    if driver is not None:
        driver.execute(f"PRAGMA busy_timeout={int(milliseconds)}")


def _sqlite_begin(conn: sa.Connection) -> None:
    mode = "IMMEDIATE" if conn.info.pop("begin_immediate", False) else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")


# A chunk's points as stored: its frame's steps and times, its own values (a chunk always has its frame).
_CHUNK_ROWS = sa.select(metric_frames.c.steps, metric_frames.c.times, metric_chunks.c["values"]).select_from(
    metric_chunks.join(metric_frames, metric_frames.c.id == metric_chunks.c.frame_id))

_UPDATE_SUMMARY = metric_summary.update().where(
    metric_summary.c.run_id == sa.bindparam("b_run"), metric_summary.c.key == sa.bindparam("b_key"))


def _summary(row: Any) -> Summary:
    m = row._mapping
    return Summary(last=m["last"], min=m["min"], max=m["max"], count=m["count"], last_step=m["last_step"])

