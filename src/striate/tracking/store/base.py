"""The one store interface every backend (SQLite and PostgreSQL now; HTTP later) implements.

:class:`Store` is what runs, the CLI and the read API use. What syncing a spool needs is separate:
a :class:`ChunkSource` hands out the metric chunks a sync has not sent yet, a :class:`ChunkSink`
takes them idempotently; :class:`SyncableStore` is both.
"""

from __future__ import annotations

import abc
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

from striate.errors import StoreError
from striate.tracking.store.codec import MetricChunk, MetricSeries

RUN_STATUSES = ("running", "finished", "failed", "stopped", "crashed")
DATABASE_FILE = "striate.db"  # an embedded store is this SQLite file plus artifacts/ in one folder


@dataclass(frozen=True)
class Owner:
    """The process that holds a run's claim: only it may append points or end the run."""

    host: str | None
    pid: int | None
    pid_started_at: float | None


class ClaimLostError(StoreError):
    """The run was claimed by another process (resumed elsewhere): this process may not write it any more."""

    http_status = 409


@dataclass
class RunRecord:
    """Everything the store keeps about one run, except its metric points."""

    id: str
    name: str
    project: str
    status: str
    created_at: float
    ended_at: float | None
    heartbeat_at: float
    model: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    notes: str = ""
    environment: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    reproduction_of: str | None = None
    host: str | None = None  # where the run's process lives, to tell a dead process from a slow one
    pid: int | None = None
    pid_started_at: float | None = None
    archived: bool = False
    stop_requested_at: float | None = None  # when a stop was asked for from elsewhere (team server); None: never
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # key -> last/min/max/count/last_step
    artifacts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        """Seconds from start to end (or to the last heartbeat while running)."""
        return (self.ended_at or self.heartbeat_at) - self.created_at


class Store(abc.ABC):
    """Where runs, metric points and artifact records live."""

    artifact_root: str

    @abc.abstractmethod
    def create_run(self, record: RunRecord) -> None:
        """Insert a new run."""

    @abc.abstractmethod
    def update_run(self, run_id: str, *, owner: Owner | None = None, **fields: Any) -> None:
        """Change top-level fields of a run (status, summary, ended_at, heartbeat_at, ...); with
        ``owner``, only while that process holds the run's claim (ClaimLostError otherwise)."""

    @abc.abstractmethod
    def set_params(self, run_id: str, flat: dict[str, Any]) -> None:
        """Replace a run's flattened params (used when a config grows after the run started)."""

    @abc.abstractmethod
    def log_batch(self, run_id: str, series: list[MetricSeries], heartbeat_at: float | None = None,
                  owner: Owner | None = None) -> float | None:
        """Append metric points (the one write primitive for metrics), atomically; with ``owner``,
        only while that process holds the run's claim (ClaimLostError otherwise, nothing written),
        and then returns when a stop was requested for the run (None: not asked)."""

    @abc.abstractmethod
    def request_stop(self, run_id: str) -> float:
        """Ask a running run's process to stop after its current step (`striate stop`); when it was asked."""

    @abc.abstractmethod
    def claim_run(self, run_id: str, host: str, pid: int, pid_started_at: float | None) -> bool:
        """Atomically mark a non-running run `running` under this process; False if it already runs."""

    @abc.abstractmethod
    def truncate_metrics(self, run_id: str, after_step: int) -> int:
        """Drop every metric point with a step above ``after_step`` (before a resume); return how many."""

    @abc.abstractmethod
    def add_artifact(self, run_id: str, path: str, kind: str, size: int, sha256: str) -> None:
        """Record an artifact stored under the run's artifact folder."""

    @abc.abstractmethod
    def remove_artifact(self, run_id: str, path: str) -> None:
        """Forget an artifact record (the caller removes the file)."""

    @abc.abstractmethod
    def find_artifacts(self, sha256: str) -> list[tuple[str, str]]:
        """(run id, artifact path) of every artifact whose file has this SHA-256."""

    @abc.abstractmethod
    def change_tags(self, run_id: str, add: Sequence[str] = (), remove: Sequence[str] = ()) -> list[str]:
        """Add and remove tags atomically (concurrent changes all land); returns the run's new tags."""

    @abc.abstractmethod
    def get_run(self, run_id: str, projects: Sequence[str] | None = None) -> RunRecord:
        """One run by full id, unique id prefix or unique name (RunNotFoundError otherwise, also when
        the reference fits several runs; an empty or blank reference matches nothing).
        ``projects``: look only among the runs of these projects."""

    @abc.abstractmethod
    def list_runs(self, project: str | None = None, limit: int | None = None) -> list[RunRecord]:
        """Runs, newest first."""

    @abc.abstractmethod
    def history(self, run_id: str, key: str, max_points: int | None = None) -> MetricSeries:
        """Points of one metric of one run in logging order, downsampled to ``max_points`` (M4) when given."""

    @abc.abstractmethod
    def search_runs(self, where: str | None = None, sort: str | None = None, project: str | None = None,
                    limit: int | None = None, include_archived: bool = False,
                    projects: Sequence[str] | None = None) -> list[str]:
        """Ids of the runs matching a filter expression (see tracking/query.py), in ``sort`` order;
        ``projects``: only runs in these projects."""

    @abc.abstractmethod
    def get_runs(self, run_ids: list[str]) -> list[RunRecord]:
        """Full records for ``run_ids``, in that order."""

    @abc.abstractmethod
    def delete_run(self, run_id: str) -> None:
        """Remove a run, its points and artifact records."""


class ChunkSource(abc.ABC):
    """A store a sync can read metric chunks from, in storage order."""

    @abc.abstractmethod
    def chunks_since(self, run_id: str, after_seq: int) -> list[MetricChunk]:
        """The run's chunks stored after position ``after_seq`` (0: all), oldest first."""


class ChunkSink(abc.ABC):
    """A store a sync can write metric chunks into."""

    @abc.abstractmethod
    def put_chunks(self, run_id: str, chunks: list[MetricChunk]) -> int:
        """Store the chunks whose uid this run does not hold yet, keeping summaries right; return how many."""


class SyncableStore(Store, ChunkSource, ChunkSink):
    """A store that can be both ends of a sync (the local spool, a database server)."""


def chunk_source(store: Store) -> SyncableStore:
    """``store`` as the source of a sync, or a clear error when its backend cannot be one."""
    if not isinstance(store, SyncableStore):
        raise StoreError(f"a {type(store).__name__} cannot be synced from",
                         "sync from a local spool folder (SQLite) or a database server store")
    return store


def chunk_sink(store: Store) -> ChunkSink:
    """``store`` as the target of a sync, or a clear error when its backend cannot take chunks."""
    if not isinstance(store, ChunkSink):
        raise StoreError(f"a {type(store).__name__} cannot receive synced runs",
                         "sync to a PostgreSQL URL or a store folder")
    return store


def downsample_m4(series: MetricSeries, max_points: int) -> MetricSeries:
    """Keep, per bucket, the first, last, minimum and maximum points: spikes survive downsampling.

    A bucket holding NaN (a diverged loss) also keeps its first NaN point, so a chart still shows
    where the run broke; series with NaN use a fifth fewer buckets to stay within ``max_points``."""
    import numpy as np  # here: commands that never decode a metric history need not import numpy

    n = len(series)
    if max_points <= 0 or n <= max_points:
        return series
    nan_values = np.isnan(series.values)
    has_nan = bool(nan_values.any())
    buckets = max(1, max_points // (5 if has_nan else 4))
    size = -(-n // buckets)
    padded = np.full(buckets * size, np.nan)
    padded[:n] = series.values
    grid = padded.reshape(buckets, size)
    starts = np.arange(buckets) * size
    valid = starts < n
    all_nan = np.isnan(grid).all(1)
    filled_min = np.where(np.isnan(grid), np.inf, grid)
    filled_max = np.where(np.isnan(grid), -np.inf, grid)
    lo = starts + filled_min.argmin(1)
    hi = starts + filled_max.argmax(1)
    last = np.minimum(starts + size - 1, n - 1)
    kept = [starts[valid], last[valid], lo[valid & ~all_nan], hi[valid & ~all_nan]]
    if has_nan:
        nan_flat = np.zeros(buckets * size, dtype=bool)
        nan_flat[:n] = nan_values
        nan_grid = nan_flat.reshape(buckets, size)
        kept.append((starts + nan_grid.argmax(1))[valid & nan_grid.any(1)])
    index = np.unique(np.concatenate(kept))
    return MetricSeries(series.key, series.steps[index], series.times[index], series.values[index])


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks: how artifacts are identified."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
