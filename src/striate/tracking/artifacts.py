"""A run's artifact files: listing them, and copying them out of the store into a folder of the user's.

Artifact paths are stored text, and a store may hold an imported or hand-edited record: a path that
is absolute or climbs out with '..' could name a file anywhere. Every path is checked before anything
is copied, each copy must land inside the target folder and come from inside the run's folder (the
store's ``artifact_file``: its own folder, or for a team server a verified download into the local
cache), and each copied file is checked against its recorded SHA-256.
"""

from __future__ import annotations

import difflib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from striate.archives import give_user_mode, unsafe_name
from striate.errors import ConfigError, StoreError
from striate.tracking.store.base import RunRecord, Store, artifact_path_problem, file_sha256


def select_artifacts(record: RunRecord, path: str | None = None) -> list[dict[str, Any]]:
    """The run's artifacts (path, kind, size, sha256), sorted by path; with ``path``, that file or the files
    under that folder, or a ConfigError naming the closest artifact path."""
    rows = sorted(({"path": a["path"], "kind": a.get("kind") or "file", "size": int(a.get("size") or 0),
                    "sha256": a.get("sha256") or ""} for a in record.artifacts), key=lambda a: a["path"])
    if path is None:
        return rows
    wanted = path.strip("/")
    chosen = [a for a in rows if a["path"] == wanted or a["path"].startswith(wanted + "/")]
    if not chosen:
        close = difflib.get_close_matches(wanted, [a["path"] for a in rows], n=1, cutoff=0.4)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"run {record.id[:8]} has no artifact {path!r}",
                          f"{hint}`striate artifacts {record.id[:8]}` lists them" if rows else
                          "this run has no artifacts")
    return chosen


def download_artifacts(store: Store, record: RunRecord, dest: Path, path: str | None = None,
                       overwrite: bool = False) -> list[dict[str, Any]]:
    """Copy the run's artifacts (all, or ``path``) into ``dest``, keeping their relative paths; return them
    with the file each was written to, its size, and whether its hash was checked (False: none recorded).
    Nothing is copied when any chosen path is unsafe or missing or any file fails its recorded hash."""
    chosen = select_artifacts(record, path)
    dest = Path(dest)
    target_root = dest.resolve()
    checked: list[tuple[dict[str, Any], Path]] = []
    for artifact in chosen:  # every path checked before any file is fetched or copied
        rel = artifact["path"]
        problem = unsafe_name(rel) or artifact_path_problem(rel)
        target = (target_root / rel).resolve()
        if problem is None and not target.is_relative_to(target_root):
            link = _first_link(target_root, rel)
            if link is not None:  # the record is fine: the user's folder holds a link that leads elsewhere
                raise ConfigError(f"{dest} contains a symlink at {link}: artifact {rel} would be written through it "
                                  "outside the folder; nothing was copied",
                                  "remove the link, or download into another folder")
            problem = f"it would be written outside {dest}"
        if problem:
            raise StoreError(f"refusing artifact path {rel!r} of run {record.id[:8]}: {problem}",
                             "the run's record was altered or imported from an untrusted source; nothing was copied")
        if target.exists() and not overwrite and not (target.is_file() and file_sha256(target) == artifact["sha256"]):
            raise ConfigError(f"{target} already exists", "choose an empty folder, or pass --force to replace it")
        checked.append((artifact, target))
    plan: list[tuple[dict[str, Any], Path, Path]] = []
    for artifact, target in checked:
        # The store's file: in its artifact folder (checked to stay in the run's folder), or fetched from a
        # team server into the local cache and checked against the recorded SHA-256.
        try:
            source = store.artifact_file(record.id, artifact["path"])
        except StoreError as exc:
            raise StoreError(f"{exc.problem}; nothing was copied",
                             exc.fix or "restore the file, or download the others by path") from None
        plan.append((artifact, source, target))
    for artifact, source, _ in plan:  # every hash before any copy: a damaged file leaves no partial download
        if artifact["sha256"] and (digest := file_sha256(source)) != artifact["sha256"]:
            raise StoreError(f"artifact {artifact['path']} of run {record.id[:8]} does not match its recorded "
                             f"SHA-256 (file {digest[:12]}, recorded {artifact['sha256'][:12]})",
                             "the stored file was changed or damaged; nothing was copied (download the others "
                             "by path)")
    done = []
    for artifact, source, target in plan:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}-", suffix=".part", dir=target.parent)
            os.close(fd)
            try:
                shutil.copyfile(source, tmp_name)
                digest = file_sha256(tmp_name)
                if artifact["sha256"] and digest != artifact["sha256"]:
                    raise StoreError(f"artifact {artifact['path']} of run {record.id[:8]} does not match its "
                                     f"recorded SHA-256 (file {digest[:12]}, recorded {artifact['sha256'][:12]})",
                                     "the stored file was changed or damaged; it was not copied")
                give_user_mode(Path(tmp_name))
                os.replace(tmp_name, target)
            finally:
                Path(tmp_name).unlink(missing_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot write {target}: {exc.strerror or exc}",
                              "choose a folder you can write to, with free space") from None
        # size: of the file written; checked: False when no hash was recorded (nothing to verify against)
        done.append({**artifact, "file": str(target), "size": target.stat().st_size,
                     "checked": bool(artifact["sha256"])})
    return done


def _first_link(root: Path, rel: str) -> Path | None:
    """The first symlink on the way from ``root`` down ``rel``, if any."""
    here = root
    for part in Path(rel).parts:
        here = here / part
        if here.is_symlink():
            return here
    return None

