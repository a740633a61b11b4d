"""The client side of a run: ``striate.init`` / ``run.log`` / ``run.finish``.

``log()`` only appends to an in-memory queue; a background thread batches the
points into the store every ``FLUSH_INTERVAL_S`` (so a killed process loses at most
that much), refreshes the run's heartbeat and samples system metrics, so training
never waits on the database.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import threading
import time
import typing
import uuid
from collections import deque
from pathlib import Path
from typing import Any, Iterable, Mapping

from striate.errors import ConfigError, StoreError
from striate.tracking.store import MetricSeries, RunRecord, Store, is_remote, open_store
from striate.tracking.store.base import HEARTBEAT_INTERVAL_S, RUN_STATUSES, file_sha256

if typing.TYPE_CHECKING:
    from striate.tracking.store.sql import SqlStore

FLUSH_INTERVAL_S = 0.05
SYNC_INTERVAL_S = 1.0  # remote stores: how often the spool is copied across
SYSTEM_METRICS_INTERVAL_S = 5.0
CONSOLE_INTERVAL_S = 5.0  # how often captured console output is written to console.log while running
_active_run: Run | None = None


class Run:
    """A run being recorded. Create it with :func:`striate.init`."""

    def __init__(self, store: Store, record: RunRecord, capture_console: bool = False,
                 system_metrics: bool = True, syncer: Any = None) -> None:
        self.store = store
        self.id = record.id
        self.name = record.name
        self.project = record.project
        self.config = record.config
        self.summary: dict[str, Any] = {}
        self.status = "running"
        self.artifact_dir = Path(store.artifact_root) / record.id
        self._queue: deque[tuple[int, float, dict[str, Any]]] = deque()
        self._step = -1
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._drain_lock = threading.Lock()
        self._system_metrics = system_metrics
        self._syncer = syncer  # set when the store is remote: self.store is then the local spool
        self.sync_error: str | None = None
        self._console = None
        self._console_written = b""
        if capture_console:
            from striate.tracking.capture import ConsoleCapture

            # A resumed run keeps the console output of its earlier parts; this part follows a marker.
            log_file = self.artifact_dir / "console.log"
            earlier = log_file.read_bytes() if log_file.is_file() else b""
            marker = f"\n[--- resumed {time.strftime('%Y-%m-%d %H:%M:%S')} ---]\n".encode() if earlier else b""
            self._console_earlier = earlier + marker
            self._console = ConsoleCapture()
            self._console.start()
        self._writer = threading.Thread(target=self._write_loop, name=f"striate-writer-{self.id[:8]}", daemon=True)
        self._writer.start()

    # -- logging ----------------------------------------------------------------------------------
    def log(self, data: Mapping[str, Any], step: int | None = None) -> None:
        """Record metric values at ``step`` (the next step when omitted). Never blocks on the store."""
        if self.status != "running":
            raise ConfigError(f"run {self.name} is {self.status}: nothing can be logged to it any more",
                              "log before run.finish(), or start a new run with striate.init()")
        values: dict[str, float] = {}
        for key, value in data.items():
            try:
                # Converted now, not when the writer flushes: a tensor or array updated in place
                # afterwards must not change what was logged.
                values[key] = value if type(value) is float else float(value)
                if type(key) is not str or isinstance(value, (str, bytes)):
                    raise TypeError
            except (TypeError, ValueError, OverflowError):
                raise ConfigError(f"cannot log {key!r}={value!r}: metric values must be numbers, keys strings",
                                  "log floats or ints (call .item() on tensors)") from None
        if step is None:
            step = self._step + 1
        if step > self._step:
            self._step = step
        self._queue.append((step, time.time(), values))

    def log_artifact(self, path: str | os.PathLike[str], name: str | None = None, kind: str = "file") -> str:
        """Copy a file into the run's artifact folder (unless already there) and record its SHA-256."""
        source = Path(path)
        if not source.is_file():
            raise ConfigError(f"artifact {source} is not a file", "pass the path of an existing file")
        target = self.artifact_dir / (name or source.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.resolve() != target.resolve():
            shutil.copyfile(source, target)
        digest = file_sha256(target)
        rel = str(target.relative_to(self.artifact_dir))
        self.store.add_artifact(self.id, rel, kind, target.stat().st_size, digest)
        return digest

    def save_summary(self) -> None:
        """Write the summary as it stands now (it is otherwise written at finish)."""
        self.store.update_run(self.id, summary=_jsonable(self.summary))

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
        try:
            self._drain()
        except Exception as exc:
            raise StoreError(f"could not write run {self.name}'s last points to the store: {exc}",
                             "check the store's disk space and permissions") from None
        finally:
            if self._console is not None:
                self._console.stop()
        self._save_console()
        self.status = status
        now = time.time()
        self.store.update_run(self.id, status=status, ended_at=now, heartbeat_at=now,
                              summary=_jsonable(self.summary), error=error)
        if self._syncer is not None:
            self._sync()
            if self.sync_error is not None:
                print(f"warning: run {self.name} is kept in the local spool ({self.store.artifact_root}/..): "
                      f"the remote store failed ({self.sync_error}); send it later with `striate sync --to URL`",
                      file=sys.stderr)
        global _active_run
        if _active_run is self:
            _active_run = None

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
            self.finish("finished")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.finish("stopped")
        else:
            self.finish("failed", error=f"{exc_type.__name__}: {exc}")

    # -- background writer ------------------------------------------------------------------------
    def _write_loop(self) -> None:
        last_beat = last_sample = last_sync = last_console = 0.0
        sampler = None
        if self._system_metrics:
            from striate.tracking.capture import SystemSampler

            sampler = SystemSampler()
        while not self._stopped.is_set():
            self._wake.wait(FLUSH_INTERVAL_S)
            now = time.time()
            if sampler is not None and now - last_sample >= SYSTEM_METRICS_INTERVAL_S:
                last_sample = now
                self._queue.append((max(self._step, 0), now, sampler.sample()))
            beat = now if now - last_beat >= HEARTBEAT_INTERVAL_S else None
            try:
                self._drain(heartbeat_at=beat)
                if beat is not None:
                    last_beat = beat
            except Exception:  # keep the points queued; the next flush or finish() retries and reports
                pass
            if self._console is not None and now - last_console >= CONSOLE_INTERVAL_S:
                last_console = now
                try:
                    self._save_console()
                except Exception:  # a full disk must not stop the training; finish() tries again and reports
                    pass
            if self._syncer is not None and now - last_sync >= SYNC_INTERVAL_S:
                last_sync = now
                self._sync()

    def _save_console(self) -> None:
        """Write console.log (earlier parts + this one) and record it, when there is something new.

        Called every CONSOLE_INTERVAL_S by the writer and at finish, so a killed run keeps its output
        up to the last write."""
        if self._console is None:
            return
        contents = self._console.contents()
        if not contents or contents == self._console_written:
            return
        log_file = self.artifact_dir / "console.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = log_file.with_name(log_file.name + ".tmp")
        tmp.write_bytes(self._console_earlier + contents)
        os.replace(tmp, log_file)
        self.log_artifact(log_file, "console.log", kind="console")
        self._console_written = contents

    def _sync(self) -> None:
        try:
            self._syncer.sync()
            self.sync_error = None
        except Exception as exc:  # the server is away: the spool keeps everything; try again later
            self.sync_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"

    def _drain(self, heartbeat_at: float | None = None) -> None:
        with self._drain_lock:
            taken = []
            queue = self._queue
            while queue:
                taken.append(queue.popleft())
            if not taken and heartbeat_at is None:
                return
            try:
                self.store.log_batch(self.id, _to_series(taken), heartbeat_at=heartbeat_at)
            except Exception:
                queue.extendleft(reversed(taken))
                raise


def _to_series(points: Iterable[tuple[int, float, dict[str, Any]]]) -> list[MetricSeries]:
    import numpy as np

    grouped: dict[str, tuple[list[int], list[float], list[float]]] = {}
    for step, when, data in points:
        for key, value in data.items():
            bucket = grouped.get(key)
            if bucket is None:
                bucket = grouped[key] = ([], [], [])
            bucket[0].append(step)
            bucket[1].append(when)
            bucket[2].append(value)
    # log() has already turned every value into a float.
    return [MetricSeries(key, np.asarray(steps, np.int64), np.asarray(times, np.float64),
                         np.asarray(values, np.float64)) for key, (steps, times, values) in grouped.items()]


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
         model: str | None = None, notes: str = "", capture_console: bool = True,
         system_metrics: bool = True, reproduction_of: str | None = None, capture_environment: bool = True) -> Run:
    """Start a run in ``store`` (default ``./striate-runs`` or ``$STRIATE_STORE``) and make it the active run.

    By default the run captures its environment (git state and diff, packages, Python/torch/CUDA,
    OS, hardware, command line; a snapshot of source files git cannot restore), the console output
    and system metrics; each can be switched off.
    """
    global _active_run
    syncer = None
    if not isinstance(store, Store) and is_remote(store):
        # Remote store: record into the local spool; a Syncer copies it across (see tracking/spool.py).
        from striate.tracking.spool import Syncer, spool_location

        opened = open_store(spool_location())
    else:
        opened = store if isinstance(store, Store) else open_store(store)
    now = time.time()
    run_id = uuid.uuid4().hex
    record = RunRecord(id=run_id, name=name or _default_name(run_id), project=project, status="running",
                       created_at=now, ended_at=None, heartbeat_at=now, model=model,
                       config=_jsonable(dict(config or {})), tags=list(tags or []), notes=notes,
                       host=socket.gethostname(), pid=os.getpid(), pid_started_at=_process_start_time(),
                       reproduction_of=reproduction_of)
    try:
        opened.create_run(record)
    except Exception as exc:
        raise StoreError(f"cannot record a new run in the store: {exc}",
                         "check that the store is writable, or choose another with --store") from None
    if not isinstance(store, Store) and is_remote(store):
        syncer = Syncer(typing.cast("SqlStore", opened), str(store), run_id)
    run = Run(opened, record, capture_console=capture_console, system_metrics=system_metrics, syncer=syncer)
    _active_run = run
    if capture_environment:
        from striate.tracking.capture import environment, snapshot_code

        try:
            env = environment()
            run.set(environment=env)
            snapshot_code(run, env)
        except BaseException as exc:  # leave nothing running or redirected behind
            run.finish("failed", error=f"capturing the environment failed: {type(exc).__name__}: {exc}")
            raise
    return run


def reattach(store: Store, run_id: str, after_step: int, capture_console: bool = False) -> Run:
    """Continue recording an existing run (``striate resume``): points after ``after_step`` are dropped
    so the continued series has no duplicates, and the run is `running` again under this process."""
    record = store.get_run(run_id)
    if not store.claim_run(record.id, host=socket.gethostname(), pid=os.getpid(),
                           pid_started_at=_process_start_time()):
        raise ConfigError(f"run {record.name} is already running", "wait for it, or stop it first")
    store.truncate_metrics(record.id, after_step)
    record.status = "running"
    run = Run(store, record, capture_console=capture_console)
    run.summary.update(record.summary)
    run._step = after_step
    global _active_run
    _active_run = run
    return run


def _process_start_time() -> float | None:
    try:
        import psutil

        return float(psutil.Process().create_time())
    except Exception:  # psutil missing or the platform hides it: liveness falls back to the heartbeat
        return None


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
