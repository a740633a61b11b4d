"""Commands that only read never wait on a writer, and read a store nobody may write (a read-only copy)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from striate.errors import StoreError
from striate.tracking.store import MetricSeries, RunRecord, Store, open_store
from tests.conftest import as_nobody, run_cli

HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")  # a writer in the middle of a long transaction
conn.execute("UPDATE store_meta SET value = value")
print("locked", flush=True)
time.sleep(40)
"""


def add_run(store: Store, name: str, status: str = "finished", **fields: object) -> RunRecord:
    now = time.time()
    record = RunRecord(id=os.urandom(16).hex(), name=name, project="ro", status=status, created_at=now,
                       ended_at=None if status == "running" else now, heartbeat_at=now, **fields)  # type: ignore[arg-type]
    store.create_run(record)
    steps = np.arange(10)
    store.log_batch(record.id, [MetricSeries("loss", steps, steps + 1e9, steps * 0.5)])
    return record


def dead_pid() -> int:
    """The PID of a process that has exited."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)


def test_read_commands_do_not_wait_for_a_writer_holding_the_lock(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    store = open_store(folder)
    done = add_run(store, "done")
    # A run whose process is gone: opening the store would mark it crashed — a write, which must not
    # make a reader wait for the lock.
    dead = add_run(store, "dead", status="running", host=socket.gethostname(), pid=dead_pid(), pid_started_at=1.0)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder / "striate.db")], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        for args in (["runs", "--json"], ["show", done.id[:8]], ["compare", done.id, dead.id, "--metric", "loss"],
                     ["diff", done.id, dead.id]):
            started = time.monotonic()
            result = run_cli(*args, "--store", str(folder), timeout=60)
            elapsed = time.monotonic() - started
            assert result.returncode == 0, result.stderr
            assert elapsed < 15, f"`striate {args[0]}` waited {elapsed:.0f} s for the writer"
        listed = run_cli("runs", "--json", "--store", str(folder), timeout=60)
        # Not recorded (the writer holds the lock) but shown as what the next writer will record.
        assert {row["name"]: row["status"] for row in json.loads(listed.stdout)} == {"done": "finished",
                                                                                     "dead": "crashed"}
    finally:
        holder.kill()
        holder.wait()
    assert open_store(folder).get_run(dead.id).status == "crashed", "the next opener that may wait marks it"


def read_only_copy(source: Path, into: Path) -> Path:
    """Copy a store folder and make the copy (files and folders) read-only for everyone."""
    copy = into / "copy"
    shutil.copytree(source, copy)
    for path in sorted(copy.rglob("*"), reverse=True):
        path.chmod(0o555 if path.is_dir() else 0o444)
    copy.chmod(0o555)
    return copy


def listing(folder: Path) -> Callable[[], str]:
    def task() -> str:
        opened = open_store(folder, read_only=True)
        runs = opened.list_runs()
        return json.dumps(sorted([r.name, r.status, len(opened.history(r.id, "loss"))] for r in runs))
    return task


@pytest.mark.parametrize("with_log", [True, False], ids=["write-ahead-log", "checkpointed"])
def test_a_read_only_copy_of_a_store_is_read(tmp_path: Path, with_log: bool) -> None:
    folder = tmp_path / "store"
    store = open_store(folder)
    add_run(store, "first")
    add_run(store, "second", status="failed")
    if not with_log:
        assert isinstance(store, object)
        store.engine.dispose()  # type: ignore[attr-defined]  # the last connection folds the log into the file
    shared = Path(tempfile.mkdtemp(prefix="striate-readonly-"))  # /tmp: reachable by nobody
    try:
        shared.chmod(0o755)
        copy = read_only_copy(folder, shared)
        wal = copy / "striate.db-wal"
        assert (wal.is_file() and wal.stat().st_size > 0) == with_log, "the copy holds runs only in its log"
        (tmp_path / "warm-up").mkdir()  # an empty folder: a new store
        listing(tmp_path / "warm-up")()  # load every module now: the child may not read the interpreter's files
        expected = json.dumps([["first", "finished", 10], ["second", "failed", 10]])
        assert as_nobody(listing(copy)) == expected
        # A writer still refuses the folder, clearly.
        assert "not writable" in as_nobody(lambda: str(open_store(copy)))
        assert sorted(p.name for p in copy.iterdir()) == sorted(p.name for p in folder.iterdir() if with_log or
                                                                  not p.name.startswith("striate.db-"))
    finally:
        for path in shared.rglob("*"):
            path.chmod(0o755)
        shutil.rmtree(shared)


def test_a_read_only_copy_shows_a_dead_run_as_crashed_without_writing(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    store = open_store(folder)
    add_run(store, "dead", status="running", host=socket.gethostname(), pid=dead_pid(), pid_started_at=1.0)
    store.engine.dispose()  # type: ignore[attr-defined]
    shared = Path(tempfile.mkdtemp(prefix="striate-readonly-"))
    try:
        shared.chmod(0o755)
        copy = read_only_copy(folder, shared)
        before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
        (tmp_path / "warm-up").mkdir()
        listing(tmp_path / "warm-up")()
        assert as_nobody(listing(copy)) == json.dumps([["dead", "crashed", 10]])
        assert {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()} == before
    finally:
        for path in shared.rglob("*"):
            path.chmod(0o755)
        shutil.rmtree(shared)


def test_read_only_opening_of_an_empty_folder_creates_an_empty_store(tmp_path: Path) -> None:
    (tmp_path / "new").mkdir()
    opened = open_store(tmp_path / "new", read_only=True)  # `striate runs --store new` on a new folder
    assert opened.list_runs() == [] and (tmp_path / "new" / "striate.db").is_file()


@pytest.mark.parametrize("kind", ["missing", "file", "other-files"])
def test_reading_a_path_that_holds_no_store_is_an_error_and_creates_nothing(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "strate-runs"  # a typo
    if kind == "file":
        path.write_text("notes")
    elif kind == "other-files":
        path.mkdir()
        (path / "README.md").write_text("a project folder")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for args in (["runs"], ["show", "x"], ["compare", "a", "b"], ["diff", "a", "b"]):
        out = run_cli(*args, "--store", str(path))
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert f"no store at {path}" in out.stderr and "fix:" in out.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == before, "a read command created files"


def test_reading_the_default_store_before_any_run_is_an_empty_list(tmp_path: Path) -> None:
    out = run_cli("runs", cwd=tmp_path, env={"STRIATE_STORE": ""})
    assert out.returncode == 0 and "no runs in this store yet" in out.stdout


def test_eight_parallel_runs_commands_on_a_store_nobody_created_yet(tmp_path: Path) -> None:
    folder = tmp_path / "fresh"
    folder.mkdir()  # an empty folder is a new store; a path that does not exist is an error (test above)
    env = {**os.environ, "COLUMNS": "200"}
    procs = [subprocess.Popen([sys.executable, "-m", "striate", "runs", "--json", "--store", str(folder)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(8)]
    results = [(p.wait(timeout=120), p.stdout.read() if p.stdout else "", p.stderr.read() if p.stderr else "")
               for p in procs]
    assert [code for code, _, _ in results] == [0] * 8, [err for _, _, err in results]
    assert all(json.loads(out) == [] for _, out, _ in results)


@pytest.mark.parametrize("read_only", [True, False])
def test_a_file_that_is_no_database_is_one_clear_error(tmp_path: Path, read_only: bool) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "striate.db").write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match="not a database") as caught:
        open_store(folder, read_only=read_only)
    assert "not a striate store" in str(caught.value.fix)
