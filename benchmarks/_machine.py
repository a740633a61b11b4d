"""Shared by the benchmark scripts: machine-noise accounting and the identity of what was measured."""

from __future__ import annotations

import os
import platform
import resource
import subprocess


def cpu_seconds() -> tuple[float, float]:
    """Busy CPU seconds so far: (whole machine, this process with its reaped children)."""
    with open("/proc/stat") as fh:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fh.readline().split()[1:9])
    machine = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    own = sum(sum(resource.getrusage(who)[:2]) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return machine, own


def other_cpu_since(start: tuple[float, float]) -> float:
    """CPU seconds other programs (and the hypervisor) took since ``start``: noise on a shared machine."""
    machine, own = cpu_seconds()
    return round(machine - start[0] - (own - start[1]), 1)


def git_state() -> dict[str, object]:
    """The commit measured and the files that differ from it (the tree may be mid-edit)."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=os.path.dirname(__file__) or ".")
        return done.stdout.strip()
    return {"head": git("rev-parse", "--short", "HEAD"), "modified": git("status", "--porcelain").splitlines()}


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo."""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def command_line() -> str:
    """How this benchmark was started, relative to the repository root (no machine's absolute paths)."""
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def shown(path: str) -> str:
        full = os.path.abspath(path)
        return os.path.relpath(full, root) if full.startswith(root + os.sep) else os.path.basename(path)

    return " ".join([shown(sys.executable), shown(sys.argv[0]), *sys.argv[1:]])
