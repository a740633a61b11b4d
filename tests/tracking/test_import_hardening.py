"""Imported runs are untrusted input: records validated, expansion capped, imports all or nothing."""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from striate.errors import ConfigError, StoreError, StriateError
from striate.tracking.store import MetricSeries, RunRecord
from striate.tracking.store.base import RUN_STATUSES
from striate.tracking.store.sql import SqlStore
from striate.tracking.transfer import (
    INCOMPLETE_MARKER,
    MAX_FUTURE_S,
    begin_import,
    export_run,
    import_run,
    import_run_details,
    validate_record,
)
from tests.conftest import run_cli
from tests.tracking.test_transfer import RUN_ID, make_run, rebuild


@pytest.fixture
def stores(tmp_path: Path) -> tuple[SqlStore, SqlStore]:
    return SqlStore.open_folder(tmp_path / "a"), SqlStore.open_folder(tmp_path / "b")


@pytest.fixture
def archive(tmp_path: Path, stores: tuple[SqlStore, SqlStore]) -> Path:
    make_run(stores[0])
    return Path(export_run(stores[0], RUN_ID, tmp_path / "run.tar.gz")["path"])


def manifest_of(archive: Path) -> dict[str, Any]:
    with tarfile.open(archive, "r:gz") as tar:
        return json.loads(tar.extractfile("run.json").read())


def with_record(archive: Path, out: Path, **changes: Any) -> Path:
    """A copy of ``archive`` whose run.json record has ``changes`` applied (a key set to ... is removed)."""
    manifest = manifest_of(archive)
    for key, value in changes.items():
        if value is ...:
            manifest["record"].pop(key, None)
        else:
            manifest["record"][key] = value
    return rebuild(archive, out, change={"run.json": json.dumps(manifest).encode()})


def assert_nothing_written(store: SqlStore) -> None:
    assert store.list_runs() == []
    assert list(Path(store.artifact_root).iterdir()) == [] if Path(store.artifact_root).exists() else True


# -- item 7: imported records are validated ---------------------------------------------------------
BAD_FIELDS = {
    "created_at 1e20": ({"created_at": 1e20}, "created_at 1e\\+20 is not a time between 1970 and tomorrow"),
    "created_at NaN": ({"created_at": float("nan")}, "created_at nan is not a time"),
    "created_at text": ({"created_at": "yesterday"}, "created_at 'yesterday' is not a number"),
    "created_at bool": ({"created_at": True}, "created_at True is not a number"),
    "negative ended_at": ({"ended_at": -5.0}, "ended_at -5.0 is not a time"),
    "ended before created": ({"ended_at": 10.0}, "ended_at 10.0 is before created_at"),
    "future heartbeat": ({"heartbeat_at": 1e12}, "heartbeat_at 1000000000000.0 is not a time"),
    "infinite pid_started_at": ({"pid_started_at": float("inf")}, "pid_started_at inf"),
    "status": ({"status": "bogus"}, "run status 'bogus' is not one of"),
    "status list": ({"status": ["finished"]}, "run status \\['finished'\\] is not one of"),
    "name number": ({"name": 5}, "name 5 is not a string"),
    "project null": ({"project": None}, "project None is not a string"),
    "name too long": ({"name": "n" * 201}, "name is 201 characters long"),
    "tags string": ({"tags": "a,b"}, "tags 'a,b' is not a list of strings"),
    "tags numbers": ({"tags": ["a", 2]}, "is not a list of strings"),
    "config list": ({"config": [1, 2]}, "config is a list, not a mapping"),
    "summary text": ({"summary": "x"}, "summary is a str, not a mapping"),
    "environment number": ({"environment": 3}, "environment is a int, not a mapping"),
    "dataset list": ({"dataset": []}, "dataset is a list, not a mapping"),
    "deep config": ({"config": json.loads('{"a":' * 60 + "1" + "}" * 60)}, "config nests deeper than 50"),
    "pid text": ({"pid": "123"}, "pid '123' is not a process id"),
    "pid huge": ({"pid": 2**40}, "is not a process id"),
    "archived text": ({"archived": "yes"}, "archived 'yes' is not true or false"),
    "reproduction_of path": ({"reproduction_of": "../x"}, "reproduction_of '../x' is not a valid run id"),
    "missing created_at": ({"created_at": ...}, "incomplete \\(no created_at\\)"),
    "artifact kind": ({"artifacts": [{"path": "console.log", "kind": "k" * 60}]}, "has kind 'kkk"),
}


@pytest.mark.parametrize("case", sorted(BAD_FIELDS))
def test_a_bad_record_field_is_refused_before_anything_is_written(
        tmp_path: Path, stores: tuple[SqlStore, SqlStore], archive: Path, case: str) -> None:
    changes, message = BAD_FIELDS[case]
    bad = with_record(archive, tmp_path / "bad.tar.gz", **changes)
    with pytest.raises(ConfigError, match=message):
        import_run(stores[1], bad)
    assert_nothing_written(stores[1])


def test_created_at_1e20_is_one_error_line_and_the_store_keeps_working(tmp_path: Path, archive: Path) -> None:
    bad = with_record(archive, tmp_path / "bad.tar.gz", created_at=1e20)
    done = run_cli("import-run", str(bad), "--store", str(tmp_path / "c"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "not a time between 1970 and tomorrow" in done.stderr
    listed = run_cli("runs", "--json", "--store", str(tmp_path / "c"))
    assert listed.returncode == 0 and json.loads(listed.stdout) == []


def test_an_imported_run_is_never_running(tmp_path: Path, stores: tuple[SqlStore, SqlStore], archive: Path) -> None:
    soon = time.time() + 3600  # a heartbeat an hour ahead (another host's clock) would keep it `running`
    live = with_record(archive, tmp_path / "live.tar.gz", status="running", ended_at=None, heartbeat_at=soon)
    assert import_run(stores[1], live) == RUN_ID
    record = stores[1].get_run(RUN_ID)
    assert record.status == "crashed" and record.ended_at == soon
    assert record.error == "RuntimeError: boom"  # its own error is kept
    stores[1].mark_stale_runs_crashed(time.time())
    assert stores[1].get_run(RUN_ID).status == "crashed"
    assert import_run_details(stores[1], live)["imported"] is False  # importing it again is still a no-op


timestamps = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 2**70), st.none(),
                       st.booleans(), st.text(max_size=5), st.sampled_from([0.0, 1.7e9, time.time(), 1e20]))
anything = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
                        max_leaves=10)
records = st.fixed_dictionaries({
    "id": st.sampled_from([RUN_ID, "", "../x", "a" * 65, 7]),
    "name": st.one_of(st.text(max_size=30), anything), "project": st.one_of(st.text(max_size=10), anything),
    "status": st.one_of(st.sampled_from(RUN_STATUSES), anything),
    "created_at": timestamps, "ended_at": timestamps, "heartbeat_at": timestamps,
}, optional={
    "config": anything, "summary": anything, "environment": anything, "dataset": anything,
    "tags": st.one_of(st.lists(st.text(max_size=5), max_size=3), anything), "pid": anything,
    "archived": anything, "model": anything, "notes": anything, "pid_started_at": timestamps,
})


@settings(max_examples=400, deadline=None)
@given(records)
def test_any_record_is_either_refused_or_valid(data: dict[str, Any]) -> None:
    now = time.time()
    try:
        record = validate_record(data, "test", "fix", now=now)
    except ConfigError as exc:
        assert str(exc).startswith("test: ") and "\n" not in str(exc)
        return
    assert isinstance(record, RunRecord) and record.status in RUN_STATUSES and record.status != "running"
    for value in (record.created_at, record.heartbeat_at, record.ended_at, record.pid_started_at):
        assert value is None or (isinstance(value, float) and math.isfinite(value) and 0 <= value
                                 <= now + MAX_FUTURE_S)
    assert record.ended_at is None or record.ended_at >= record.created_at
    assert isinstance(record.name, str) and isinstance(record.project, str)
    assert all(isinstance(t, str) for t in record.tags)
    assert all(isinstance(getattr(record, k), dict) for k in ("config", "summary", "environment", "dataset"))
    json.dumps(record.config)  # storable


# -- item 8: what an archive may expand to --------------------------------------------------------
def test_too_many_points_is_refused_naming_the_limit(tmp_path: Path, stores: tuple[SqlStore, SqlStore],
                                                     archive: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIATE_IMPORT_MAX_POINTS", "100")  # the archive holds 153
    with pytest.raises(ConfigError, match="over the import limit of 100 \\(STRIATE_IMPORT_MAX_POINTS\\)") as info:
        import_run(stores[1], archive)
    assert "STRIATE_IMPORT_MAX_POINTS=" in str(info.value.fix)
    assert_nothing_written(stores[1])
    monkeypatch.setenv("STRIATE_IMPORT_MAX_POINTS", "153")
    assert import_run_details(stores[1], archive)["points"] == 153


def test_too_many_bytes_is_refused_naming_the_limit(tmp_path: Path, stores: tuple[SqlStore, SqlStore],
                                                    archive: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIATE_IMPORT_MAX_BYTES", "5000")  # the checkpoint alone is 10,240 bytes
    with pytest.raises(ConfigError, match="over the import limit of 5,000 bytes|over the import limit of 5,000 "):
        import_run(stores[1], archive)
    assert_nothing_written(stores[1])
    monkeypatch.setenv("STRIATE_IMPORT_MAX_BYTES", "lots")
    with pytest.raises(ConfigError, match="STRIATE_IMPORT_MAX_BYTES='lots' is not a positive whole number"):
        import_run(stores[1], archive)


def npy_header(length: int, dtype: str = "<f8") -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": dtype, "fortran_order": False, "shape": (length,)})
    return out.getvalue()


def bomb_npz(points: int, keys: int = 1) -> bytes:
    """A deflated npz of zeros declaring ``points`` points per metric, written without holding the arrays."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for i in range(keys):
            for part, dtype in (("steps", "<i8"), ("times", "<f8"), ("values", "<f8")):
                with zf.open(f"m{i}_{part}.npy", "w", force_zip64=True) as fh:
                    fh.write(npy_header(points, dtype))
                    zeros = bytes(1 << 22)
                    for start in range(0, points * 8, len(zeros)):
                        fh.write(zeros[:min(len(zeros), points * 8 - start)])
    return out.getvalue()


def test_a_small_archive_declaring_16m_points_is_refused_before_loading(tmp_path: Path, archive: Path) -> None:
    """The reported bomb: a sub-megabyte archive whose npz expands to 16 M points (817 MB when it loaded)."""
    manifest = manifest_of(archive)
    manifest["metric_keys"] = ["train/loss"]
    bomb = rebuild(archive, tmp_path / "bomb.tar.gz",
                   change={"run.json": json.dumps(manifest).encode(), "metrics.npz": bomb_npz(16_000_000)})
    assert bomb.stat().st_size < 2_000_000
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent (pytest) across fork and exec
    probe = ("import re, runpy, sys\n"
             "sys.argv = ['striate', 'import-run', sys.argv[1], '--store', sys.argv[2]]\n"
             "try:\n    runpy.run_module('striate', run_name='__main__')\n"
             "except SystemExit as exc:\n    code = exc.code\n"
             "hwm = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
             "print('RSS', hwm // 1024, 'EXIT', code)\n")
    done = subprocess.run([sys.executable, "-c", probe, str(bomb), str(tmp_path / "c")], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert done.stdout.startswith("RSS"), (done.stdout, done.stderr)
    rss_mb, code = int(done.stdout.split()[1]), done.stdout.split()[3]
    assert code == "2" and "16,000,000 metric points, over the import limit of 10,000,000" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert rss_mb < 200, f"peak RSS {rss_mb} MB"  # the npz (about 400 KB) and the interpreter, not 384 MB of arrays
    assert SqlStore.open_folder(tmp_path / "c").list_runs() == []


def test_npz_entries_that_lie_about_their_shape_or_type_are_refused(tmp_path: Path, stores: tuple[SqlStore, SqlStore],
                                                                    archive: Path) -> None:
    manifest = manifest_of(archive)
    manifest["metric_keys"] = ["k"]
    cases = {
        "object": (npy_header(3, "|O"), "not a 1-d numeric array"),
        "2-d": (npy_header(3)[:-1].replace(b"(3,)", b"(3, 3)") + b"\n", "not a 1-d numeric array"),
        "huge claim": (npy_header(10**15), "metric points, over the import limit|declares"),
    }
    for name, (header, message) in cases.items():
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as zf:
            for part in ("steps", "times", "values"):
                zf.writestr(f"m0_{part}.npy", header + bytes(24))
        bad = rebuild(archive, tmp_path / f"{name}.tar.gz",
                      change={"run.json": json.dumps(manifest).encode(), "metrics.npz": out.getvalue()})
        with pytest.raises(ConfigError, match=message):
            import_run(stores[1], bad)
        assert_nothing_written(stores[1])


# -- item 9: imports are all or nothing -----------------------------------------------------------
@pytest.fixture(scope="module")
def big_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A run of 3 M points and an artifact, large enough that importing it takes a few seconds."""
    folder = tmp_path_factory.mktemp("big")
    store = SqlStore.open_folder(folder / "src")
    store.create_run(RunRecord(id=RUN_ID, name="big", project="p", status="finished", created_at=1000.0,
                               ended_at=2000.0, heartbeat_at=2000.0))
    n = 1_000_000
    for key in ("a", "b", "c"):
        store.log_batch(RUN_ID, [MetricSeries(key, np.arange(n, dtype=np.int64), np.full(n, 1500.0),
                                              np.linspace(0, 1, n))])
    art = Path(store.artifact_root) / RUN_ID
    art.mkdir(parents=True)
    (art / "weights.bin").write_bytes(os.urandom(1 << 20))
    import hashlib

    store.add_artifact(RUN_ID, "weights.bin", "checkpoint", 1 << 20,
                       hashlib.sha256((art / "weights.bin").read_bytes()).hexdigest())
    out = folder / "big.tar.gz"
    export_run(store, RUN_ID, out)
    return out, 3 * n


def import_killed_when(archive: Path, store_dir: Path, ready: Any) -> None:
    """Start `striate import-run` in a subprocess and SIGKILL it as soon as ``ready(store_dir)`` is true."""
    proc = subprocess.Popen([sys.executable, "-m", "striate", "import-run", str(archive), "--store", str(store_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not ready(store_dir):
        time.sleep(0.005)
    assert proc.poll() is None, "the import finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def points_so_far(store_dir: Path) -> int:
    import sqlite3

    db = store_dir / "striate.db"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1) as conn:
            return int(conn.execute("SELECT coalesce(sum(count), 0) FROM metric_chunks").fetchone()[0])
    except sqlite3.Error:
        return 0


def staging_exists(store_dir: Path) -> bool:
    return any((store_dir / "artifacts").glob(".import-*"))


@pytest.mark.parametrize("moment", ["staging", "points"])
def test_a_killed_import_is_invisible_and_importing_again_completes_it(
        tmp_path: Path, big_archive: tuple[Path, int], moment: str) -> None:
    archive, total = big_archive
    target = tmp_path / "target"
    ready = staging_exists if moment == "staging" else (lambda d: points_so_far(d) >= 1_000_000)
    import_killed_when(archive, target, ready)

    store = SqlStore.open_folder(target)
    assert store.search_runs() == []  # `striate runs` does not show a half import
    leftovers = store.list_runs()
    if leftovers:  # what is left says what it is, and is never `finished`
        assert leftovers[0].status == "crashed" and "import incomplete" in str(leftovers[0].error)
        assert INCOMPLETE_MARKER in leftovers[0].environment
    listed = run_cli("runs", "--json", "--store", str(target))
    assert listed.returncode == 0 and json.loads(listed.stdout) == []

    again = run_cli("import-run", str(archive), "--store", str(target), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["imported"] is True
    store = SqlStore.open_folder(target)
    record = store.get_run(RUN_ID)
    assert record.status == "finished" and record.error is None and not record.archived
    assert INCOMPLETE_MARKER not in record.environment
    assert sum(m["count"] for m in record.metrics.values()) == total
    assert [a["path"] for a in record.artifacts] == ["weights.bin"]
    assert (Path(store.artifact_root) / RUN_ID / "weights.bin").stat().st_size == 1 << 20
    assert [p.name for p in Path(store.artifact_root).iterdir()] == [RUN_ID]  # no orphan staging folder
    assert json.loads(run_cli("import-run", str(archive), "--store", str(target), "--json").stdout)["imported"] is False


def test_a_half_import_whose_importer_still_runs_is_left_alone(tmp_path: Path, stores: tuple[SqlStore, SqlStore],
                                                              archive: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        import psutil

        record = RunRecord(id=RUN_ID, name="x", project="p", status="finished", created_at=1.0, ended_at=2.0,
                           heartbeat_at=2.0)
        begin_import(stores[1], record)
        env = stores[1].get_run(RUN_ID).environment
        env[INCOMPLETE_MARKER] = {"host": socket.gethostname(), "pid": sleeper.pid,
                                  "pid_started_at": psutil.Process(sleeper.pid).create_time()}
        stores[1].update_run(RUN_ID, environment=env)
        with pytest.raises(StoreError, match=f"being imported right now by process {sleeper.pid}"):
            import_run(stores[1], archive)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert import_run_details(stores[1], archive)["imported"] is True  # its importer is gone: redone


def test_an_orphan_staging_folder_of_a_dead_process_is_removed(tmp_path: Path, stores: tuple[SqlStore, SqlStore],
                                                             archive: Path) -> None:
    import socket

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import hashlib

    root = Path(stores[1].artifact_root)
    host = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
    orphan = root / f".import-01234567-{host}-{dead.pid}-0-abcd"
    orphan.mkdir(parents=True)
    alive = root / f".import-01234567-{host}-{os.getpid()}-0-efgh"  # this process: an import in progress
    alive.mkdir()
    (orphan / "artifacts").mkdir()
    (orphan / "artifacts" / "big.bin").write_bytes(b"x" * 1000)
    import_run(stores[1], archive)
    assert sorted(p.name for p in root.iterdir()) == sorted([RUN_ID, alive.name])


# -- item 13: an unwritable output is one clear line -----------------------------------------------
def test_export_to_an_unwritable_path_is_one_error_line(tmp_path: Path, stores: tuple[SqlStore, SqlStore]) -> None:
    make_run(stores[0])
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for out in (blocker / "run.tar.gz", Path("/proc/striate-test/run.tar.gz")):
        done = run_cli("export-run", RUN_ID, str(out), "--store", str(tmp_path / "a"))
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert f"cannot write {out}" in done.stderr
    with pytest.raises(ConfigError, match="cannot write"):
        export_run(stores[0], RUN_ID, tmp_path, overwrite=True)  # a folder in the way
    assert not list(tmp_path.glob(".*.tmp"))


def test_archive_fuzz_never_gives_a_traceback(tmp_path: Path) -> None:
    """Property: any mutation of run.json gives an imported run or one StriateError, never half a run."""
    source = SqlStore.open_folder(tmp_path / "src")
    make_run(source)
    base = Path(export_run(source, RUN_ID, tmp_path / "run.tar.gz")["path"])
    manifest = manifest_of(base)
    counter = iter(range(10**6))

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(sorted(manifest["record"]) + ["metric_keys", "files", "version"]), anything)
    def check(field: str, value: Any) -> None:
        changed = json.loads(json.dumps(manifest))
        if field in ("metric_keys", "files", "version"):
            changed[field] = value
        else:
            changed["record"][field] = value
        n = next(counter)
        out = rebuild(base, tmp_path / f"fuzz-{n}.tar.gz", change={"run.json": json.dumps(changed).encode()})
        target = SqlStore.open_folder(tmp_path / f"t{n}")
        try:
            import_run(target, out)
        except StriateError:
            assert target.list_runs() == []
            return
        record = target.get_run(RUN_ID)
        assert record.status != "running" and INCOMPLETE_MARKER not in record.environment

    check()


def test_another_hosts_recent_half_import_is_left_alone_and_an_old_one_redone(
        stores: tuple[SqlStore, SqlStore], archive: Path) -> None:
    record = RunRecord(id=RUN_ID, name="x", project="p", status="finished", created_at=1.0, ended_at=2.0,
                       heartbeat_at=2.0)
    begin_import(stores[1], record)
    env = stores[1].get_run(RUN_ID).environment
    env[INCOMPLETE_MARKER] = {"host": "other-host", "pid": 1, "started_at": time.time() - 60}
    stores[1].update_run(RUN_ID, environment=env)
    with pytest.raises(StoreError, match="being imported by host 'other-host'") as info:
        import_run(stores[1], archive)
    assert f"striate delete {RUN_ID[:8]}" in str(info.value.fix)
    env[INCOMPLETE_MARKER]["started_at"] = time.time() - 7200
    stores[1].update_run(RUN_ID, environment=env)
    assert import_run_details(stores[1], archive)["imported"] is True


def test_npz_fuzz_never_gives_a_traceback(tmp_path: Path) -> None:
    """Property: any corruption of metrics.npz gives the run or one StriateError, and never half a run."""
    source = SqlStore.open_folder(tmp_path / "src")
    make_run(source)
    base = Path(export_run(source, RUN_ID, tmp_path / "run.tar.gz")["path"])
    with tarfile.open(base, "r:gz") as tar:
        npz = tar.extractfile("metrics.npz").read()
    counter = iter(range(10**6))

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(st.integers(0, len(npz) - 1), st.integers(0, 255)), min_size=1, max_size=6),
           st.integers(0, len(npz)))
    def check(flips: list[tuple[int, int]], cut: int) -> None:
        data = bytearray(npz)
        for where, byte in flips:
            data[where] = byte
        n = next(counter)
        out = rebuild(base, tmp_path / f"npz-{n}.tar.gz", change={"metrics.npz": bytes(data[:max(cut, 1)])})
        target = SqlStore.open_folder(tmp_path / f"n{n}")
        try:
            import_run(target, out)
        except StriateError:
            assert target.list_runs() == []
            return
        assert INCOMPLETE_MARKER not in target.get_run(RUN_ID).environment

    check()
