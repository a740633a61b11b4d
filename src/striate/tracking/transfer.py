"""Portable runs: one run — record, every metric point, every artifact — as one .tar.gz that moves between stores.

Layout of the archive:
    run.json       {"format": "striate-run", "version": 1, "record": <RunRecord>, "metric_keys": [...],
                    "files": {<artifact path>: {"size": N, "sha256": ...}}}
    metrics.npz    m<i>_steps / m<i>_times / m<i>_values for metric_keys[i] (keys hold '/', npz names cannot)
    artifacts/...  every regular file of the run's artifact folder

An import keeps the run id, so ``reproduction_of`` links survive a move. Importing a run that is
already in the store with the same record, metrics and artifacts reports it as already there and
writes nothing; a different run with that id is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy as np

from striate.archives import check_members, extract_members, open_archive, unsafe_name
from striate.errors import ConfigError, StoreError
from striate.tracking.store.base import RUN_STATUSES, MetricSeries, RunRecord, Store, file_sha256

FORMAT = "striate-run"
FORMAT_VERSION = 1
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # the id names a folder: nothing that could leave the store
_POINTS_PER_BATCH = 1_000_000  # keeps each stored chunk (one row) a few tens of MB at most
_DERIVED_FIELDS = ("metrics", "artifacts")  # recomputed by the target store as points and files arrive


def export_run(store: Store, run_id: str, out: Path, overwrite: bool = False) -> dict[str, Any]:
    """Write run ``run_id`` of ``store`` — record, metric points, artifacts — to the archive ``out``."""
    record = store.get_run(run_id)
    out = Path(out)
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} already exists", "choose another file name, or pass --force to replace it")
    folder = Path(store.artifact_root) / record.id
    files, skipped = _artifact_files(folder)
    for artifact in record.artifacts:
        if artifact["path"] not in files:
            raise StoreError(f"artifact {artifact['path']} of run {record.id[:8]} is recorded but its file is "
                             f"missing from {folder}", "restore the file, or forget it with the Python API's "
                             "store.remove_artifact, then export again")
    keys = sorted(record.metrics)
    arrays: dict[str, np.ndarray] = {}
    points = 0
    for i, key in enumerate(keys):
        series = store.history(record.id, key)
        arrays[f"m{i}_steps"], arrays[f"m{i}_times"], arrays[f"m{i}_values"] = series.steps, series.times, series.values
        points += len(series)
    metrics_blob = io.BytesIO()
    np.savez_compressed(metrics_blob, **arrays)  # type: ignore[arg-type]  # stubs fear an "allow_pickle" key

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}-", suffix=".tmp", dir=out.parent)
    os.close(fd)
    manifest: dict[str, Any] = {"format": FORMAT, "version": FORMAT_VERSION, "exported_at": time.time(),
                                "record": dataclasses.asdict(record), "metric_keys": keys, "files": {}}
    recorded = {a["path"]: a["sha256"] for a in record.artifacts if a.get("sha256")}
    try:
        with tarfile.open(tmp_name, "w:gz") as tar:
            _add_bytes(tar, "metrics.npz", metrics_blob.getvalue())
            for rel in files:
                size, digest = _add_file(tar, f"artifacts/{rel}", folder / rel)
                if rel in recorded and recorded[rel] != digest:
                    raise StoreError(f"artifact {rel} of run {record.id[:8]} changed since it was recorded "
                                     f"(sha256 {digest[:16]}, recorded {recorded[rel][:16]})",
                                     "restore the original file, or re-log it as a new artifact, then export again")
                manifest["files"][rel] = {"size": size, "sha256": digest}
            # run.json last: it carries the hashes measured while the files were written
            _add_bytes(tar, "run.json", json.dumps(manifest, indent=1, default=str).encode())
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return {"id": record.id, "name": record.name, "path": str(out), "bytes": out.stat().st_size,
            "sha256": file_sha256(out), "metrics": len(keys), "points": points,
            "artifacts": len(record.artifacts), "files": len(files), "skipped": skipped}


def import_run(store: Store, archive: Path) -> str:
    """Restore an exported run into ``store`` under its original id; return that id."""
    return str(import_run_details(store, archive)["id"])


def import_run_details(store: Store, archive: Path) -> dict[str, Any]:
    """Import like :func:`import_run`, returning what happened: id, imported (False if already there), counts."""
    archive = Path(archive)
    with open_archive(archive) as tar:
        members = {str(PurePosixPath(m.name)): m for m in check_members(tar, archive)}
        for name in members:
            if name not in ("run.json", "metrics.npz", "artifacts") and not name.startswith("artifacts/"):
                raise ConfigError(f"refusing {archive}: unexpected member {name!r}",
                                  "import only archives written by `striate export-run`")
        manifest = _read_manifest(tar, members, archive)
        record = _record_from(manifest["record"], archive)
        # Whatever the archive claims, this run's code and record came from elsewhere: `reproduce` asks first.
        record.environment = {**(record.environment if isinstance(record.environment, dict) else {}),
                              "imported_from": {"archive": archive.name, "imported_at": time.time()}}
        files: dict[str, dict[str, Any]] = manifest["files"]
        artifact_members = _check_files(members, files, manifest["record"].get("artifacts", []), archive)
        series = _read_metrics(tar, members, manifest["metric_keys"], archive)
        points = sum(len(s) for s in series)
        counts = {"metrics": len(series), "points": points, "artifacts": len(manifest["record"]["artifacts"]),
                  "files": len(files)}

        existing = store.get_runs([record.id])
        if existing:
            if _same_run(existing[0], manifest["record"]):
                return {"id": record.id, "name": record.name, "imported": False, **counts}
            raise StoreError(f"a different run with id {record.id} is already in this store",
                             f"delete it first (`striate delete {record.id[:8]}`) or import into another --store")
        folder = Path(store.artifact_root) / record.id
        if folder.exists() and any(folder.iterdir()):
            raise StoreError(f"the artifact folder {folder} exists but belongs to no run in this store",
                             "move it aside, then import again")

        Path(store.artifact_root).mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".import-{record.id[:8]}-", dir=store.artifact_root))
        created = False
        try:
            extract_members(tar, artifact_members, staging)
            for rel, expected in files.items():
                if file_sha256(staging / "artifacts" / rel) != expected["sha256"]:
                    raise ConfigError(f"artifact {rel} in {archive} does not match its recorded SHA-256",
                                      "the archive is corrupt or was altered; export the run again")
            store.create_run(record)
            created = True
            for batch in _batches(series):
                store.log_batch(record.id, batch)
            if files:
                if folder.exists():
                    folder.rmdir()  # empty (checked above); os.replace needs the name free
                os.replace(staging / "artifacts", folder)
            for artifact in manifest["record"]["artifacts"]:
                store.add_artifact(record.id, artifact["path"], str(artifact.get("kind") or "file"),
                                   int(files[artifact["path"]]["size"]), files[artifact["path"]]["sha256"])
        except BaseException:
            if created:  # leave the store as it was: no half-imported run
                store.delete_run(record.id)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return {"id": record.id, "name": record.name, "imported": True, **counts}


# -- export helpers -------------------------------------------------------------------------------
def _artifact_files(folder: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Relative POSIX paths of the regular files under ``folder``; links are skipped (and listed)."""
    files: list[str] = []
    skipped: list[dict[str, str]] = []
    if not folder.is_dir():
        return files, skipped
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        for name in sorted(dirnames):
            if (here / name).is_symlink():
                skipped.append({"path": (here / name).relative_to(folder).as_posix(), "reason": "link"})
        for name in filenames:
            path = here / name
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink() or not path.is_file():
                skipped.append({"path": rel, "reason": "link" if path.is_symlink() else "not a regular file"})
            else:
                files.append(rel)
    return sorted(files), skipped


class _HashingReader:
    """Hashes a file while tarfile copies it, so the recorded hash is that of the bytes archived."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(size)
        self.digest.update(data)
        return data


def _add_file(tar: tarfile.TarFile, arcname: str, path: Path) -> tuple[int, str]:
    with path.open("rb") as fh:
        info = tar.gettarinfo(fileobj=fh, arcname=arcname)
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode = 0o644
        reader = _HashingReader(fh)
        tar.addfile(info, reader)
    return info.size, reader.digest.hexdigest()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))




# -- import helpers -------------------------------------------------------------------------------
def _bad(archive: Path, problem: str) -> ConfigError:
    return ConfigError(f"{archive} is not a valid striate run archive: {problem}",
                       "import only archives written by `striate export-run`")


def _read_member(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str, archive: Path) -> bytes:
    member = members.get(name)
    handle = tar.extractfile(member) if member is not None and member.isreg() else None
    if handle is None:
        raise _bad(archive, f"{name} is missing")
    return handle.read()


def _read_manifest(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], archive: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(_read_member(tar, members, "run.json", archive))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _bad(archive, f"run.json is not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _bad(archive, "run.json does not describe a striate run")
    if not isinstance(manifest.get("version"), int) or manifest["version"] > FORMAT_VERSION:
        raise ConfigError(f"{archive} has run-archive version {manifest.get('version')!r}, newer than this "
                          f"striate understands ({FORMAT_VERSION})", "upgrade striate: pip install -U striate")
    shapes = {"record": dict, "metric_keys": list, "files": dict}
    for key, kind in shapes.items():
        if not isinstance(manifest.get(key), kind):
            raise _bad(archive, f"run.json field {key!r} is missing or not a {kind.__name__}")
    if not isinstance(manifest["record"].get("artifacts", []), list):
        raise _bad(archive, "record.artifacts is not a list")
    manifest["record"].setdefault("artifacts", [])
    return manifest


def _record_from(data: dict[str, Any], archive: Path) -> RunRecord:
    names = {f.name for f in dataclasses.fields(RunRecord)} - set(_DERIVED_FIELDS)
    run_id = data.get("id")
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise _bad(archive, f"run id {run_id!r} is not a valid id")
    if data.get("status") not in RUN_STATUSES:
        raise _bad(archive, f"run status {data.get('status')!r} is not one of {', '.join(RUN_STATUSES)}")
    try:
        return RunRecord(**{k: v for k, v in data.items() if k in names})
    except TypeError as exc:
        raise _bad(archive, f"the run record is incomplete ({exc})") from None


def _check_files(members: dict[str, tarfile.TarInfo], files: dict[str, Any], artifacts: list[Any],
                 archive: Path) -> list[tarfile.TarInfo]:
    """The archive's artifact members, after checking they match run.json's file list exactly."""
    for rel, meta in files.items():
        problem = unsafe_name(rel)
        if problem:
            raise ConfigError(f"refusing {archive}: artifact path {rel!r} is unsafe: {problem}",
                              "only import archives written by striate from a source you trust")
        member = members.get(f"artifacts/{PurePosixPath(rel)}")
        if member is None or not member.isreg():
            raise _bad(archive, f"artifact {rel} is listed but not in the archive")
        if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str) or meta.get("size") != member.size:
            raise _bad(archive, f"artifact {rel} has no hash or a wrong size in run.json")
    listed = {f"artifacts/{PurePosixPath(rel)}" for rel in files}
    chosen = [m for name, m in members.items() if name.startswith("artifacts/") and m.isreg()]
    extra = [m.name for m in chosen if str(PurePosixPath(m.name)) not in listed]
    if extra:  # an unlisted file would arrive unverified
        raise _bad(archive, f"member {extra[0]!r} is not listed in run.json")
    for artifact in artifacts:
        if not isinstance(artifact, dict) or artifact.get("path") not in files:
            raise _bad(archive, f"recorded artifact {artifact!r} has no file in the archive")
        if artifact.get("sha256") and artifact["sha256"] != files[artifact["path"]]["sha256"]:
            raise _bad(archive, f"artifact {artifact['path']} has two different hashes in run.json")
    return chosen


def _read_metrics(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], keys: list[Any],
                  archive: Path) -> list[MetricSeries]:
    if not keys:
        return []
    if not all(isinstance(k, str) for k in keys):
        raise _bad(archive, "metric_keys must be strings")
    try:
        with np.load(io.BytesIO(_read_member(tar, members, "metrics.npz", archive)), allow_pickle=False) as npz:
            series = []
            for i, key in enumerate(keys):
                steps, times, values = (npz[f"m{i}_{part}"] for part in ("steps", "times", "values"))
                if not (steps.ndim == times.ndim == values.ndim == 1 and len(steps) == len(times) == len(values)):
                    raise _bad(archive, f"metric {key!r} has arrays of different lengths")
                series.append(MetricSeries(key, steps.astype(np.int64), times.astype(np.float64),
                                           values.astype(np.float64)))
    except (KeyError, ValueError, OSError) as exc:
        raise _bad(archive, f"metrics.npz is incomplete or corrupt ({exc})") from None
    return series


def _batches(series: list[MetricSeries]) -> list[list[MetricSeries]]:
    batches: list[list[MetricSeries]] = []
    for s in series:
        for start in range(0, len(s), _POINTS_PER_BATCH):
            end = start + _POINTS_PER_BATCH
            batches.append([MetricSeries(s.key, s.steps[start:end], s.times[start:end], s.values[start:end])])
    return batches


def _same_run(existing: RunRecord, archived: dict[str, Any]) -> bool:
    """Whether the store already holds exactly the archived run (fields, metric summaries, artifacts)."""
    def canonical(value: Any) -> str:
        return json.dumps(value, sort_keys=True, default=str)

    def without_origin(record: dict[str, Any]) -> dict[str, Any]:
        env = record.get("environment")
        if isinstance(env, dict):  # the import marker differs between two imports of one archive
            record = {**record, "environment": {k: v for k, v in env.items() if k != "imported_from"}}
        return record

    mine = json.loads(canonical(dataclasses.asdict(existing)))  # same JSON round trip as the archive had
    return canonical(without_origin(mine)) == canonical(without_origin({**{k: None for k in mine}, **archived}))
