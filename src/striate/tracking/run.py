"""The client side of a run: ``striate.init`` / ``run.log`` / ``run.finish``.

``log()`` only appends to an in-memory queue; a background thread batches the
points into the store every ``FLUSH_INTERVAL_S`` (so a killed process loses at most
that much), refreshes the run's heartbeat and samples system metrics, so training
never waits on the database.

What ``log()`` queues is cheap to make and cheap to batch: the mapping's keys as a tuple and its
values packed into float64 bytes at call time (struct converts each value with ``__float__``,
the same rule as ``float()`` minus text, so a tensor updated in place later logs its value at the
call, and a string or 10**400 is refused at the call). The writer joins the packed values of all
points with the same keys into one array, and writes one chunk per key per flush (the store keeps
the steps and times of a flush once for all its keys).
"""

from __future__ import annotations

import atexit
import operator
import os
import re
import socket
import struct
import sys
import threading
import time
import typing
import uuid
import weakref
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from striate.errors import ConfigError, StoreError
from striate.tracking.store import MetricSeries, RunRecord, Store, is_remote, open_store
from striate.tracking.store.base import RUN_STATUSES, ClaimLostError, Owner
from striate.tracking.store.limits import check_keys, check_length, check_record
from striate.tracking.store.liveness import HEARTBEAT_INTERVAL_S, process_start_time

FLUSH_INTERVAL_S = 0.05
SYNC_INTERVAL_S = 1.0  # remote stores: how often the spool is copied across
SYSTEM_METRICS_INTERVAL_S = 5.0
CONSOLE_INTERVAL_S = 5.0  # how often captured console output is written to console.log while running
_active_run: Run | None = None
_UNFINISHED: weakref.WeakSet[Run] = weakref.WeakSet()  # finished at interpreter exit (atexit below)


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
        # Set by the writer when `striate stop` (or the server) asked this run to stop: the training
        # loop reads it after each step (train/session.py) and ends as `stopped` with a checkpoint.
        self.stop_requested_at: float | None = None
        # The process that holds the run's claim (this one): every point batch and the final status
        # are written only while the store still names it, so a run resumed elsewhere is not written twice.
        self._owner = Owner(record.host, record.pid, record.pid_started_at)
        self._lost: ClaimLostError | None = None  # set when another process took the run over
        self.artifact_dir = Path(store.artifact_root) / record.id
        self._queue: deque[_Point] = deque()
        # What log() needs for the usual call, read with one attribute load: (count, values_of, pack,
        # keys, enqueue). keys: those of the last call, already checked to be strings; values_of: a dict
        # with those keys -> its values in that order (one itemgetter call); pack: packs as many numbers;
        # count: len(keys) while that fast path applies, -1 when it does not: before the first call, for
        # one key, and once the run takes no more points (finished, or its claim lost), so the length
        # check in log() also stands for the status checks (see _close_log).
        self._usual: _Usual = (-1, tuple, _packer(0), (), self._queue.append)
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
            if not store.files_are_local and any(a["path"] == "console.log" for a in record.artifacts):
                log_file = store.artifact_file(record.id, "console.log")  # a team server's: fetched, checked
            earlier = log_file.read_bytes() if log_file.is_file() else b""
            marker = f"\n[--- resumed {time.strftime('%Y-%m-%d %H:%M:%S')} ---]\n".encode() if earlier else b""
            self._console_earlier = earlier + marker
            self._console = ConsoleCapture()
            self._console.start()
            # The run owns its capture: a run dropped without finish() (a notebook cell, a failed test)
            # stops copying the console when it is garbage-collected, so nothing outlives its run.
            weakref.finalize(self, self._console.stop)
        # The writer thread holds the run weakly, so an abandoned run can be collected (and its thread ends).
        self._writer = threading.Thread(target=_write_loop, args=(weakref.ref(self), self._stopped, self._wake),
                                        name=f"striate-writer-{self.id[:8]}", daemon=True)
        self._writer.start()
        _UNFINISHED.add(self)

    # -- logging ----------------------------------------------------------------------------------
    def log(self, data: Mapping[str, Any], step: int | None = None) -> None:
        """Record metric values at ``step`` (the next step when omitted). Never blocks on the store."""
        count, values_of, pack, keys, enqueue = self._usual
        if type(data) is dict and len(data) == count:
            # The usual call: a dict with as many keys as the last call, on a run that takes points
            # (count is -1 otherwise). One C call fetches its values in the known key order (a
            # KeyError means other keys), one packs them.
            try:
                packed = pack(*values_of(data))
            except KeyError:
                keys, packed = self._read(data)
            except (struct.error, TypeError, ValueError, OverflowError):
                raise _bad_value(data) from None
        else:
            self._check_open()
            keys, packed = self._read(data)
        if step is None:
            step = self._step + 1
        if step > self._step:
            self._step = step
        enqueue((step, _now(), keys, packed))

    def _check_open(self) -> None:
        """Raise when the run takes no more points: its claim was lost, or it has ended."""
        if self._lost is not None:
            raise self._lost
        if self.status != "running":
            raise ConfigError(f"run {self.name} is {self.status}: nothing can be logged to it any more",
                              "log before run.finish(), or start a new run with striate.init()")

    def _close_log(self) -> None:
        """Turn off log()'s fast path: every later call goes through _check_open. Called after
        setting self._lost or self.status (in that order, so that _read cannot turn it back on)."""
        self._usual = (-1, *self._usual[1:])

    def _read(self, data: Mapping[str, Any]) -> tuple[tuple[str, ...], bytes]:
        """Keys and packed values of any mapping; remembers new keys (checked to be strings once)."""
        keys = tuple(data)
        _, values_of, pack, known, enqueue = self._usual
        if keys != known:
            _check_keys(keys)
            pack = _packer(len(keys))
            # itemgetter returns a tuple only for two keys or more; one key takes this slower path
            count, values_of = (len(keys), operator.itemgetter(*keys)) if len(keys) > 1 else (-1, tuple)
            self._usual = (count, values_of, pack, keys, enqueue)
            if self._lost is not None or self.status != "running":
                # The writer lost the claim meanwhile (after _check_open): keep the fast path off.
                self._close_log()
        try:
            # Converted now, not when the writer flushes: a tensor or array updated in place
            # afterwards must not change what was logged.
            return keys, pack(*data.values())
        except (struct.error, TypeError, ValueError, OverflowError):
            raise _bad_value(data) from None

    def log_artifact(self, path: str | os.PathLike[str], name: str | None = None, kind: str = "file") -> str:
        """Copy a file into the run's artifact folder (unless already there) and record its SHA-256."""
        self._check_claim()
        source = Path(path)
        if not source.is_file():
            raise ConfigError(f"artifact {source} is not a file", "pass the path of an existing file")
        check_length("artifact path", name or source.name, "artifact_path")
        # The store copies it (hashing as it copies) into the run's folder: the path is checked to stay there,
        # and to be one a team server takes too (a run recorded here stays sendable to one later).
        return str(self.store.put_artifact_file(self.id, name or source.name, source, kind)["sha256"])

    def save_summary(self) -> None:
        """Write the summary as it stands now (it is otherwise written at finish)."""
        self._check_claim()
        self.store.update_run(self.id, summary=_jsonable(self.summary))

    def set(self, **fields: Any) -> None:
        """Store top-level fields now (environment, dataset, model, notes)."""
        self._check_claim()
        self.store.update_run(self.id, **fields)

    def _check_claim(self) -> None:
        """Raise the ClaimLostError when another process has taken this run over."""
        if self._lost is not None:
            raise self._lost

    @property
    def claim_lost(self) -> bool:
        """Whether another process took this run over (resumed it): nothing more is written to it."""
        return self._lost is not None

    # -- ending -----------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write every queued point now."""
        self._check_claim()
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
            if self._lost is None:
                self._drain()
        except ClaimLostError:
            pass  # reported below
        except Exception as exc:
            raise StoreError(f"could not write run {self.name}'s last points to the store: {exc}",
                             "check the store's disk space and permissions") from None
        finally:
            if self._console is not None:
                self._console.stop()
        if self._lost is None:
            self._save_console()
            self.status = status
            self._close_log()
            now = time.time()
            try:
                self.store.update_run(self.id, owner=self._owner, status=status, ended_at=now, heartbeat_at=now,
                                      summary=_jsonable(self.summary), error=error)
            except ClaimLostError as exc:
                self._lost = exc
        if self._lost is not None:
            self.status = "lost"  # not running any more here; a second finish() (a `with` block's) is a no-op
            self._close_log()
            self._forget()
            raise self._lost
        if self._syncer is not None:
            self._sync()
            if self.sync_error is not None:
                print(f"warning: run {self.name} is kept in the local spool ({self.store.artifact_root}/..): "
                      f"the remote store failed ({self.sync_error}); send it later with `striate sync --to URL`",
                      file=sys.stderr)
        self._forget()

    def _forget(self) -> None:
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
    def _tick(self, clock: _WriterClock) -> None:
        """One round of the writer: system metrics, a flush with the heartbeat, console.log, sync."""
        now = time.time()
        if self._system_metrics and now - clock.last_sample >= SYSTEM_METRICS_INTERVAL_S:
            if clock.sampler is None:
                from striate.tracking.capture import SystemSampler

                clock.sampler = SystemSampler()
            clock.last_sample = now
            self._queue.append(_point(max(self._step, 0), now, clock.sampler.sample()))
        beat = now if now - clock.last_beat >= HEARTBEAT_INTERVAL_S else None
        try:
            self._drain(heartbeat_at=beat)
            if beat is not None:
                clock.last_beat = beat
        except Exception:  # keep the points queued; the next flush or finish() retries and reports
            pass
        if self._lost is not None:
            return
        if self._console is not None and now - clock.last_console >= CONSOLE_INTERVAL_S:
            clock.last_console = now
            try:
                self._save_console()
            except Exception:  # a full disk must not stop the training; finish() tries again and reports
                pass
        if self._syncer is not None and now - clock.last_sync >= SYNC_INTERVAL_S:
            clock.last_sync = now
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
            popleft = self._queue.popleft  # popping, not swapping the deque: log() may append meanwhile
            taken = [popleft() for _ in range(len(self._queue))]
            if not taken and heartbeat_at is None:
                return
            try:
                asked = self.store.log_batch(self.id, _to_series(taken), heartbeat_at=heartbeat_at,
                                             owner=self._owner)
                if asked is not None and self.stop_requested_at is None:
                    self.stop_requested_at = asked
            except ClaimLostError as exc:
                # Taken over (resumed elsewhere): these points are not ours to write; stop the writer,
                # and the next log() or finish() tells the training loop.
                self._lost = exc
                self._close_log()
                self._stopped.set()
                raise
            except Exception:
                self._queue.extendleft(reversed(taken))
                raise


_Point = tuple[int, float, tuple[str, ...], bytes]  # step, time, keys, the values as packed float64
_Usual = tuple[int, typing.Callable[[Any], Any], typing.Callable[..., bytes], tuple[str, ...],
               typing.Callable[[_Point], None]]  # see Run.__init__
_now = time.time
_first, _second, _third, _fourth = (operator.itemgetter(i) for i in range(4))
_PACKERS: dict[int, typing.Callable[..., bytes]] = {}


def _packer(count: int) -> typing.Callable[..., bytes]:
    """Packs ``count`` numbers into little-endian float64 bytes, refusing what is not a number."""
    pack = _PACKERS.get(count)
    if pack is None:
        pack = _PACKERS[count] = struct.Struct(f"<{count}d").pack
    return pack


def _check_keys(keys: tuple[Any, ...]) -> None:
    for key in keys:
        if type(key) is not str:
            raise ConfigError(f"cannot log {key!r}: metric values must be numbers, keys strings",
                              "log floats or ints (call .item() on tensors)")
    check_keys("metric key", keys)


def _bad_value(data: Mapping[str, Any]) -> ConfigError:
    """The error for the first value of ``data`` that is not a number."""
    for key, value in data.items():
        try:
            _packer(1)(value)
        except (struct.error, TypeError, ValueError, OverflowError):
            return ConfigError(f"cannot log {key!r}={value!r}: metric values must be numbers, keys strings",
                               "log floats or ints (call .item() on tensors)")
    return ConfigError(f"cannot log {dict(data)!r}: its values changed while being read", "log plain numbers")


def _point(step: int, when: float, data: Mapping[str, Any]) -> _Point:
    """A queued point, made the way log() makes it (for the writer's own system metrics)."""
    keys = tuple(data)
    _check_keys(keys)
    try:
        return step, when, keys, _packer(len(keys))(*data.values())
    except (struct.error, TypeError, ValueError, OverflowError):
        raise _bad_value(data) from None


@atexit.register
def _finish_at_exit() -> None:
    """A script that ends without run.finish() keeps what it logged: its runs are finished here
    (failed when the script died of an uncaught exception), before the daemon writers are dropped."""
    died_of = getattr(sys, "last_type", None)
    for run in list(_UNFINISHED):
        if run.status != "running":
            continue
        try:
            if died_of is None:
                run.finish("finished")
            else:
                run.finish("failed", error=f"{died_of.__name__}: {getattr(sys, 'last_value', '')}")
        except Exception as exc:  # noqa: BLE001 - at exit there is no one left to raise to
            print(f"warning: could not finish run {run.name} at exit: {exc}", file=sys.stderr)


@dataclass
class _WriterClock:
    """When the writer last did each of its periodic jobs."""

    last_beat: float = 0.0
    last_sample: float = 0.0
    last_sync: float = 0.0
    last_console: float = 0.0
    sampler: Any = None


def _write_loop(ref: weakref.ref[Run], stopped: threading.Event, wake: threading.Event) -> None:
    clock = _WriterClock()
    while not stopped.is_set():
        wake.wait(FLUSH_INTERVAL_S)
        run = ref()
        if run is None:  # abandoned without finish(): nothing left to write for
            return
        run._tick(clock)
        del run  # hold the run only while working for it


def _to_series(points: list[_Point]) -> list[MetricSeries]:
    """Queued points -> one series per key, in logging order. Points with the same keys are joined
    into one (points x keys) array at once, so the cost per point is a few list operations."""
    if not points:
        return []
    steps = np.fromiter(map(_first, points), dtype=np.int64, count=len(points))
    times = np.fromiter(map(_second, points), dtype=np.float64, count=len(points))
    keys_t = list(map(_third, points))
    packed_t = list(map(_fourth, points))
    first = keys_t[0]
    if keys_t.count(first) == len(keys_t):  # the usual case: every point has the same keys
        groups: dict[tuple[str, ...], list[int] | None] = {first: None}
    else:
        groups = {}
        for index, keys in enumerate(keys_t):
            listed = groups.setdefault(keys, [])
            assert listed is not None
            listed.append(index)
    columns: dict[str, list[tuple[np.ndarray | None, np.ndarray]]] = {}
    for keys, indices in groups.items():
        if not keys:
            continue
        if indices is None:
            blob, where = b"".join(packed_t), None
        else:
            blob, where = b"".join([packed_t[i] for i in indices]), np.asarray(indices)
        block = np.frombuffer(blob, dtype="<f8").reshape(-1, len(keys))
        for column, key in enumerate(keys):
            columns.setdefault(key, []).append((where, block[:, column]))
    series = []
    for key, parts in columns.items():
        if len(parts) == 1:
            where, values = parts[0]
        else:  # a key logged with different companions: put its points back in logging order
            where = np.concatenate([p[0] for p in parts if p[0] is not None])
            values = np.concatenate([p[1] for p in parts])
            order = np.argsort(where, kind="stable")
            where, values = where[order], values[order]
        if where is None:
            series.append(MetricSeries(key, steps, times, values))
        else:
            series.append(MetricSeries(key, steps[where], times[where], values))
    return series


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
    record = RunRecord(id=run_id, name=name or _default_name(run_id, model), project=project, status="running",
                       created_at=now, ended_at=None, heartbeat_at=now, model=model,
                       config=_jsonable(dict(config or {})), tags=list(tags or []), notes=notes,
                       host=socket.gethostname(), pid=os.getpid(), pid_started_at=process_start_time(),
                       reproduction_of=reproduction_of)
    check_record(record)  # what a local store takes must fit a server's columns too (sync)
    try:
        opened.create_run(record)
    except Exception as exc:
        raise StoreError(f"cannot record a new run in the store: {exc}",
                         "check that the store is writable, or choose another with --store") from None
    if not isinstance(store, Store) and is_remote(store):
        syncer = Syncer(opened, str(store), run_id)
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
    host, pid, started = socket.gethostname(), os.getpid(), process_start_time()
    if not store.claim_run(record.id, host=host, pid=pid, pid_started_at=started):
        raise ConfigError(f"run {record.name} is already running", "wait for it, or stop it first")
    record.host, record.pid, record.pid_started_at = host, pid, started  # this process holds the claim now
    store.truncate_metrics(record.id, after_step)
    record.status = "running"
    run = Run(store, record, capture_console=capture_console)
    run.summary.update(record.summary)
    run._step = after_step
    global _active_run
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
# No architecture names here (a LeNet-5 run once came out as `quick-vgg-8231`): the model, when known,
# leads the name instead.
_NOUNS = ("birch", "brook", "cedar", "cliff", "cloud", "coral", "delta", "dune", "ember", "fern", "fjord",
          "grove", "harbor", "heath", "lagoon", "meadow", "mesa", "pebble", "ridge", "tide")


def _default_name(run_id: str, model: str | None = None) -> str:
    """``lenet5-quick-fern-1a16`` for a LeNet-5 run: the model (a spec file by its stem), then two words
    from the run id and its first four characters."""
    n = int(run_id[:8], 16)
    words = f"{_ADJECTIVES[n % len(_ADJECTIVES)]}-{_NOUNS[(n // 20) % len(_NOUNS)]}-{run_id[:4]}"
    if not model:
        return words
    stem = re.sub(r"[^A-Za-z0-9]+", "-", Path(model).stem if model.lower().endswith((".yaml", ".yml", ".json"))
                  else model).strip("-").lower()[:40]
    return f"{stem}-{words}" if stem else words
