"""Writing to a remote store through a local spool.

A run whose store is a database server records everything into a local SQLite store first (the
spool, ``$STRIATE_SPOOL`` or ``~/.cache/striate/spool``) — so logging never waits on the network
and nothing is lost when the server is away — and a :class:`Syncer` copies it across. Syncing is
idempotent: every metric chunk carries a uid (run id + spool chunk id) that the server keeps, the
run record is upserted, artifact files are sent by content hash (uploaded to a team server, copied for
a database store); syncing twice writes nothing twice.
`striate sync --to URL` sends whatever a killed or offline process left behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from striate.errors import RunNotFoundError, StriateError
from striate.tracking.store import RunRecord, Store, holds_store, open_store
from striate.tracking.store.base import chunk_sink, chunk_source, confined_file
from striate.tracking.store.limits import check_keys, check_record
from striate.tracking.store.sql import SqlStore, flatten_params

_RECORD_FIELDS = ("name", "project", "status", "ended_at", "heartbeat_at", "model", "summary", "tags", "notes",
                  "environment", "dataset", "error", "reproduction_of", "host", "pid", "pid_started_at", "archived")


def spool_location() -> Path:
    """The local spool store: ``$STRIATE_SPOOL`` or ``~/.cache/striate/spool``."""
    return Path(os.environ.get("STRIATE_SPOOL") or Path.home() / ".cache" / "striate" / "spool")


class Syncer:
    """Copies one spooled run to the remote store, opening the remote lazily and resuming where it stopped."""

    def __init__(self, spool: Store, remote: str | Store, run_id: str) -> None:
        self.spool = chunk_source(spool)
        self._remote_location = remote
        self._remote: Store | None = remote if isinstance(remote, Store) else None
        self.run_id = run_id
        self._sent_chunk_seq = 0  # chunks up to this position in the spool are on the server

    @property
    def remote(self) -> Store:
        """The remote store, opened on first use (the server may be away when the run starts)."""
        if self._remote is None:
            self._remote = open_store(str(self._remote_location))
        return self._remote

    def sync(self) -> dict[str, int]:
        """Send what the remote lacks: the record, new metric chunks, artifacts. Returns counts."""
        record = self.spool.get_run(self.run_id)
        # Checked before anything is sent: a run recorded by an older striate (no checks at the
        # door) may hold text the server's columns refuse, and half of it must not arrive.
        check_record(record)
        chunks = self.spool.chunks_since(record.id, self._sent_chunk_seq)
        check_keys("metric key", {c.key for c in chunks})
        remote = self.remote
        try:
            there = remote.get_run(record.id)
            if (there.host, there.pid, there.pid_started_at) != (record.host, record.pid, record.pid_started_at):
                # Another process has taken the run over on the server (`striate resume`): the
                # spool's copy is older, and sending it would undo what that process recorded.
                return {"chunks_sent": 0, "artifacts_copied": 0, "superseded": 1}
            remote_artifacts = there.artifacts
            if there.stop_requested_at is not None and record.stop_requested_at is None and record.status == "running":
                # A stop asked on the server reaches the training process through its spool: the
                # process's writer reads it from there at its next flush.
                self.spool.request_stop(record.id)
            fields = {f: getattr(record, f) for f in _RECORD_FIELDS}
            if record.stop_requested_at is not None:
                # carried when the spool has one; a spool without one never clears a stop asked on the server
                fields["stop_requested_at"] = record.stop_requested_at
            remote.update_run(record.id, **fields)
        except RunNotFoundError:
            remote.create_run(record)
            remote_artifacts = []
        remote.set_params(record.id, flatten_params(record.config))
        sent = chunk_sink(remote).put_chunks(record.id, chunks)
        if chunks:
            self._sent_chunk_seq = chunks[-1].seq
        copied = self._sync_artifacts(record.id, record.artifacts, remote_artifacts, remote)
        return {"chunks_sent": sent, "artifacts_copied": copied, "superseded": 0}

    def _sync_artifacts(self, run_id: str, artifacts: list[dict[str, Any]], remote_artifacts: list[dict[str, Any]],
                        remote: Store) -> int:
        """Send the spool's artifact files the remote lacks (by path and SHA-256: a file already there is not
        sent again) through the store's file API — uploaded to a team server, copied into a database store's
        artifact folder — and drop the remote's artifacts the spool pruned (old checkpoints)."""
        have = {a["path"]: a["sha256"] for a in remote_artifacts}
        copied = 0
        for a in artifacts:
            if have.get(a["path"]) == a["sha256"]:
                continue
            remote.put_artifact_file(run_id, a["path"], self.spool.artifact_file(run_id, a["path"]), a["kind"])
            copied += 1
        for path in set(have) - {a["path"] for a in artifacts}:
            remote.remove_artifact(run_id, path)  # a team server removes the file with the record
            if isinstance(remote, SqlStore):
                confined_file(Path(remote.artifact_root), run_id, path).unlink(missing_ok=True)
        return copied


def sync_all(remote: str, spool: Path | None = None) -> list[dict[str, Any]]:
    """Sync every run in the spool to ``remote``; one row per run, with ``error`` set for a run that failed.

    A run that cannot be sent (text too long for the server, a refused write) does not stop the
    others: its row says why, and the caller reports it."""
    spooled = chunk_source(open_store(spool or spool_location()))
    target = open_store(remote)
    rows = []
    for record in spooled.list_runs():
        row: dict[str, Any] = {"id": record.id, "name": record.name, "status": record.status, "chunks_sent": 0,
                               "artifacts_copied": 0, "superseded": 0, "error": None}
        try:
            row.update(Syncer(spooled, target, record.id).sync())
        except StriateError as exc:
            row["error"] = exc.problem
        except (sa.exc.SQLAlchemyError, OSError) as exc:  # a write the server refused, an artifact unreadable
            reason = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
            row["error"] = " ".join(str(reason).split())
        rows.append(row)
    return rows


def take_over_from_spool(remote: Store, record: RunRecord) -> RunRecord:
    """Before a run on a server is resumed: send what this machine's spool still holds of it, then
    drop the spool's copy, so a later `striate sync` cannot put the old copy back over the resumed run."""
    location = spool_location()
    if not holds_store(location):
        return record
    spool = open_store(location)
    try:
        spool.get_run(record.id)
    except RunNotFoundError:
        return record
    Syncer(spool, remote, record.id).sync()
    spool.delete_run(record.id)
    return remote.get_run(record.id)
