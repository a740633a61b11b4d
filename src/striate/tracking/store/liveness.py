"""Is a run's process still alive? Heartbeat, PID plus process start time, and the crash policy.

A running run records its host, PID and the start time of its process, and refreshes a heartbeat
every HEARTBEAT_INTERVAL_S. On this host the process itself is asked: a run whose process is alive
(same PID and start time; a PID the system has since given to another process is dead) is never
crashed, however old its heartbeat (a suspended batch job is alive), and one whose process is gone is
crashed at once. Only where the process cannot be looked at (another host, no PID recorded) is a
heartbeat older than the stale threshold taken for a crash.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

HEARTBEAT_INTERVAL_S = 5.0
STALE_AFTER_S = 30.0  # a running run on another host whose heartbeat is older than this was killed
STALE_ENV = "STRIATE_STALE_AFTER_S"  # overrides STALE_AFTER_S (tests shorten it; slow shared disks lengthen it)
START_TIME_TOLERANCE_S = 1.0  # process start times are read back with this much rounding


@dataclass(frozen=True)
class RunningProcess:
    """Who claims to be recording a run: what the crash policy looks at."""

    run_id: str
    host: str | None
    pid: int | None
    pid_started_at: float | None
    heartbeat_at: float


def stale_after_s() -> float:
    """Seconds of heartbeat silence after which a run whose process cannot be checked is crashed."""
    try:
        value = float(os.environ.get(STALE_ENV, ""))
    except ValueError:  # unset or not a number: the default
        return STALE_AFTER_S
    return value if value > 0 else STALE_AFTER_S


def process_start_time() -> float | None:
    """This process's start time (Unix seconds), or None where psutil cannot tell."""
    try:
        import psutil

        return float(psutil.Process().create_time())
    except Exception:  # psutil missing or the platform hides it: liveness falls back to the heartbeat
        return None


def process_state(pid: int, started_at: float | None) -> bool | None:
    """Whether process ``pid`` on this host is alive (and, when ``started_at`` is known, the same
    process): True, False, or None when this host cannot tell."""
    try:
        import psutil
    except ImportError:  # without psutil only the heartbeat can tell
        return None
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started_at is None or abs(process.create_time() - started_at) < START_TIME_TOLERANCE_S
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # it exists; we just may not look at it
        return True
    except Exception:  # the platform hides processes: fall back to the heartbeat
        return None


def process_alive(pid: int, started_at: float | None) -> bool:
    """Whether process ``pid`` exists on this host and, when ``started_at`` is known, is the same process."""
    return process_state(pid, started_at) is not False


def is_crashed(run: RunningProcess, now: float, this_host: str | None = None) -> bool:
    """The crash policy: on this host, whether the recording process is gone; elsewhere (or when
    the process cannot be checked), whether the heartbeat has been silent too long."""
    host = this_host if this_host is not None else socket.gethostname()
    if run.host == host and run.pid is not None:
        state = process_state(run.pid, run.pid_started_at)
        if state is not None:
            return not state
    return run.heartbeat_at < now - stale_after_s()


def crashed_runs(running: list[RunningProcess], now: float) -> list[str]:
    """Ids of the runs among ``running`` that the policy takes for crashed."""
    host = socket.gethostname()
    return [r.run_id for r in running if is_crashed(r, now, host)]
