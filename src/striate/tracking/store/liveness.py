"""Is a run's process still alive? Heartbeat, PID plus process start time, and the crash policy.

A running run records its host, PID and the start time of its process, and refreshes a heartbeat
every HEARTBEAT_INTERVAL_S. A run is taken for crashed when its heartbeat is older than
STALE_AFTER_S (any host), or at once when it ran on this host and its process is gone — where
"gone" includes a PID the system has since given to another process (the start time differs).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

HEARTBEAT_INTERVAL_S = 5.0
STALE_AFTER_S = 30.0  # a running run whose heartbeat is older than this was killed
START_TIME_TOLERANCE_S = 1.0  # process start times are read back with this much rounding


@dataclass(frozen=True)
class RunningProcess:
    """Who claims to be recording a run: what the crash policy looks at."""

    run_id: str
    host: str | None
    pid: int | None
    pid_started_at: float | None
    heartbeat_at: float


def process_start_time() -> float | None:
    """This process's start time (Unix seconds), or None where psutil cannot tell."""
    try:
        import psutil

        return float(psutil.Process().create_time())
    except Exception:  # psutil missing or the platform hides it: liveness falls back to the heartbeat
        return None


def process_alive(pid: int, started_at: float | None) -> bool:
    """Whether process ``pid`` exists on this host and, when ``started_at`` is known, is the same process."""
    try:
        import psutil
    except ImportError:  # without psutil only the heartbeat can tell
        return True
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started_at is None or abs(process.create_time() - started_at) < START_TIME_TOLERANCE_S
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # it exists; we just may not look at it
        return True


def is_crashed(run: RunningProcess, now: float, this_host: str | None = None) -> bool:
    """The crash policy: heartbeat silent too long, or (same host) the recording process is gone."""
    if run.heartbeat_at < now - STALE_AFTER_S:
        return True
    host = this_host if this_host is not None else socket.gethostname()
    return run.host == host and run.pid is not None and not process_alive(run.pid, run.pid_started_at)


def crashed_runs(running: list[RunningProcess], now: float) -> list[str]:
    """Ids of the runs among ``running`` that the policy takes for crashed."""
    host = socket.gethostname()
    return [r.run_id for r in running if is_crashed(r, now, host)]
