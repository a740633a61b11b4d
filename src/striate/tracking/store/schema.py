"""The SQL store's schema: the tables, the schema version and the check every open runs.

A store records the schema version it was written with in ``store_meta``. Opening a store with
no version, an older or a newer version is refused with one clear StoreError each; opening a
database with no tables creates them, under the write lock, so processes opening a new store at
the same moment neither fail nor create it twice.
"""

from __future__ import annotations

import shlex
import urllib.parse
from pathlib import Path
from typing import Any, Callable, ContextManager

import sqlalchemy as sa

from striate.errors import StoreError


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


metadata = sa.MetaData()

# The widths of the text columns, in characters. Every path that lets text into a store checks
# these (tracking/store/limits.py), so that what a local SQLite store accepts (SQLite ignores
# widths) can always be sent to PostgreSQL (which refuses anything wider).
LIMITS = {
    "id": 32,  # run ids: uuid4 hex
    "name": 200,  # run name, project, model
    "host": 255,  # a host name (DNS allows 253)
    "key": 300,  # param and metric keys
    "artifact_path": 1000,  # an artifact's path inside its run's folder
    "artifact_kind": 50,
}

runs = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.String(LIMITS["id"]), primary_key=True),
    sa.Column("name", sa.String(LIMITS["name"]), nullable=False),
    sa.Column("project", sa.String(LIMITS["name"]), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("ended_at", sa.Float),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
    sa.Column("model", sa.String(LIMITS["name"])),
    sa.Column("config", sa.Text, nullable=False, default="{}"),
    sa.Column("summary", sa.Text, nullable=False, default="{}"),
    sa.Column("tags", sa.Text, nullable=False, default="[]"),
    sa.Column("notes", sa.Text, nullable=False, default=""),
    sa.Column("environment", sa.Text, nullable=False, default="{}"),
    sa.Column("dataset", sa.Text, nullable=False, default="{}"),
    sa.Column("error", sa.Text),
    sa.Column("reproduction_of", sa.String(LIMITS["id"])),
    sa.Column("host", sa.String(LIMITS["host"])),
    sa.Column("pid", sa.Integer),
    sa.Column("pid_started_at", sa.Float),
    sa.Column("archived", sa.Boolean, nullable=False, default=False),
    # when someone asked the run to stop from elsewhere (the team server); NULL: nobody did
    sa.Column("stop_requested_at", sa.Float),
)

params = sa.Table(
    "params", metadata,
    sa.Column("run_id", sa.String(LIMITS["id"]), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("key", sa.String(LIMITS["key"]), primary_key=True),
    sa.Column("value", sa.Text),
    sa.Column("num", sa.Float),  # numeric value, when the param is a number, for filtering
    sa.Index("ix_params_key_num", "key", "num"),
)

# The steps and wall-clock times of the points of one flush, stored once for every metric logged
# at those points (a flush of 10 keys logged together: one frame, ten chunks). Frames are never
# changed; a rewrite (truncate) stores new ones and deletes those no chunk refers to any more.
metric_frames = sa.Table(
    "metric_frames", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(LIMITS["id"]), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("steps", sa.LargeBinary, nullable=False),  # int64 little-endian
    sa.Column("times", sa.LargeBinary, nullable=False),  # float64 Unix seconds
    sa.Index("ix_metric_frames_run", "run_id", "id"),
)

# The values of one metric logged in one flush, at the points of its frame.
metric_chunks = sa.Table(
    "metric_chunks", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(LIMITS["id"]), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("key", sa.String(LIMITS["key"]), nullable=False),
    sa.Column("frame_id", sa.Integer, sa.ForeignKey("metric_frames.id"), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("values", sa.LargeBinary, nullable=False),  # float64
    sa.Column("uid", sa.String(100)),  # set when a chunk arrives by sync: makes re-syncing a no-op
    sa.Index("ix_metric_chunks_run_key", "run_id", "key", "id"),
    sa.Index("ix_metric_chunks_run_uid", "run_id", "uid", unique=True),
    sa.Index("ix_metric_chunks_frame", "frame_id"),  # finding frames no chunk refers to any more
)

metric_summary = sa.Table(
    "metric_summary", metadata,
    sa.Column("run_id", sa.String(LIMITS["id"]), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("key", sa.String(LIMITS["key"]), primary_key=True),
    sa.Column("last", sa.Float),
    sa.Column("min", sa.Float),
    sa.Column("max", sa.Float),
    sa.Column("last_step", sa.Integer),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Index("ix_metric_summary_key_last", "key", "last"),
)

artifacts = sa.Table(
    "artifacts", metadata,
    sa.Column("run_id", sa.String(LIMITS["id"]), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("path", sa.String(LIMITS["artifact_path"]), primary_key=True),
    sa.Column("kind", sa.String(LIMITS["artifact_kind"]), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_artifacts_sha256", "sha256"),
)

# 3: steps and times in metric_frames, shared by the chunks of one flush (2: in every chunk);
# runs.stop_requested_at. A schema-2 store is brought to 3 in place by upgrade.py (`striate store upgrade`).
SCHEMA_VERSION = 3
store_meta = sa.Table(
    "store_meta", metadata,
    sa.Column("key", sa.String(50), primary_key=True),
    sa.Column("value", sa.String(200), nullable=False),
)


MOVE_ASIDE = "move it aside and start a new store (or use --store with another folder)"
UPGRADABLE_FROM = 2  # the oldest schema `striate store upgrade` brings to SCHEMA_VERSION


def store_argument(url: sa.URL) -> str:
    """How to name the store at ``url`` to a command's --store: its folder, or its server URL (no password)."""
    if url.get_backend_name() == "sqlite":
        database = (url.database or "").removeprefix("file:").split("?")[0]
        return str(Path(urllib.parse.unquote(database)).parent)
    shown = url.render_as_string(hide_password=True)
    return "postgresql://" + shown.split("://", 1)[1]


def schema_version(conn: sa.Connection) -> int | None:
    """The version recorded in the database; None when it records none (or has no tables)."""
    if "store_meta" not in sa.inspect(conn).get_table_names():
        return None
    found = conn.execute(sa.select(store_meta.c.value).where(store_meta.c.key == "schema_version")).scalar()
    return None if found is None else int(found)


def check_version(found: int | None, has_runs: bool, shown: str, location: str | None = None) -> None:
    """Refuse a store written by another schema version: none recorded (but runs exist), older, newer.

    ``location``: the store as --store names it, for the upgrade command the refusal of an older one names."""
    if found is None and has_runs:
        raise StoreError(f"the store {shown} records no schema version: it was written by an older, "
                         "incompatible striate", MOVE_ASIDE)
    if found is not None and UPGRADABLE_FROM <= found < SCHEMA_VERSION:
        raise StoreError(f"the store {shown} was written by an older striate (schema {found}, "
                         f"this striate reads {SCHEMA_VERSION})",
                         f"upgrade it in place: striate store upgrade --store {shlex.quote(location or shown)} "
                         "(it keeps a backup of an embedded store's database first)")
    if found is not None and found < SCHEMA_VERSION:
        raise StoreError(f"the store {shown} was written by a much older striate (schema {found}, "
                         f"this striate reads {SCHEMA_VERSION}; `striate store upgrade` upgrades from "
                         f"schema {UPGRADABLE_FROM})",
                         f"{MOVE_ASIDE}; to keep its runs, export each with the striate that wrote it "
                         "(striate export-run RUN FILE) and import it into the new store (striate import-run FILE)")
    if found is not None and found > SCHEMA_VERSION:
        raise StoreError(f"the store {shown} has schema version {found}, newer than this striate "
                         f"understands ({SCHEMA_VERSION})", "upgrade striate: pip install -U striate")


def ensure_schema(engine: sa.Engine, write_transaction: Callable[[], ContextManager[sa.Connection]],
                  shown: str, location: str | None = None) -> None:
    """Check the store's schema version; create the schema when the database is empty.

    The common case (the version matches) is one read. Creation runs inside ``write_transaction``,
    which holds the database's write lock (SQLite: BEGIN IMMEDIATE, waiting like any write;
    PostgreSQL: an advisory lock), and looks again under the lock: another process may have
    created the store meanwhile."""
    with engine.connect() as conn:
        # runs before the version: a creator commits both at once, so a store seen with runs is seen
        # with its version too (read the other way round, a commit in between looked like no version)
        has_runs = "runs" in sa.inspect(conn).get_table_names()
        found = schema_version(conn)
    check_version(found, has_runs, shown, location)
    if found == SCHEMA_VERSION:
        return
    with write_transaction() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(7461726961)"))  # one creator at a time
        found = schema_version(conn)
        check_version(found, "runs" in sa.inspect(conn).get_table_names(), shown, location)
        if found is None:
            metadata.create_all(conn)
            conn.execute(store_meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
