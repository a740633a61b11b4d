"""Upgrade a store written with an older schema in place (`striate store upgrade`).

Schema 2 -> 3: the steps and times every chunk held become frames (``metric_frames``) the chunks
point at — consecutive chunks of one run with the same steps and times bytes (the keys of one
flush) share one frame — and ``runs`` gains ``stop_requested_at``. Chunk ids are kept (they are
the sync positions and the uids of chunks synced onward), so are every run, param, summary and
artifact row.

The whole migration is one transaction holding the write lock (SQLite: BEGIN IMMEDIATE;
PostgreSQL: table locks), so an interrupted upgrade leaves the store exactly at schema 2. An
embedded (SQLite) store's database is first copied, consistently, next to it as
``striate.db.schema2-backup``. Refused while a run is still being recorded into the store.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy import event

from striate.errors import StoreError
from striate.tracking.store.base import DATABASE_FILE
from striate.tracking.store.liveness import RunningProcess, crashed_runs
from striate.tracking.store.schema import (
    SCHEMA_VERSION,
    UPGRADABLE_FROM,
    check_version,
    metric_chunks,
    metric_frames,
    runs,
    schema_version,
    store_argument,
    store_meta,
)

BACKUP_SUFFIX = ".schema2-backup"
LOCK_WAIT_S = 10.0  # how long the upgrade waits for another process's write to end before refusing
_PAGE = 500  # old chunks read per round trip


@dataclass
class UpgradeResult:
    """What an upgrade did: the schema before and after, and for a migration what it moved."""

    location: str
    from_version: int
    to_version: int
    runs: int = 0
    chunks: int = 0
    frames: int = 0
    backup: str | None = None  # the copy of an embedded store's database taken before migrating

    @property
    def upgraded(self) -> bool:
        """False when the store was already up to date."""
        return self.from_version != self.to_version


def upgrade_store(location: str) -> UpgradeResult:
    """Bring the store at ``location`` (a folder or a PostgreSQL URL) to this striate's schema, in place."""
    from striate.tracking.store import is_remote, is_server, remote_url

    if is_server(location):
        raise StoreError(f"{location} is a striate server: its database is upgraded on the server's machine",
                         "run `striate server upgrade --db DATABASE` there, with the server stopped")
    if is_remote(location):
        engine = sa.create_engine(remote_url(location))
        database: Path | None = None
    else:
        database = Path(location) / DATABASE_FILE
        if not database.is_file():
            raise StoreError(f"there is no store in {location} (no {DATABASE_FILE})",
                             "give the store's folder with --store (default ./striate-runs or $STRIATE_STORE)")
        if not os.access(database, os.W_OK) or not os.access(database.parent, os.W_OK):
            raise StoreError(f"the store {location} is not writable: it cannot be upgraded in place",
                             "upgrade it as a user who can write its folder, or copy it somewhere writable first")
        engine = sa.create_engine(f"sqlite:///{database.resolve()}")
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    shown = engine.url.render_as_string(hide_password=True)
    if database is None:
        location = store_argument(engine.url)  # reported back without its password
    try:
        return _upgrade(engine, location, shown, database)
    except sa.exc.OperationalError as exc:
        reason = " ".join(str(exc.orig).split())
        if _is_lock_wait(exc):
            raise StoreError(f"the store {shown} is being written by another process (waited {LOCK_WAIT_S:.0f} s "
                             f"for it: {reason})", "let it finish (or stop it), then run striate store upgrade "
                             "again; nothing was changed") from None
        raise StoreError(f"cannot upgrade the store {shown}: {reason}", "nothing was changed; check that the "
                         "store is reachable and writable, then run striate store upgrade again") from None
    finally:
        engine.dispose()


def _upgrade(engine: sa.Engine, location: str, shown: str, database: Path | None) -> UpgradeResult:
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        found = schema_version(conn)
    if found is None and "runs" not in tables:
        raise StoreError(f"{shown} holds no striate store", "give the store's folder or URL with --store")
    if found == SCHEMA_VERSION:
        return UpgradeResult(location, found, found)
    _check_upgradable(found, shown)
    with engine.connect() as conn:
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text(f"SET LOCAL lock_timeout = '{int(LOCK_WAIT_S * 1000)}ms'"))
                # every writer of schema 2 touches one of these; held to the end of the transaction
                conn.execute(sa.text("LOCK TABLE runs, metric_chunks, metric_summary, params, artifacts, store_meta "
                                     "IN ACCESS EXCLUSIVE MODE"))
            found = schema_version(conn)  # again, under the lock: another upgrade may have finished meanwhile
            if found == SCHEMA_VERSION:
                return UpgradeResult(location, found, found)
            _check_upgradable(found, shown)
            _refuse_live_runs(conn, shown)
            backup = _backup(database) if database is not None else None
            result = _migrate_2_to_3(conn, location)
            result.backup = str(backup) if backup else None
    if database is not None:
        _vacuum(database)
    return result


def _vacuum(database: Path) -> None:
    """Give back the pages the old chunk table held (SQLite keeps freed pages in the file until VACUUM).

    The upgrade is committed by now: a VACUUM that cannot run (another process is writing) only
    leaves the file larger than it needs to be, so it is skipped rather than failing the upgrade."""
    conn = sqlite3.connect(database, isolation_level=None, timeout=LOCK_WAIT_S)
    try:
        conn.execute("VACUUM")
    except sqlite3.OperationalError:
        pass
    finally:
        conn.close()


def _check_upgradable(found: int | None, shown: str) -> None:
    if found is None or found < UPGRADABLE_FROM or found > SCHEMA_VERSION:
        check_version(found, True, shown)  # no version, too old or newer: the refusal opening it gives
        raise StoreError(f"the store {shown} has schema {found}: this striate cannot upgrade it",
                         "pip install -U striate")  # not reached: check_version refuses all of these


def _refuse_live_runs(conn: sa.Connection, shown: str) -> None:
    """A run still recorded by a live process (an older striate) would write the old layout: refuse."""
    running = [RunningProcess(r.id, r.host, r.pid, r.pid_started_at, r.heartbeat_at) for r in conn.execute(
        sa.select(runs.c.id, runs.c.host, runs.c.pid, runs.c.pid_started_at, runs.c.heartbeat_at)
        .where(runs.c.status == "running"))]
    dead = set(crashed_runs(running, time.time()))
    alive = [r for r in running if r.run_id not in dead]
    if alive:
        listed = ", ".join(f"{r.run_id[:8]} (pid {r.pid} on {r.host})" for r in alive[:5])
        more = f" and {len(alive) - 5} more" if len(alive) > 5 else ""
        raise StoreError(f"the store {shown} is still being written: run(s) {listed}{more} are running",
                         "let them finish (or stop them), then run striate store upgrade again; nothing was changed")


def _backup(database: Path) -> Path:
    """A consistent copy of the database (write-ahead log included) next to it, before anything changes.

    Taken under the upgrade's write lock through a second connection: it reads the last committed
    state, which is exactly what the upgrade is about to migrate."""
    backup = database.with_name(database.name + BACKUP_SUFFIX)
    partial = backup.with_name(backup.name + ".partial")
    partial.unlink(missing_ok=True)
    source = sqlite3.connect(f"file:{database.resolve()}?mode=ro", uri=True)
    target = sqlite3.connect(partial)
    try:
        source.backup(target)
        target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
    finally:
        target.close()
        source.close()
    os.replace(partial, backup)  # an older backup of this store (an interrupted upgrade) is replaced whole
    return backup


# -- 2 -> 3 -----------------------------------------------------------------------------------------
def _migrate_2_to_3(conn: sa.Connection, location: str) -> UpgradeResult:
    dialect = conn.dialect.name
    conn.execute(sa.text(f"ALTER TABLE runs ADD COLUMN stop_requested_at {sa.Float().compile(dialect=conn.dialect)}"))
    metric_frames.create(conn)
    if dialect == "sqlite":
        # SQLite cannot add a NOT NULL reference to a table: the chunks move to a new table of the
        # schema-3 layout (ids kept), the old one is dropped (its index names are freed first)
        conn.execute(sa.text("DROP INDEX ix_metric_chunks_run_key"))
        conn.execute(sa.text("DROP INDEX ix_metric_chunks_run_uid"))
        conn.execute(sa.text("ALTER TABLE metric_chunks RENAME TO metric_chunks_schema2"))
        metric_chunks.create(conn)
        old = sa.table("metric_chunks_schema2", *(sa.column(c) for c in (
            "id", "run_id", "key", "count", "steps", "times", "values", "uid")))
    else:
        conn.execute(sa.text("ALTER TABLE metric_chunks ADD COLUMN frame_id INTEGER"))
        old = sa.table("metric_chunks", *(sa.column(c) for c in (
            "id", "run_id", "key", "count", "steps", "times", "values", "uid")))
    chunks = frames = 0
    last_frame: dict[str, tuple[bytes, bytes, int]] = {}  # run -> its latest frame
    for page in _pages(conn, old):
        new_frames: list[dict[str, Any]] = []
        refs: list[int] = []
        for row in page:
            steps, times = bytes(row.steps), bytes(row.times)
            latest = last_frame.get(row.run_id)
            if latest is None or latest[0] != steps or latest[1] != times:
                frames += 1
                latest = last_frame[row.run_id] = (steps, times, frames)
                new_frames.append({"id": frames, "run_id": row.run_id, "count": row._mapping["count"], "steps": steps,
                                   "times": times})
            refs.append(latest[2])
        if new_frames:
            conn.execute(metric_frames.insert(), new_frames)
        if dialect == "sqlite":
            conn.execute(metric_chunks.insert(), [
                {"id": row.id, "run_id": row.run_id, "key": row.key, "frame_id": ref, "count": row._mapping["count"],
                 "values": row._mapping["values"], "uid": row.uid} for row, ref in zip(page, refs)])
        else:
            conn.execute(sa.text("UPDATE metric_chunks SET frame_id = :frame WHERE id = :chunk"),
                         [{"frame": ref, "chunk": row.id} for row, ref in zip(page, refs)])
        chunks += len(page)
        _after_page(chunks)
    if dialect == "sqlite":
        conn.execute(sa.text("DROP TABLE metric_chunks_schema2"))
    else:
        conn.execute(sa.text("ALTER TABLE metric_chunks ALTER COLUMN frame_id SET NOT NULL, "
                             "ADD CONSTRAINT metric_chunks_frame_id_fkey FOREIGN KEY (frame_id) "
                             "REFERENCES metric_frames (id), DROP COLUMN steps, DROP COLUMN times"))
        conn.execute(sa.text("CREATE INDEX ix_metric_chunks_frame ON metric_chunks (frame_id)"))
        # the frames were given their ids here: the next one stored takes the one after them
        conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('metric_frames', 'id'), "
                             "(SELECT coalesce(max(id), 0) + 1 FROM metric_frames), false)"))
    stored = conn.execute(sa.select(sa.func.count()).select_from(metric_chunks)).scalar()
    if stored != chunks:  # never expected: the transaction is rolled back, the store stays at schema 2
        raise StoreError(f"the upgrade moved {chunks} metric chunks but {stored} are stored",
                         "nothing was changed; report this as a bug")
    conn.execute(store_meta.update().where(store_meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))
    run_count = int(conn.execute(sa.select(sa.func.count()).select_from(runs)).scalar() or 0)
    return UpgradeResult(location, 2, SCHEMA_VERSION, runs=run_count, chunks=chunks, frames=frames)


def _pages(conn: sa.Connection, old: sa.TableClause) -> Iterator[Sequence[Any]]:
    """The old chunks in id order, a page at a time (by id, so inserting meanwhile never disturbs it)."""
    after = 0
    while True:
        page = conn.execute(sa.select(old).where(old.c.id > after).order_by(old.c.id).limit(_PAGE)).all()
        if not page:
            return
        yield page
        after = page[-1].id


def _after_page(done: int) -> None:
    """Called after each page of chunks is moved (tests interrupt an upgrade here)."""


def _sqlite_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
    dbapi_conn.isolation_level = None  # BEGIN IMMEDIATE is issued by the begin event
    dbapi_conn.execute(f"PRAGMA busy_timeout={int(LOCK_WAIT_S * 1000)}")
    dbapi_conn.execute("PRAGMA foreign_keys=ON")


def _is_lock_wait(exc: sa.exc.OperationalError) -> bool:
    text = str(exc.orig).lower()
    return "database is locked" in text or "lock timeout" in text or "could not obtain lock" in text
