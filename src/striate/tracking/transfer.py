"""Portable runs: one run — record, every metric point, every artifact — as one .tar.gz that moves between stores.

Layout of the archive:
    run.json       {"format": "striate-run", "version": 1, "record": <RunRecord>, "metric_keys": [...],
                    "files": {<artifact path>: {"size": N, "sha256": ...}}}
    metrics.npz    m<i>_steps / m<i>_times / m<i>_values for metric_keys[i] (keys hold '/', npz names cannot)
    artifacts/...  every regular file of the run's artifact folder

An import keeps the run id, so ``reproduction_of`` links survive a move. Importing a run that is
already in the store with the same record, metrics and artifacts reports it as already there and
writes nothing; a different run with that id is refused.

An archive is untrusted input (docs/security.md): its record goes through :func:`validate_record`
(shared with the MLflow importer), what it may expand to is capped (:data:`IMPORT_LIMITS`, checked
from declared sizes before anything is read into memory), and an import is all or nothing: the run
stays hidden and marked incomplete until every point and file is in, and importing again after a
killed import removes the leftover and starts afresh.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import re
import shutil
import socket
import tarfile
import tempfile
import time
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Iterator

import numpy as np

from striate.archives import check_members, extract_members, give_user_mode, open_archive, unsafe_name
from striate.errors import ConfigError, StoreError
from striate.tracking.store.base import RUN_STATUSES, ArtifactMissingError, MetricSeries, RunRecord, Store, file_sha256
from striate.tracking.store.limits import record_problem
from striate.tracking.store.schema import LIMITS

FORMAT = "striate-run"
FORMAT_VERSION = 1
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,%d}" % LIMITS["id"])  # names a folder: nothing that leaves the store
_POINTS_PER_BATCH = 1_000_000  # keeps each stored chunk (one row) a few tens of MB at most
_DERIVED_FIELDS = ("metrics", "artifacts")  # recomputed by the target store as points and files arrive
# Kept by the store the run is in, never taken from an archive: a stop asked for in another store
# is no request to stop the run here.
_LOCAL_FIELDS = ("stop_requested_at",)


def export_run(store: Store, run_id: str, out: Path, overwrite: bool = False) -> dict[str, Any]:
    """Write run ``run_id`` of ``store`` — record, metric points, artifacts — to the archive ``out``."""
    record = store.get_run(run_id)
    out = Path(out)
    from striate.tracking.store import store_owning

    owner = store_owning(out, store.artifact_root)
    if owner is not None:  # --force or not: the store's database or a run's files would be replaced
        raise ConfigError(f"cannot write {out}: it is inside the store folder {owner}",
                          "write the archive outside the store folder")
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} already exists", "choose another file name, or pass --force to replace it")
    if (out.exists() or out.is_symlink()) and not (out.is_file() and not out.is_symlink()):
        # --force replaces a file, never a device, a folder or a link (as root, /dev/full was replaced)
        raise ConfigError(f"cannot write {out}: it is not a regular file", "choose a file name for the archive")
    folder = Path(store.artifact_root) / record.id
    if not store.files_are_local:  # a team server's files: fetched into the local cache (checked by SHA-256)
        for artifact in record.artifacts:
            with contextlib.suppress(ArtifactMissingError):  # named below
                store.artifact_file(record.id, artifact["path"])
    files, skipped = _artifact_files(folder)
    if not store.files_are_local:  # the cache may hold older files of the run: only what is recorded
        files = [rel for rel in files if rel in {a["path"] for a in record.artifacts}]
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

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}-", suffix=".tmp", dir=out.parent)
        os.close(fd)
    except OSError as exc:
        raise _unwritable(out, exc) from None
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
        give_user_mode(Path(tmp_name))  # mkstemp made it 0600; an archive is for sharing
        os.replace(tmp_name, out)
    except BaseException as exc:
        Path(tmp_name).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # disk full, a folder in the way, a read-only mount: one clear line
            raise _unwritable(out, exc) from None
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
    limits = import_limits()
    with open_archive(archive) as tar:
        env = IMPORT_LIMITS["max_bytes"][0]
        checked = check_members(tar, archive, max_bytes=limits["max_bytes"],
                                limit_name=f"the import limit of {limits['max_bytes']:,} ({env})",
                                limit_hint=f"if you trust this archive and have the disk, raise the limit, e.g. "
                                           f"{env}={limits['max_bytes'] * 4} striate import-run {archive}")
        members = {str(PurePosixPath(m.name)): m for m in checked}
        for name in members:
            if name not in ("run.json", "metrics.npz", "artifacts") and not name.startswith("artifacts/"):
                raise ConfigError(f"refusing {archive}: unexpected member {name!r}",
                                  "import only archives written by `striate export-run`")
        expanded = sum(m.size for m in members.values() if m.isreg())
        _check_limit(archive, "its members expand to", expanded, "bytes", "max_bytes", limits)
        manifest = _read_manifest(tar, members, archive)
        record = validate_record(manifest["record"], f"{archive} is not a valid striate run archive",
                                 "import only archives written by `striate export-run`")
        # Whatever the archive claims, this run's code and record came from elsewhere: `reproduce` asks first.
        record.environment = {**record.environment,
                              "imported_from": {"archive": archive.name, "imported_at": time.time()}}
        files: dict[str, dict[str, Any]] = manifest["files"]
        artifact_members = _check_files(members, files, manifest["record"].get("artifacts", []), archive)
        metrics = _MetricsReader(tar, members, manifest["metric_keys"], archive, limits)
        counts = {"metrics": len(metrics.keys), "points": metrics.points,
                  "artifacts": len(manifest["record"]["artifacts"]), "files": len(files)}

        existing = store.get_runs([record.id])
        if existing and import_incomplete(existing[0]):
            discard_incomplete(store, existing[0])  # a killed import of this run: start it again
            existing = []
        if existing:
            validated = {k: v for k, v in dataclasses.asdict(record).items() if k not in _DERIVED_FIELDS}
            if _same_run(existing[0], {**manifest["record"], **validated}):
                return {"id": record.id, "name": record.name, "imported": False, **counts}
            raise StoreError(f"a different run with id {record.id} is already in this store",
                             f"delete it first (`striate delete {record.id[:8]}`) or import into another --store")
        folder = Path(store.artifact_root) / record.id
        remove_orphan_staging(Path(store.artifact_root))
        if folder.exists() and any(folder.iterdir()):
            raise StoreError(f"the artifact folder {folder} exists but belongs to no run in this store",
                             "move it aside, then import again")

        staging = _staging_folder(Path(store.artifact_root), record.id)
        created = False
        try:
            extract_members(tar, artifact_members, staging)
            for rel, expected in files.items():
                if file_sha256(staging / "artifacts" / rel) != expected["sha256"]:
                    raise ConfigError(f"artifact {rel} in {archive} does not match its recorded SHA-256",
                                      "the archive is corrupt or was altered; export the run again")
            begin_import(store, record)
            created = True
            for series in metrics.series():
                for batch in _batches([series]):
                    store.log_batch(record.id, batch)
            if not store.files_are_local:  # a team server: each recorded file uploaded (and checked there)
                for artifact in manifest["record"]["artifacts"]:
                    store.put_artifact_file(record.id, artifact["path"], staging / "artifacts" / artifact["path"],
                                            str(artifact.get("kind") or "file"))
            else:
                if files:
                    if folder.exists():
                        folder.rmdir()  # empty (checked above); os.replace needs the name free
                    os.replace(staging / "artifacts", folder)
                for artifact in manifest["record"]["artifacts"]:
                    store.add_artifact(record.id, artifact["path"], str(artifact.get("kind") or "file"),
                                       int(files[artifact["path"]]["size"]), files[artifact["path"]]["sha256"])
            finish_import(store, record)
        except BaseException:
            if created:  # leave the store as it was: no half-imported run
                store.delete_run(record.id)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return {"id": record.id, "name": record.name, "imported": True, **counts}


# -- limits on what an archive may expand to ------------------------------------------------------
IMPORT_LIMITS = {  # name: (environment variable, default, what it counts)
    "max_points": ("STRIATE_IMPORT_MAX_POINTS", 10_000_000, "metric points"),  # about 240 MB in memory
    "max_bytes": ("STRIATE_IMPORT_MAX_BYTES", 16 * 1024**3, "bytes"),  # all members, artifacts included
}
MANIFEST_MAX_BYTES = 64 * 1024**2  # run.json is read into memory at once; real ones are kilobytes


def import_limits() -> dict[str, int]:
    """The import limits in force: each one's environment variable, or its default."""
    limits = {}
    for name, (env, default, _) in IMPORT_LIMITS.items():
        raw = os.environ.get(env, "").strip().replace("_", "")
        try:
            limits[name] = int(raw) if raw else default
        except ValueError:
            limits[name] = -1
        if limits[name] < 1:
            raise ConfigError(f"{env}={os.environ.get(env)!r} is not a positive whole number",
                              f"set it to a number such as {default}, or unset it for the default")
    return limits


def _check_limit(archive: Path, what: str, amount: int, unit: str, name: str, limits: dict[str, int]) -> None:
    if amount > limits[name]:
        env = IMPORT_LIMITS[name][0]
        raise ConfigError(f"refusing {archive}: {what} {amount:,} {unit}, over the import limit of "
                          f"{limits[name]:,} ({env})", f"if you trust this archive and have the memory and disk, "
                          f"raise the limit, e.g. {env}={max(amount, 1) * 2} striate import-run {archive}")


# -- imports are all or nothing ---------------------------------------------------------------------
INCOMPLETE_MARKER = "import_incomplete"
_FOREIGN_IMPORT_GRACE_S = 3600.0  # how long another host's unfinished import is presumed alive
INCOMPLETE_ERROR = "import incomplete: run `striate import-run` on the same archive again to finish it"


def begin_import(store: Store, record: RunRecord) -> None:
    """Create ``record`` hidden (archived, `crashed`, marked incomplete) until :func:`finish_import` flips it."""
    owner = {"host": socket.gethostname(), "pid": os.getpid(), "pid_started_at": _process_start(os.getpid()),
             "started_at": time.time()}
    hidden = dataclasses.replace(record, status="crashed", archived=True, error=INCOMPLETE_ERROR,
                                 ended_at=record.ended_at if record.ended_at is not None else record.heartbeat_at,
                                 environment={**record.environment, INCOMPLETE_MARKER: owner})
    store.create_run(hidden)


def finish_import(store: Store, record: RunRecord) -> None:
    """Make an imported run visible as it really is, in one update: until now it was hidden and incomplete."""
    store.update_run(record.id, status=record.status, archived=record.archived, error=record.error,
                     ended_at=record.ended_at, environment=record.environment)


def import_incomplete(record: RunRecord) -> bool:
    """Whether ``record`` is what an import left when it was killed before finishing."""
    return isinstance(record.environment, dict) and INCOMPLETE_MARKER in record.environment


def discard_incomplete(store: Store, record: RunRecord) -> None:
    """Delete a killed import's leftover run (rows and artifacts); refuse while its importer still runs here."""
    owner = record.environment.get(INCOMPLETE_MARKER)
    owner = owner if isinstance(owner, dict) else {}
    if owner.get("host") == socket.gethostname():
        if owner.get("pid") != os.getpid() and _alive(owner.get("pid"), owner.get("pid_started_at")):
            raise StoreError(f"run {record.id[:8]} is being imported right now by process {owner.get('pid')}",
                             "wait for that import to finish, then run this one again")
    else:  # another host's import (a shared store): its process cannot be checked from here, only its age
        started = owner.get("started_at")
        if isinstance(started, (int, float)) and 0 <= time.time() - started < _FOREIGN_IMPORT_GRACE_S:
            raise StoreError(f"run {record.id[:8]} is being imported by host {str(owner.get('host'))[:60]!r} "
                             f"(started {time.time() - started:.0f} s ago)",
                             f"wait for it; if that import was killed, `striate delete {record.id[:8]}` "
                             "and import again")
    store.delete_run(record.id)


def _process_start(pid: int) -> float | None:
    try:
        import psutil

        return float(psutil.Process(pid).create_time())
    except Exception:  # psutil cannot tell: liveness falls back to the pid alone
        return None


def _alive(pid: Any, started_at: Any) -> bool:
    """Whether the process ``pid`` that started at ``started_at`` still runs on this host."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    now_started = _process_start(pid)
    if isinstance(started_at, (int, float)) and now_started is not None:
        return abs(now_started - started_at) < 1.0  # otherwise the pid was reused by another process
    return True


_ORPHAN_AFTER_S = 24 * 3600.0  # staging folders another host left, or older striate versions: surely dead by then


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _staging_folder(root: Path, run_id: str) -> Path:
    """A fresh ``.import-*`` folder whose name says who made it (host, pid, process start): it is created
    atomically with its owner, so a kill at any instant leaves a folder the next import can judge."""
    root.mkdir(parents=True, exist_ok=True)
    started = _process_start(os.getpid())
    prefix = f".import-{run_id[:8]}-{_host_tag()}-{os.getpid()}-{int(started or 0)}-"
    return Path(tempfile.mkdtemp(prefix=prefix, dir=root))


def remove_orphan_staging(root: Path) -> list[Path]:
    """Remove the ``.import-*`` staging folders of imports that were killed; return them."""
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for folder in root.glob(".import-*"):
        if not folder.is_dir() or folder.is_symlink():
            continue
        parts = folder.name.rsplit("-", 4)  # .import-<id>, host, pid, process start, random (no '-' in it)
        if len(parts) == 5 and parts[1] == _host_tag() and parts[2].isdigit() and parts[3].isdigit():
            orphan = not _alive(int(parts[2]), int(parts[3]) or None)
        else:
            try:
                orphan = time.time() - folder.stat().st_mtime > _ORPHAN_AFTER_S
            except OSError:
                continue
        if orphan:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


# -- validating a record that came from elsewhere ---------------------------------------------------
MAX_FUTURE_S = 24 * 3600.0  # clocks differ between hosts, by minutes; a day ahead is a broken or crafted record
MAX_NESTING = 50  # config/summary/environment/dataset depth; real ones are 2-4 levels
_REQUIRED = ("id", "name", "project", "status", "created_at", "ended_at", "heartbeat_at")
_TEXT_LIMITS = {"name": LIMITS["name"], "project": LIMITS["name"], "model": LIMITS["name"],
                "host": LIMITS["host"]}  # the store's column widths
_MAPPINGS = ("config", "summary", "environment", "dataset")


class _Invalid(Exception):
    pass


def validate_record(data: Any, source: str, fix: str, now: float | None = None) -> RunRecord:
    """A RunRecord from a foreign record (archive, MLflow), after checking every field's type and range.

    An imported run is never `running` (its process is not here): it becomes `crashed`, ended at its
    last heartbeat. Raises ConfigError("{source}: {problem}", fix) on the first bad field.
    """
    try:
        return _validated(data, time.time() if now is None else now)
    except _Invalid as exc:
        raise ConfigError(f"{source}: {exc}", fix) from None


def _validated(data: Any, now: float) -> RunRecord:
    if not isinstance(data, dict):
        raise _Invalid(f"the run record is a {type(data).__name__}, not a mapping")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise _Invalid(f"the run record is incomplete (no {', '.join(missing)})")
    names = {f.name for f in dataclasses.fields(RunRecord)} - set(_DERIVED_FIELDS) - set(_LOCAL_FIELDS)
    values = {k: v for k, v in data.items() if k in names}
    run_id = values["id"]
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise _Invalid(f"run id {_short(run_id)} is not a valid id")
    values.setdefault("notes", "")
    for key in ("name", "project", "notes", "model", "error", "host", "reproduction_of"):
        value = values.get(key)
        if value is None and key not in ("name", "project", "notes"):
            continue
        if not isinstance(value, str):
            raise _Invalid(f"{key} {_short(value)} is not a string")
        if key in _TEXT_LIMITS and len(value) > _TEXT_LIMITS[key]:
            raise _Invalid(f"{key} is {len(value)} characters long, over the store's {_TEXT_LIMITS[key]}")
    if values.get("reproduction_of") is not None and not _RUN_ID.fullmatch(values["reproduction_of"]):
        raise _Invalid(f"reproduction_of {_short(values['reproduction_of'])} is not a valid run id")
    status = values["status"]
    if status not in RUN_STATUSES:
        raise _Invalid(f"run status {_short(status)} is not one of {', '.join(RUN_STATUSES)}")
    for key in ("created_at", "heartbeat_at", "ended_at", "pid_started_at"):
        if values.get(key) is None and key in ("ended_at", "pid_started_at"):
            continue
        values[key] = _timestamp(key, values.get(key), now)
    if values["ended_at"] is not None and values["ended_at"] < values["created_at"]:
        raise _Invalid(f"ended_at {values['ended_at']} is before created_at {values['created_at']}")
    if values["heartbeat_at"] < values["created_at"]:
        raise _Invalid(f"heartbeat_at {values['heartbeat_at']} is before created_at {values['created_at']}")
    pid = values.get("pid")
    if pid is not None and (not isinstance(pid, int) or isinstance(pid, bool) or not 0 <= pid < 2**31):
        raise _Invalid(f"pid {_short(pid)} is not a process id")
    if not isinstance(values.get("archived", False), bool):
        raise _Invalid(f"archived {_short(values['archived'])} is not true or false")
    for key in _MAPPINGS:
        value = values.setdefault(key, {})
        if not isinstance(value, dict):
            raise _Invalid(f"{key} is a {type(value).__name__}, not a mapping")
        _check_nesting(key, value)
    tags = values.setdefault("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise _Invalid(f"tags {_short(tags)} is not a list of strings")
    found = record_problem(RunRecord(**values))  # the same limits as every other way into a store
    if found:
        raise _Invalid(found[0])
    if status == "running":  # its process is on another machine or gone: it can never finish here
        values["status"] = "crashed"
        values["ended_at"] = values["heartbeat_at"]
        values["error"] = values.get("error") or "imported while still running: its process is not on this host"
    return RunRecord(**values)


def _timestamp(key: str, value: Any, now: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(f"{key} {_short(value)} is not a number of seconds")
    value = float(value)
    if not math.isfinite(value) or value < 0 or value > now + MAX_FUTURE_S:
        raise _Invalid(f"{key} {value!r} is not a time between 1970 and tomorrow")
    return value


def _check_nesting(key: str, value: Any) -> None:
    """Refuse structures nested deeper than MAX_NESTING (display and flattening code recurse)."""
    level = [value]
    for _ in range(MAX_NESTING + 1):
        if not all(isinstance(k, str) for item in level if isinstance(item, dict) for k in item):
            raise _Invalid(f"{key} has a key that is not a string")
        level = [child for item in level
                 for child in (item.values() if isinstance(item, dict) else item if isinstance(item, list) else ())]
        if not level:
            return
    raise _Invalid(f"{key} nests deeper than {MAX_NESTING} levels")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- export helpers -------------------------------------------------------------------------------
def _unwritable(out: Path, exc: OSError) -> ConfigError:
    return ConfigError(f"cannot write {out}: {exc.strerror or exc}",
                       "choose a path in a folder you can write to, with free space")


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


def _read_member(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str, archive: Path,
                 max_size: int) -> bytes:
    """A member's bytes, refused before reading when its declared size is over ``max_size``."""
    member = members.get(name)
    handle = tar.extractfile(member) if member is not None and member.isreg() else None
    if handle is None or member is None:
        raise _bad(archive, f"{name} is missing")
    if member.size > max_size:
        raise _bad(archive, f"{name} is {member.size:,} bytes, over the {max_size:,} bytes it may have")
    return handle.read()  # read(n) would allocate n bytes up front; the member's size is checked above


def _read_manifest(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], archive: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(_read_member(tar, members, "run.json", archive, MANIFEST_MAX_BYTES))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _bad(archive, f"run.json is not JSON ({exc})") from None
    except RecursionError:
        raise _bad(archive, "run.json nests too deeply") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _bad(archive, "run.json does not describe a striate run")
    if not isinstance(manifest.get("version"), int) or manifest["version"] > FORMAT_VERSION:
        raise ConfigError(f"{archive} has run-archive version {_short(manifest.get('version'))}, newer than this "
                          f"striate understands ({FORMAT_VERSION})", "upgrade striate: pip install -U striate")
    shapes = {"record": dict, "metric_keys": list, "files": dict}
    for key, kind in shapes.items():
        if not isinstance(manifest.get(key), kind):
            raise _bad(archive, f"run.json field {key!r} is missing or not a {kind.__name__}")
    if not isinstance(manifest["record"].get("artifacts", []), list):
        raise _bad(archive, "record.artifacts is not a list")
    manifest["record"].setdefault("artifacts", [])
    keys = manifest["metric_keys"]
    if not all(isinstance(k, str) and 0 < len(k) <= _MAX_KEY_LENGTH for k in keys):
        raise _bad(archive, f"metric_keys must be strings of 1 to {_MAX_KEY_LENGTH} characters")
    if len(set(keys)) != len(keys):
        raise _bad(archive, "metric_keys lists a key twice")
    return manifest


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
            raise _bad(archive, f"recorded artifact {_short(artifact)} has no file in the archive")
        if len(artifact["path"]) > LIMITS["artifact_path"]:
            raise _bad(archive, f"artifact path {_short(artifact['path'])} is over the store's "
                                f"{LIMITS['artifact_path']} characters")
        kind = artifact.get("kind")
        if kind is not None and not (isinstance(kind, str) and len(kind) <= LIMITS["artifact_kind"]):
            raise _bad(archive, f"artifact {artifact['path']} has kind {_short(kind)}, not a short string")
        if artifact.get("sha256") and artifact["sha256"] != files[artifact["path"]]["sha256"]:
            raise _bad(archive, f"artifact {artifact['path']} has two different hashes in run.json")
    return chosen


_MAX_KEY_LENGTH = LIMITS["key"]  # the store's metric key column
_NUMERIC_KINDS = "iuf"  # steps are integers, times and values floats; nothing else is loaded
# what a damaged zip or .npy raises: zipfile lets zlib's errors through, and an unknown compression method
# is a NotImplementedError
_NPZ_ERRORS = (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError, zlib.error, NotImplementedError)


class _MetricsReader:
    """metrics.npz, checked from its entries' .npy headers before any array is loaded.

    The member's size and each entry's declared shape are weighed against the import limits first;
    arrays are then loaded one metric at a time (:meth:`series`), never all at once.
    """

    def __init__(self, tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], keys: list[str],
                 archive: Path, limits: dict[str, int]) -> None:
        self.keys = keys
        self.archive = archive
        self.lengths: list[int] = []
        self.points = 0
        self.blob = b""
        if not keys:
            return
        member = members.get("metrics.npz")
        # 24 bytes a point (int64 step, float64 time and value) plus zip and .npy headers: an npz larger than
        # that holds more points than the limit allows, even uncompressed
        overhead = 1024 * (3 * len(keys) + 1)
        room = max(0, (member.size if member is not None else 0) - overhead) // 24
        _check_limit(archive, "metrics.npz is large enough for", room, "metric points", "max_points", limits)
        self.blob = _read_member(tar, members, "metrics.npz", archive, limits["max_points"] * 24 + overhead)
        try:
            with zipfile.ZipFile(io.BytesIO(self.blob)) as zf:
                for i, key in enumerate(keys):
                    shapes = [self._header(zf, f"m{i}_{part}.npy", key) for part in ("steps", "times", "values")]
                    if len(set(shapes)) != 1:
                        raise _bad(archive, f"metric {key!r} has arrays of different lengths")
                    self.lengths.append(shapes[0])
                    self.points += shapes[0]
                    # each metric costs a point at least: a million empty metrics are a million transactions
                    _check_limit(archive, "metrics.npz declares", max(self.points, i + 1), "metric points",
                                 "max_points", limits)
        except _NPZ_ERRORS as exc:
            raise _bad(archive, f"metrics.npz is incomplete or corrupt ({exc})") from None

    def _header(self, zf: zipfile.ZipFile, name: str, key: str) -> int:
        """The length an entry declares, after checking it is a 1-d numeric array whose bytes add up."""
        info = zf.getinfo(name)
        with zf.open(info) as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise ValueError(f"{name} has .npy version {version}")
            header = fh.tell()
        if len(shape) != 1 or dtype.kind not in _NUMERIC_KINDS or dtype.hasobject:
            raise _bad(self.archive, f"metric {key!r}: {name} is a {dtype} array of shape {shape}, "
                                     "not a 1-d numeric array")
        if info.file_size != header + shape[0] * dtype.itemsize:
            raise _bad(self.archive, f"metric {key!r}: {name} declares {shape[0]} values but holds "
                                     f"{info.file_size - header} bytes")
        return int(shape[0])

    def series(self) -> Iterator[MetricSeries]:
        """Each metric's points, loaded one metric at a time (empty metrics are skipped)."""
        if not self.keys:
            return
        try:
            with np.load(io.BytesIO(self.blob), allow_pickle=False) as npz:
                for i, key in enumerate(self.keys):
                    if not self.lengths[i]:
                        continue
                    steps, times, values = (npz[f"m{i}_{part}"] for part in ("steps", "times", "values"))
                    times = times.astype(np.float64)
                    if not np.isfinite(times).all():
                        raise _bad(self.archive, f"metric {key!r} has a time that is not a finite number")
                    yield MetricSeries(key, steps.astype(np.int64), times, values.astype(np.float64))
        except _NPZ_ERRORS as exc:
            raise _bad(self.archive, f"metrics.npz is incomplete or corrupt ({exc})") from None


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
        return {k: v for k, v in record.items() if k not in _LOCAL_FIELDS}  # never imported: not compared

    mine = json.loads(canonical(dataclasses.asdict(existing)))  # same JSON round trip as the archive had
    return canonical(without_origin(mine)) == canonical(without_origin({**{k: None for k in mine}, **archived}))
