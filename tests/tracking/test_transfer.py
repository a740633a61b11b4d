"""Portable runs: export from one store, import into another, byte for byte; unsafe archives refused."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from striate.errors import ConfigError, StoreError
from striate.tracking.store import MetricSeries, RunRecord
from striate.tracking.store.sql import SqlStore
from striate.tracking.transfer import export_run, import_run, import_run_details
from tests.conftest import run_cli, tar_member

RUN_ID = "0123456789abcdef0123456789abcdef"


def make_run(store: SqlStore) -> RunRecord:
    """A finished-with-error run with several metric chunks, recorded artifacts and an unrecorded file."""
    record = RunRecord(id=RUN_ID, name="brave-lenet", project="mnist", status="failed", created_at=1000.25,
                       ended_at=1060.5, heartbeat_at=1060.5, model="lenet5", config={"optimizer": {"lr": 0.1}},
                       summary={"test/acc1": 0.91}, tags=["baseline", "cpu"], notes="a note",
                       environment={"git": {"commit": "abc"}, "packages": {"torch": "2.3"}},
                       dataset={"name": "fashion-mnist", "sha256": "f" * 64}, error="RuntimeError: boom",
                       reproduction_of="fedcba9876543210fedcba9876543210", host="gpu-box", pid=123,
                       pid_started_at=999.0)
    store.create_run(record)
    rng = np.random.default_rng(0)
    for chunk in range(3):  # several flushes: the export must join every chunk in order
        steps = np.arange(chunk * 50, chunk * 50 + 50, dtype=np.int64)
        values = rng.normal(size=50)
        values[3] = np.nan  # a diverged step survives the trip
        store.log_batch(RUN_ID, [MetricSeries("train/loss", steps, 1000.0 + steps * 0.1, values),
                                 MetricSeries("test/acc1", steps[-1:], np.array([1001.0 + chunk]),
                                              np.array([0.5 + chunk / 10]))])
    folder = Path(store.artifact_root) / RUN_ID
    (folder / "checkpoints").mkdir(parents=True)
    artifacts = {"checkpoints/last.safetensors": bytes(range(256)) * 40, "console.log": b"epoch 1\n"}
    for rel, data in artifacts.items():
        (folder / rel).write_bytes(data)
        store.add_artifact(RUN_ID, rel, "checkpoint" if rel.startswith("ck") else "console", len(data),
                           hashlib.sha256(data).hexdigest())
    (folder / "scratch.txt").write_text("kept but never recorded\n")
    return store.get_run(RUN_ID)


@pytest.fixture
def stores(tmp_path: Path) -> tuple[SqlStore, SqlStore]:
    return SqlStore.open_folder(tmp_path / "a"), SqlStore.open_folder(tmp_path / "b")


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_round_trip_keeps_record_points_and_artifacts(tmp_path: Path, stores: tuple[SqlStore, SqlStore]) -> None:
    source, target = stores
    original = make_run(source)
    exported = export_run(source, RUN_ID[:8], tmp_path / "run.tar.gz")
    assert exported["points"] == 153 and exported["artifacts"] == 2 and exported["files"] == 3
    assert import_run(target, tmp_path / "run.tar.gz") == RUN_ID

    copy = target.get_run(RUN_ID)
    assert copy.environment.pop("imported_from")["archive"] == "run.tar.gz"  # the origin is marked
    assert json.dumps(dataclasses.asdict(copy), sort_keys=True) == json.dumps(dataclasses.asdict(original),
                                                                             sort_keys=True)
    assert copy.status == "failed" and copy.reproduction_of == original.reproduction_of
    for key in original.metrics:
        before, after = source.history(RUN_ID, key), target.history(RUN_ID, key)
        np.testing.assert_array_equal(before.steps, after.steps)
        np.testing.assert_array_equal(before.times, after.times)
        np.testing.assert_array_equal(before.values, after.values)  # NaN positions included
    src_files = folder_files(Path(source.artifact_root) / RUN_ID)
    assert folder_files(Path(target.artifact_root) / RUN_ID) == src_files and len(src_files) == 3
    assert target.find_artifacts(original.artifacts[0]["sha256"]) == [(RUN_ID, original.artifacts[0]["path"])]
    assert [p.name for p in Path(target.artifact_root).iterdir()] == [RUN_ID]  # no staging folder left


def test_importing_the_same_run_twice_is_a_no_op_and_a_different_one_is_refused(
        tmp_path: Path, stores: tuple[SqlStore, SqlStore]) -> None:
    source, target = stores
    make_run(source)
    export_run(source, RUN_ID, tmp_path / "run.tar.gz")
    assert import_run_details(target, tmp_path / "run.tar.gz")["imported"] is True
    again = import_run_details(target, tmp_path / "run.tar.gz")
    assert again["imported"] is False and again["id"] == RUN_ID
    assert len(target.history(RUN_ID, "train/loss")) == 150  # no points were added twice
    target.update_run(RUN_ID, notes="changed here")
    with pytest.raises(StoreError, match="different run with id"):
        import_run(target, tmp_path / "run.tar.gz")


def test_export_refuses_an_artifact_changed_after_recording(tmp_path: Path, stores: tuple[SqlStore, SqlStore]) -> None:
    source, _ = stores
    make_run(source)
    (Path(source.artifact_root) / RUN_ID / "console.log").write_bytes(b"edited\n")
    with pytest.raises(StoreError, match="changed since it was recorded"):
        export_run(source, RUN_ID, tmp_path / "run.tar.gz")
    assert not (tmp_path / "run.tar.gz").exists() and list(tmp_path.glob("*.tmp")) == []
    (Path(source.artifact_root) / RUN_ID / "console.log").unlink()
    with pytest.raises(StoreError, match="missing"):
        export_run(source, RUN_ID, tmp_path / "run.tar.gz")


def rebuild(archive: Path, out: Path, extra: list[tuple[tarfile.TarInfo, bytes | None]] = (),
            change: dict[str, bytes] | None = None) -> Path:
    """Copy an exported archive, adding crafted members or replacing some members' bytes."""
    with tarfile.open(archive, "r:gz") as src, tarfile.open(out, "w:gz") as dst:
        for info in src.getmembers():
            data = src.extractfile(info).read() if info.isreg() else None
            if change and info.name in change:
                data = change[info.name]
                info.size = len(data)
            dst.addfile(info, io.BytesIO(data) if data is not None else None)
        for info, data in extra:
            if data is not None:
                info.size = len(data)
            dst.addfile(info, io.BytesIO(data) if data is not None else None)
    return out


MALICIOUS = {
    "dotdot": (tar_member("artifacts/../../evil"), b"evil"),
    "absolute": (tar_member("/tmp/striate-evil-abs"), b"evil"),
    "symlink-to-passwd": (tar_member("artifacts/passwd", tarfile.SYMTYPE, "/etc/passwd"), None),
    "hardlink-outside": (tar_member("artifacts/linked", tarfile.LNKTYPE, "../../../outside"), None),
    "device": (tar_member("artifacts/dev", tarfile.CHRTYPE), None),
}


def assert_nothing_written(store: SqlStore) -> None:
    assert store.list_runs() == []
    assert list(Path(store.artifact_root).iterdir()) == []


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_malicious_archives_are_refused_before_anything_is_written(
        tmp_path: Path, stores: tuple[SqlStore, SqlStore], case: str) -> None:
    source, target = stores
    make_run(source)
    export_run(source, RUN_ID, tmp_path / "run.tar.gz")
    evil = rebuild(tmp_path / "run.tar.gz", tmp_path / "evil.tar.gz", extra=[MALICIOUS[case]])
    with pytest.raises(ConfigError, match="unsafe"):
        import_run(target, evil)
    assert_nothing_written(target)
    assert not (tmp_path / "evil").exists() and not Path("/tmp/striate-evil-abs").exists()


def test_altered_artifact_bytes_and_bad_ids_are_refused(tmp_path: Path, stores: tuple[SqlStore, SqlStore]) -> None:
    source, target = stores
    make_run(source)
    export_run(source, RUN_ID, tmp_path / "run.tar.gz")
    tampered = rebuild(tmp_path / "run.tar.gz", tmp_path / "t.tar.gz", change={"artifacts/console.log": b"evil!!!!"})
    with pytest.raises(ConfigError, match="does not match its recorded SHA-256"):
        import_run(target, tampered)
    assert_nothing_written(target)

    with tarfile.open(tmp_path / "run.tar.gz", "r:gz") as tar:
        manifest = json.loads(tar.extractfile("run.json").read())
    manifest["record"]["id"] = "../../escaped"
    bad_id = rebuild(tmp_path / "run.tar.gz", tmp_path / "id.tar.gz",
                     change={"run.json": json.dumps(manifest).encode()})
    with pytest.raises(ConfigError, match="not a valid id"):
        import_run(target, bad_id)
    unlisted = rebuild(tmp_path / "run.tar.gz", tmp_path / "u.tar.gz",
                       extra=[(tar_member("artifacts/extra.bin"), b"x")])
    with pytest.raises(ConfigError, match="not listed in run.json"):
        import_run(target, unlisted)
    assert_nothing_written(target)


def test_cli_round_trip_with_json(tmp_path: Path, stores: tuple[SqlStore, SqlStore]) -> None:
    source, _ = stores
    make_run(source)
    out = tmp_path / "exported.tar.gz"
    done = run_cli("export-run", RUN_ID[:6], str(out), "--store", str(tmp_path / "a"), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["id"] == RUN_ID
    again = run_cli("export-run", RUN_ID, str(out), "--store", str(tmp_path / "a"))
    assert again.returncode == 2 and "already exists" in again.stderr and "--force" in again.stderr

    done = run_cli("import-run", str(out), "--store", str(tmp_path / "c"), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"id": RUN_ID, "name": "brave-lenet", "imported": True, "metrics": 2,
                                       "points": 153, "artifacts": 2, "files": 3}
    shown = run_cli("show", RUN_ID, "--store", str(tmp_path / "c"), "--json")
    assert json.loads(shown.stdout)["status"] == "failed"

    evil = rebuild(out, tmp_path / "evil.tar.gz", extra=[MALICIOUS["dotdot"]])
    refused = run_cli("import-run", str(evil), "--store", str(tmp_path / "d"))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "unsafe" in refused.stderr


def test_force_replaces_files_never_devices_folders_or_links(tmp_path):
    import os

    import striate
    from striate.errors import ConfigError
    from striate.tracking.store import open_store

    store = open_store(tmp_path / "s")
    run = striate.init(store=store, system_metrics=False, capture_environment=False, capture_console=False)
    run.finish()
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep")
    link = tmp_path / "link.tar.gz"
    os.symlink(target, link)
    for out in (Path("/dev/null"), tmp_path, link):
        with pytest.raises(ConfigError, match="is not a regular file"):
            export_run(store, run.id, out, overwrite=True)
    assert Path("/dev/null").is_char_device() and target.read_text() == "keep"


def test_force_never_writes_inside_the_store(tmp_path: Path, stores: tuple[SqlStore, SqlStore]) -> None:
    source, _ = stores
    make_run(source)
    folder = tmp_path / "a"
    database = folder / "striate.db"
    before = database.read_bytes()
    recorded = sorted(p for p in (folder / "artifacts").rglob("*") if p.is_file())
    (tmp_path / "db-link").symlink_to(database)
    for out in (database, recorded[0], tmp_path / "db-link", folder / "run.tar.gz"):
        refused = run_cli("export-run", RUN_ID, str(out), "--store", str(folder), "--force")
        assert refused.returncode == 2 and "inside the store folder" in refused.stderr, refused.stderr
    assert database.read_bytes() == before and not (folder / "run.tar.gz").exists()
    assert sorted(p for p in (folder / "artifacts").rglob("*") if p.is_file()) == recorded
