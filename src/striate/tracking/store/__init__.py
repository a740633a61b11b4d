"""Tracking stores: one interface, several backends.

``base.py`` the interface (``Store``, and ``ChunkSource``/``ChunkSink`` for sync); ``codec.py`` how
metric points are packed and summarized; ``schema.py`` the SQL tables and version check;
``sql.py`` the SQLite/PostgreSQL store; ``liveness.py`` heartbeat and crash detection.
"""

from __future__ import annotations

import os
from pathlib import Path

from striate.errors import StoreError
from striate.tracking.store.base import DATABASE_FILE, ChunkSink, ChunkSource, RunRecord, Store, SyncableStore
from striate.tracking.store.codec import MetricChunk, MetricSeries

DEFAULT_STORE = "striate-runs"


def holds_store(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` already holds an embedded store (opening one would otherwise create it)."""
    return (Path(folder) / DATABASE_FILE).is_file()


def default_store_location() -> str:
    """``$STRIATE_STORE`` or ``./striate-runs``."""
    return os.environ.get("STRIATE_STORE") or DEFAULT_STORE


REMOTE_PREFIXES = ("postgresql://", "postgresql+")
SERVER_PREFIXES = ("http://", "https://")  # a striate team server (tracking/store/http.py)


def is_remote(location: str | os.PathLike[str] | None) -> bool:
    """Whether ``location`` names a database server or a striate team server rather than a local folder
    (runs recorded there are written through the local spool)."""
    return str(location or "").startswith(REMOTE_PREFIXES + SERVER_PREFIXES)


def is_server(location: str | os.PathLike[str] | None) -> bool:
    """Whether ``location`` names a striate team server (``http://HOST:PORT``)."""
    return str(location or "").startswith(SERVER_PREFIXES)


def remote_url(location: str) -> str:
    """The SQLAlchemy URL of a database-server location (a plain postgresql:// URL goes through psycopg 3)."""
    if location.startswith("postgresql://"):
        return "postgresql+psycopg://" + location.removeprefix("postgresql://")
    return location


def artifact_root_for_remote() -> Path:
    """Where a database-server store keeps artifact files: ``$STRIATE_ARTIFACTS`` or a user data folder."""
    return Path(os.environ.get("STRIATE_ARTIFACTS") or Path.home() / ".local" / "share" / "striate" / "artifacts")


def open_store(location: str | os.PathLike[str] | None = None, read_only: bool = False) -> Store:
    """Open the store at ``location``: a folder (embedded SQLite), a PostgreSQL URL or a team server's URL.

    ``read_only`` (commands that only read): opening never waits on a writer, and an existing
    folder store opens even where this user cannot write (then nothing is written at all). A
    ``location`` given for reading must hold a store, or be an empty folder (a new, empty store):
    reading a mistyped path is an error, not a new store made there (check_read_location)."""
    if is_server(location):
        from striate.tracking.store.http import HttpStore

        return HttpStore(str(location), read_only=read_only)
    from striate.tracking.store.sql import SqlStore

    if is_remote(location):
        return SqlStore(remote_url(str(location)), artifact_root_for_remote(), read_only=read_only)
    if read_only and location is not None:
        check_read_location(Path(location))
    return SqlStore.open_folder(Path(location or default_store_location()), read_only=read_only)


def check_read_location(folder: Path) -> None:
    """StoreError naming ``folder`` and the fix when a command that only reads is pointed at a path
    that holds no store: a folder that does not exist, a file, or a folder of other files. An empty
    folder is a new store (several readers may create it at once)."""
    if holds_store(folder):
        return
    fix = "check the path given to --store; a store is made by the first `striate train --store PATH`"
    if not folder.exists():
        raise StoreError(f"no store at {folder}: there is no such folder", fix)
    if not folder.is_dir():
        raise StoreError(f"no store at {folder}: it is a file, not a store folder",
                         f"give the folder that holds {DATABASE_FILE}")
    others = sorted(p.name for p in folder.iterdir() if p.name != "artifacts" and not p.name.startswith(DATABASE_FILE))
    if others:
        raise StoreError(f"no store at {folder}: it holds no {DATABASE_FILE} but other files ({', '.join(others[:3])}"
                         f"{', ...' if len(others) > 3 else ''})", fix)


__all__ = ["DATABASE_FILE", "DEFAULT_STORE", "ChunkSink", "ChunkSource", "MetricChunk", "MetricSeries", "RunRecord",
           "Store", "SyncableStore", "default_store_location", "holds_store", "is_remote", "is_server",
           "open_store",
           "remote_url", "store_owning"]


def store_owning(path: str | os.PathLike[str], *roots: str | os.PathLike[str] | None) -> Path | None:
    """The store folder or artifact root that ``path`` (symlinks resolved) lies in, or None.

    A file written there would replace a store's database or a run's recorded artifact: commands
    that write a user-named file (export, export-run) refuse it. Every folder above ``path`` that
    holds a store counts, as do ``roots`` (a store's artifact root, the remote-store artifact root).
    """
    target = Path(path).resolve()
    candidates = [Path(r).resolve() for r in roots if r]
    if os.environ.get("STRIATE_ARTIFACTS"):
        candidates.append(artifact_root_for_remote().resolve())
    for root in candidates:
        if target == root or root in target.parents:
            return root
    for folder in target.parents:
        if holds_store(folder):
            return folder
    return None
