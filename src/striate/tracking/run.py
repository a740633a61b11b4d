"""The client side of a run: ``striate.init`` / ``run.log`` / ``run.finish``.

``log()`` only appends to an in-memory queue; a background thread batches the
points into the store every ``FLUSH_INTERVAL_S`` and refreshes the run's heartbeat,
so training never waits on the database.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any, Iterable, Mapping

from striate.errors import ConfigError, StoreError
from striate.tracking.store import MetricSeries, RunRecord, Store, open_store
from striate.tracking.store.base import HEARTBEAT_INTERVAL_S, RUN_STATUSES

FLUSH_INTERVAL_S = 0.1
_active_run: Run | None = None


class Run:
    """A run being recorded. Create it with :func:`striate.init`."""

    def __init__(self, store: Store, record: RunRecord) -> None:
        self.store = store
        self.id = record.id
        self.name = record.name
        self.project = record.project
        self.config = record.config
        self.summary: dict[str, Any] = {}
        self.status = "running"
        self.artifact_dir = Path(store.artifact_root) / record.id
        self._queue: deque[tuple[int, float, Mapping[str, Any]]] = deque()
        self._step = -1
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._write_error: BaseException | None = None
        self._drain_lock = threading.Lock()
        self._writer = threading.Thread(target=self._write_loop, name=f"striate-writer-{self.id[:8]}", daemon=True)
        self._writer.start()

    # -- logging ----------------------------------------------------------------------------------
    def log(self, data: Mapping[str, Any], step: int | None = None) -> None:
        """Record metric values at ``step`` (the next step when omitted). Never blocks on the store."""
        if step is None:
            step = self._step + 1
        self._step = max(self._step, step)
        self._queue.append((step, time.time(), data))

    def log_artifact(self, path: str | os.PathLike[str], name: str | None = None, kind: str = "file") -> str:
        """Copy a file into the run's artifact folder (unless already there) and record its SHA-256."""
        source = Path(path)
        if not source.is_file():
            raise ConfigError(f"artifact {source} is not a file", "pass the path of an existing file")
        target = self.artifact_dir / (name or source.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.resolve() != target.resolve():
            shutil.copyfile(source, target)
        digest = hashlib.sha256()
        with target.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        rel = str(target.relative_to(self.artifact_dir))
        self.store.add_artifact(self.id, rel, kind, target.stat().st_size, digest.hexdigest())
        return digest.hexdigest()

    def set(self, **fields: Any) -> None:
        """Store top-level fields now (environment, dataset, model, notes)."""
        self.store.update_run(self.id, **fields)

    # -- ending -----------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write every queued point now."""
        self._drain()

    def finish(self, status: str = "finished", error: str | None = None) -> None:
        """Flush, stop the writer and record the final status and summary."""
        if status not in RUN_STATUSES or status == "running":
            raise ConfigError(f"invalid final status {status!r}", "use finished, failed, stopped or crashed")
        if self.status != "running":
            return
        self._stopped.set()
        self._wake.set()
        self._writer.join()
        self._drain()
        self.status = status
        self.store.update_run(self.id, status=status, ended_at=time.time(), heartbeat_at=time.time(),
                              summary=_jsonable(self.summary), error=error)
        global _active_run
        if _active_run is self:
            _active_run = None

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is None:
            self.finish("finished")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.finish("stopped")
        else:
            self.finish("failed", error=f"{exc_type.__name__}: {exc}")

    # -- background writer ------------------------------------------------------------------------
    def _write_loop(self) -> None:
        last_beat = 0.0
        while not self._stopped.is_set():
            self._wake.wait(FLUSH_INTERVAL_S)
            now = time.time()
            beat = now if now - last_beat >= HEARTBEAT_INTERVAL_S else None
            try:
                self._drain(heartbeat_at=beat)
                if beat is not None:
                    last_beat = beat
            except Exception as exc:  # keep the points queued; finish() retries and reports
                self._write_error = exc

    def _drain(self, heartbeat_at: float | None = None) -> None:
        with self._drain_lock:
            taken = []
            while self._queue:
                taken.append(self._queue.popleft())
            if not taken and heartbeat_at is None:
                return
            try:
                self.store.log_batch(self.id, _to_series(taken), heartbeat_at=heartbeat_at)
            except Exception:
                self._queue.extendleft(reversed(taken))
                raise


def _to_series(points: Iterable[tuple[int, float, Mapping[str, Any]]]) -> list[MetricSeries]:
    import numpy as np

    grouped: dict[str, tuple[list[int], list[float], list[float]]] = {}
    for step, when, data in points:
        for key, value in data.items():
            steps, times, values = grouped.setdefault(key, ([], [], []))
            steps.append(step)
            times.append(when)
            values.append(_as_float(key, value))
    return [MetricSeries(k, np.asarray(s, np.int64), np.asarray(t, np.float64), np.asarray(v, np.float64))
            for k, (s, t, v) in grouped.items()]


def _as_float(key: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    return value


def init(project: str = "default", name: str | None = None, config: Mapping[str, Any] | None = None,
         tags: list[str] | None = None, store: str | os.PathLike[str] | Store | None = None,
         model: str | None = None, notes: str = "") -> Run:
    """Start a run in ``store`` (default ``./striate-runs`` or ``$STRIATE_STORE``) and make it the active run."""
    global _active_run
    opened = store if isinstance(store, Store) else open_store(store)
    now = time.time()
    run_id = uuid.uuid4().hex
    record = RunRecord(id=run_id, name=name or _default_name(run_id), project=project, status="running",
                       created_at=now, ended_at=None, heartbeat_at=now, model=model,
                       config=_jsonable(dict(config or {})), tags=list(tags or []), notes=notes)
    try:
        opened.create_run(record)
    except Exception as exc:
        raise StoreError(f"cannot record a new run in the store: {exc}",
                         "check that the store is writable, or choose another with --store") from None
    run = Run(opened, record)
    _active_run = run
    return run


def active_run() -> Run | None:
    """The run started last by :func:`init` and not yet finished."""
    return _active_run


def log(data: Mapping[str, Any], step: int | None = None) -> None:
    """Log to the active run."""
    if _active_run is None:
        raise ConfigError("striate.log() called with no active run", "call striate.init(...) first")
    _active_run.log(data, step=step)


_ADJECTIVES = ("amber", "brisk", "calm", "deep", "eager", "fair", "glad", "keen", "lucid", "mild", "noble",
               "quick", "rapid", "sharp", "steady", "swift", "tidy", "vivid", "warm", "wise")
_NOUNS = ("alex", "conv", "filter", "gabor", "kernel", "lenet", "neuron", "pixel", "pool", "relu", "stride",
          "tensor", "vgg", "weight", "inception", "softmax", "gradient", "epoch", "feature", "channel")


def _default_name(run_id: str) -> str:
    n = int(run_id[:8], 16)
    return f"{_ADJECTIVES[n % len(_ADJECTIVES)]}-{_NOUNS[(n // 20) % len(_NOUNS)]}-{run_id[:4]}"
