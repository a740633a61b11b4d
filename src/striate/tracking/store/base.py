"""The one store interface every backend (SQLite and PostgreSQL now; HTTP later) implements.

:class:`Store` is what runs, the CLI and the read API use. What syncing a spool needs is separate:
a :class:`ChunkSource` hands out the metric chunks a sync has not sent yet, a :class:`ChunkSink`
takes them idempotently; :class:`SyncableStore` is both.
"""

from __future__ import annotations

import abc
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
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


class ArtifactMissingError(StoreError):
    """The store holds no file for this artifact (it was never recorded, or its file is gone)."""

    http_status = 404


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

    artifact_root: str  # the folder of run artifact files (for a team server: this machine's cache of them)
    files_are_local = True  # artifact_root holds the stored files themselves (False: a cache of a server's)

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
    def put_artifact_file(self, run_id: str, path: str, source: Path, kind: str = "file") -> dict[str, Any]:
        """Store the bytes of ``source`` as the run's artifact ``path`` and record it (SHA-256 computed while
        the bytes are copied; the record is written only once the bytes are stored). Returns the record:
        path, kind, size, sha256. StoreError for a path that could leave the run's folder."""

    @abc.abstractmethod
    def artifact_file(self, run_id: str, path: str) -> Path:
        """A local file holding the bytes of the run's artifact ``path``: the stored file itself for a
        store with a local artifact folder, a verified download in a local cache for a team server.
        StoreError when the path is unsafe or the file is missing."""

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


ARTIFACT_PATH_MAX = 1000  # characters (the artifacts table's path column)
_SCHEME_OR_DRIVE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def artifact_path_problem(path: object) -> str | None:
    """Why ``path`` cannot be an artifact path inside a run's folder (None when it can).

    An artifact path is stored text that ends up joined to a folder or an object key, and may come from
    an imported record or a hostile client: it must be relative POSIX text whose every segment names a
    file or folder — no absolute path, drive or URI scheme, no '..' or '.' or empty segment, no
    backslash, NUL or other control character, no '%' (an encoded separator or dot decoded twice) and
    no ';' (a path parameter), at most ARTIFACT_PATH_MAX characters."""
    if not isinstance(path, str) or not path:
        return "it is empty"
    if len(path) > ARTIFACT_PATH_MAX:
        return f"it is over {ARTIFACT_PATH_MAX} characters"
    if path.startswith("/"):
        return "it is an absolute path"
    if _SCHEME_OR_DRIVE.match(path):
        return "it starts with a drive or URI scheme"
    if any(ch < " " or ch == "\x7f" for ch in path):
        return "it holds a NUL or control character"
    for ch, what in (("\\", "a backslash"), ("%", "a '%' (percent-encoding)"), (";", "a ';' (path parameter)")):
        if ch in path:
            return f"it holds {what}"
    for segment in path.split("/"):
        if segment == "..":
            return "it holds a '..' segment"
        if segment in ("", "."):
            return "it holds an empty or '.' segment"
    return None


def check_artifact_path(path: str, run_id: str = "") -> str:
    """``path`` when it is a safe artifact path (see artifact_path_problem), else a StoreError naming why."""
    problem = artifact_path_problem(path)
    if problem is not None:
        whose = f" of run {run_id[:8]}" if run_id else ""
        raise StoreError(f"refusing artifact path {str(path)[:200]!r}{whose}: {problem}",
                         "use a relative path of plain names separated by '/' (e.g. checkpoints/epoch-001.pt); "
                         "a stored record with such a path was altered or imported from an untrusted source")
    return path


def confined_file(root: Path, run_id: str, path: str) -> Path:
    """``root``/``run_id``/``path`` after checking ``path`` and that, links resolved, it stays in the run's folder."""
    check_artifact_path(path, run_id)
    if not run_id or "/" in run_id or run_id in (".", "..") or artifact_path_problem(run_id):
        raise StoreError(f"run id {run_id[:80]!r} cannot name an artifact folder",
                         "the run's record was altered or comes from an untrusted source")
    folder = (Path(root) / run_id).resolve()
    target = (folder / path).resolve()
    if not target.is_relative_to(folder) or target == folder:
        raise StoreError(f"refusing artifact path {path[:200]!r} of run {run_id[:8]}: it leads out of the run's "
                         "artifact folder (through a link)", "remove the link from the run's artifact folder")
    return Path(root) / run_id / path


def copy_hashing(source: Path, target: Path) -> tuple[int, str]:
    """Copy ``source`` to ``target`` (through a temporary file beside it, then renamed into place), hashing
    the bytes as they are copied; (size, SHA-256). A file already at ``target`` is replaced."""
    from striate.archives import give_user_mode

    target.parent.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}-", suffix=".part", dir=target.parent)
    try:
        with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
            for block in iter(lambda: src.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
                dst.write(block)
        give_user_mode(Path(tmp_name))
        os.replace(tmp_name, target)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    return size, digest.hexdigest()
