"""What a run records about where it ran: code, packages, interpreter, OS and hardware."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

MAX_DIFF_BYTES = 1_000_000


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def git_state(cwd: Path | None = None) -> dict[str, Any]:
    """Commit, branch, dirty flag, uncommitted diff (size-capped) and untracked files of the repo at ``cwd``."""
    where = cwd or Path.cwd()
    root = _git(["rev-parse", "--show-toplevel"], where)
    if root is None:
        return {"in_repo": False}
    commit = _git(["rev-parse", "HEAD"], where)
    branch = _git(["rev-parse", "--abbrev-ref", "HEAD"], where)
    # Pinned format: the user's git config (colour, noprefix, external diff tools) must not shape a
    # patch that `git apply` reads back at reproduction time.
    plain = ["-c", "color.ui=never", "-c", "diff.noprefix=false", "diff", "--no-color", "--no-ext-diff",
             "--src-prefix=a/", "--dst-prefix=b/", "--binary"]
    diff = _git([*plain, "HEAD"], where) if commit else _git(plain, where)
    untracked = (_git(["ls-files", "--others", "--exclude-standard"], where) or "").splitlines()
    diff = diff or ""
    return {
        "in_repo": True,
        "root": root.strip(),
        "commit": commit.strip() if commit else None,
        "branch": branch.strip() if branch else None,
        "dirty": bool(diff) or bool(untracked),
        "diff": diff[:MAX_DIFF_BYTES],
        "diff_truncated": len(diff) > MAX_DIFF_BYTES,
        "untracked": untracked[:1000],
    }


def cpu_model() -> str:
    """The CPU's marketing name, from /proc/cpuinfo where available."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _name_and_version(dist: importlib.metadata.Distribution) -> tuple[str | None, str | None]:
    """Name and Version from the head of a distribution's metadata: the fields come first, so the rest of
    the file (often a long description) is not parsed; ``dist.metadata`` parses all of it."""
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
    if text is None:
        return dist.metadata["Name"], dist.version
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break  # the end of the header
        key, _, value = line.partition(":")
        if key in ("Name", "Version") and key not in fields:
            fields[key] = value.strip()
            if len(fields) == 2:
                break
    return fields.get("Name"), fields.get("Version")


def packages() -> dict[str, str]:
    """Installed distributions and their versions."""
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name, version = _name_and_version(dist)
        if name and version is not None:
            found[name.lower()] = version
    return dict(sorted(found.items()))


def torch_info() -> dict[str, Any]:
    """torch, CUDA and cuDNN versions and GPUs, when torch is already imported."""
    torch = sys.modules.get("torch")
    if torch is None:
        return {}
    info: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda,
                            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                            "threads": torch.get_num_threads(), "gpus": []}
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            info["gpus"].append({"name": props.name, "memory_bytes": props.total_memory})
    return info


def environment() -> dict[str, Any]:
    """Everything a run records about its environment."""
    return {
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "os": platform.system(),
        "hostname": socket.gethostname(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else [],
        "cwd": str(Path.cwd()),
        "git": git_state(),
        "packages": packages(),
        **torch_info(),
    }


class SystemSampler:
    """CPU %, resident memory and, when present, GPU utilization and memory of this process."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first call only starts the measurement window
        self._psutil = psutil

    def sample(self) -> dict[str, float]:
        """One reading, as metric name -> value."""
        values = {
            "system/cpu_percent": float(self._psutil.cpu_percent(None)),
            "system/process_cpu_percent": float(self._process.cpu_percent(None)),
            "system/rss_mb": self._process.memory_info().rss / 2**20,
        }
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                values[f"system/gpu{i}_memory_mb"] = torch.cuda.memory_allocated(i) / 2**20
                try:
                    values[f"system/gpu{i}_utilization"] = float(torch.cuda.utilization(i))
                except Exception:  # needs pynvml; memory is still recorded
                    pass
        return values


class ConsoleCapture:
    """Tee sys.stdout and sys.stderr into a size-capped buffer (the head and the tail are kept)."""

    HEAD_BYTES = 256 * 1024
    TAIL_BYTES = 768 * 1024

    def __init__(self) -> None:
        self._head = bytearray()
        self._tail = bytearray()
        self._dropped = 0

    def start(self) -> None:
        """Begin copying everything written to stdout and stderr."""
        _HUB.add(self)

    def stop(self) -> None:
        """Stop copying; the streams are restored once no capture is left, in whatever order runs end."""
        _HUB.remove(self)

    def write(self, text: str) -> None:
        """Append text to the capture."""
        data = text.encode("utf-8", "replace")
        room = self.HEAD_BYTES - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if data:
            self._tail += data
            if len(self._tail) > self.TAIL_BYTES:
                cut = len(self._tail) - self.TAIL_BYTES
                self._dropped += cut
                del self._tail[:cut]

    def contents(self) -> bytes:
        """What was captured, with a marker where the middle was dropped."""
        marker = f"\n[... {self._dropped} bytes of console output dropped ...]\n".encode() if self._dropped else b""
        return bytes(self._head) + marker + bytes(self._tail)


class _ConsoleHub:
    """One tee on stdout/stderr for the whole process, shared by every active capture.

    Runs in one process (a sweep, a notebook, threads) start and finish in any order; stacking one
    tee per run would hand a later run's output to an earlier, finished one when they end out of order.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.captures: tuple[ConsoleCapture, ...] = ()

    def _ours(self, stream: Any) -> bool:
        return isinstance(stream, _Tee) and stream.hub is self

    def add(self, capture: ConsoleCapture) -> None:
        with self._lock:
            # (Re)install the tee wherever it is not the current stream: something (a test runner, a
            # notebook) may have replaced sys.stdout since the last run started.
            if not self._ours(sys.stdout):
                sys.stdout = _Tee(sys.stdout, self)
            if not self._ours(sys.stderr):
                sys.stderr = _Tee(sys.stderr, self)
            if capture not in self.captures:
                self.captures = (*self.captures, capture)

    def remove(self, capture: ConsoleCapture) -> None:
        with self._lock:
            self.captures = tuple(c for c in self.captures if c is not capture)
            if not self.captures:
                # Unwrap our tee where it is still the current stream; one buried under a later
                # replacement passes text straight through while no capture is active.
                if isinstance(sys.stdout, _Tee) and sys.stdout.hub is self:
                    sys.stdout = sys.stdout.stream
                if isinstance(sys.stderr, _Tee) and sys.stderr.hub is self:
                    sys.stderr = sys.stderr.stream

    def write(self, text: str) -> None:
        for capture in self.captures:  # a tuple: safe against a capture starting or stopping meanwhile
            capture.write(text)


class _Tee:
    def __init__(self, stream: Any, hub: _ConsoleHub) -> None:
        self.stream = stream
        self.hub = hub

    def write(self, text: str) -> int:
        self.hub.write(text)
        return self.stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


_HUB = _ConsoleHub()


SOURCE_SUFFIXES = (".py", ".yaml", ".yml", ".json", ".toml", ".cfg", ".ini", ".txt", ".sh", ".ipynb")


def snapshot_code(run: Any, env: dict[str, Any]) -> None:
    """Store the code git cannot restore: untracked source files in a repo, or the whole folder outside one."""
    import tempfile

    from striate.tracking.snapshot import snapshot_files, snapshot_source

    git = env.get("git") or {}
    with tempfile.TemporaryDirectory() as tmp:
        if git.get("in_repo"):
            untracked = [p for p in git.get("untracked", []) if p.endswith(SOURCE_SUFFIXES)]
            if not untracked:
                return
            info = snapshot_files(Path(git["root"]), untracked, Path(tmp))
            kind = "code-untracked"
        else:
            info = snapshot_source(Path(env.get("cwd") or "."), Path(tmp))
            kind = "code-snapshot"
        run.log_artifact(info["path"], f"code/{Path(info['path']).name}", kind=kind)
        run.summary["code_snapshot"] = {k: info[k] for k in ("sha256", "files", "bytes", "truncated")}
