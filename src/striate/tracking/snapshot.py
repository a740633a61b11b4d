"""Code snapshots: a deterministic, content-addressed tar.gz of a run's source files, and a safe restore.

The content address (``sha256``) is the SHA-256 of the *uncompressed* tar stream: entries are
sorted and carry fixed mtimes, owners and modes, so the same tree always gives the same hash,
whatever zlib build compressed it. ``archive_sha256`` is the hash of the .tar.gz file itself.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from striate.archives import check_members, extract_members, give_user_mode, open_archive, unsafe_name
from striate.errors import ConfigError

MAX_TOTAL_BYTES = 20_000_000
MAX_FILE_BYTES = 2_000_000
MAX_SKIPPED_LISTED = 1000  # a huge tree must not make the run record huge
RESTORE_MAX_BYTES = 1 << 30  # what a snapshot may expand to when restored (they are written capped far below)
MAX_SCANNED_FILES = 20_000  # started from a home folder, the walk must not take minutes
_ALWAYS_SKIPPED_DIRS = {".git", ".hg", ".svn", "__pycache__", "striate-runs"}


def snapshot_source(root: Path, dest: Path, max_total_bytes: int = MAX_TOTAL_BYTES,
                    max_file_bytes: int = MAX_FILE_BYTES) -> dict[str, Any]:
    """Archive the source files under ``root`` (honouring .gitignore) into ``dest``/code-<sha>.tar.gz."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise ConfigError(f"cannot snapshot {root}: not a folder", "pass the project's root folder")
    skipped: list[dict[str, str]] = []
    files = _walk_source(root, Path(dest).resolve(), skipped)
    info = _write_archive(root, files, Path(dest), max_total_bytes, max_file_bytes, skipped)
    if len(files) >= MAX_SCANNED_FILES:
        info["truncated"] = True
    return info


def snapshot_files(root: Path, relative_paths: Iterable[str], dest: Path, max_total_bytes: int = MAX_TOTAL_BYTES,
                   max_file_bytes: int = MAX_FILE_BYTES) -> dict[str, Any]:
    """Archive only ``relative_paths`` (e.g. a git repo's untracked files) of ``root`` into ``dest``."""
    root = Path(root).resolve()
    skipped: list[dict[str, str]] = []
    chosen: set[str] = set()
    for rel in relative_paths:
        name = str(PurePosixPath(str(rel).replace(os.sep, "/")))
        problem = unsafe_name(name)
        if problem:
            _note(skipped, str(rel), problem)
            continue
        path = root / name
        if path.is_symlink() or not path.exists():
            _note(skipped, name, "link" if path.is_symlink() else "missing")
        elif not path.is_file():
            _note(skipped, name, "not a regular file")
        else:
            chosen.add(name)
    return _write_archive(root, sorted(chosen), Path(dest), max_total_bytes, max_file_bytes, skipped)


def restore_snapshot(archive: Path, target: Path, sha256: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Extract a code snapshot into ``target``, refusing unsafe members (and a wrong ``sha256`` when given)."""
    archive, target = Path(archive), Path(target)
    if sha256 is not None:
        found = content_sha256(archive)
        if found != sha256:
            raise ConfigError(f"code snapshot {archive} has content hash {found[:16]}, expected {sha256[:16]}",
                              "the archive was altered or is another run's; fetch the right one")
    with open_archive(archive) as tar:
        members = check_members(tar, archive, max_bytes=RESTORE_MAX_BYTES,
                                limit_name=f"the restore limit of {RESTORE_MAX_BYTES:,}",
                                limit_hint="a code snapshot striate wrote is at most a few tens of MB; "
                                           "fetch the run's own snapshot")
        if not overwrite:
            clashes = [m.name for m in members if m.isreg() and (target / m.name).exists()]
            if clashes:
                raise ConfigError(f"restoring {archive.name} would overwrite {target / clashes[0]}"
                                  + (f" and {len(clashes) - 1} more file(s)" if len(clashes) > 1 else ""),
                                  "restore into an empty folder, or pass overwrite=True")
        target.mkdir(parents=True, exist_ok=True)
        extract_members(tar, members, target)
    return {"files": sum(1 for m in members if m.isreg()), "target": str(target)}


def content_sha256(archive: Path) -> str:
    """SHA-256 of a .tar.gz's uncompressed tar stream: the content address of a snapshot."""
    digest = hashlib.sha256()
    try:
        with gzip.open(archive, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except (OSError, EOFError) as exc:
        raise ConfigError(f"cannot read {archive}: {exc}", "check that it is a complete .tar.gz file") from None
    return digest.hexdigest()


# -- internals ------------------------------------------------------------------------------------
def _note(skipped: list[dict[str, str]], path: str, reason: str) -> None:
    if len(skipped) < MAX_SKIPPED_LISTED:
        skipped.append({"path": path, "reason": reason})


def _walk_source(root: Path, dest: Path, skipped: list[dict[str, str]]) -> list[str]:
    """Relative POSIX paths of the source files under ``root``, sorted, .gitignore rules applied."""
    import pathspec

    specs: dict[tuple[str, ...], pathspec.GitIgnoreSpec] = {}
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        parts = here.relative_to(root).parts
        ignore_file = here / ".gitignore"
        if ignore_file.is_file():
            lines = ignore_file.read_text(encoding="utf-8", errors="replace").splitlines()
            specs[parts] = pathspec.GitIgnoreSpec.from_lines(lines)
        keep = []
        for name in sorted(dirnames):
            path = here / name
            rel = "/".join(parts + (name,))
            if name in _ALWAYS_SKIPPED_DIRS or path == dest or _is_venv_or_store(path):
                continue
            if path.is_symlink():
                _note(skipped, rel, "link")
            elif not _ignored(specs, parts + (name,), is_dir=True):
                keep.append(name)
        dirnames[:] = keep  # os.walk descends only into what is left here
        for name in sorted(filenames):
            path = here / name
            rel = "/".join(parts + (name,))
            if name == ".git" or _ignored(specs, parts + (name,), is_dir=False):
                continue
            if path.is_symlink():
                _note(skipped, rel, "link")
            elif path.is_file():
                found.append(rel)
        if len(found) >= MAX_SCANNED_FILES:
            _note(skipped, "/".join(parts) or ".", f"stopped after {MAX_SCANNED_FILES} files")
            break
    return sorted(found)


def _is_venv_or_store(path: Path) -> bool:
    from striate.tracking.store import holds_store

    return (path / "pyvenv.cfg").is_file() or holds_store(path)


def _ignored(specs: dict[tuple[str, ...], Any], parts: tuple[str, ...], is_dir: bool) -> bool:
    # Git semantics: a deeper .gitignore overrides a shallower one; inside one file the last match wins.
    ignored = False
    for depth in range(len(parts)):
        spec = specs.get(parts[:depth])
        if spec is None:
            continue
        sub = "/".join(parts[depth:]) + ("/" if is_dir else "")
        result = spec.check_file(sub)
        if result.include is not None:
            ignored = bool(result.include)
    return ignored


class _HashingWriter:
    """Hashes the uncompressed tar stream on its way into gzip."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return int(self.sink.write(data))


def _write_archive(root: Path, files: list[str], dest: Path, max_total_bytes: int, max_file_bytes: int,
                   skipped: list[dict[str, str]]) -> dict[str, Any]:
    dest.mkdir(parents=True, exist_ok=True)
    total = count = 0
    truncated = False
    fd, tmp_name = tempfile.mkstemp(prefix=".code-", suffix=".tar.gz.tmp", dir=dest)
    try:
        with os.fdopen(fd, "wb") as raw:
            # filename="" and mtime=0 keep the gzip header free of anything that varies between runs
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
                writer = _HashingWriter(gz)
                with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                    for rel in files:
                        path = root / rel
                        try:
                            stat = path.stat()
                            if stat.st_size > max_file_bytes:
                                _note(skipped, rel, f"larger than {max_file_bytes} bytes")
                                continue
                            data = path.read_bytes()  # one read: the size recorded is the size written
                        except OSError as exc:
                            _note(skipped, rel, f"unreadable: {exc.strerror}")
                            continue
                        if total + len(data) > max_total_bytes:
                            truncated = True
                            _note(skipped, rel, f"snapshot reached its {max_total_bytes}-byte limit here")
                            break
                        info = tarfile.TarInfo(rel)
                        info.size = len(data)
                        info.mode = 0o755 if stat.st_mode & 0o111 else 0o644
                        info.mtime = 0
                        info.uid = info.gid = 0
                        info.uname = info.gname = ""
                        tar.addfile(info, io.BytesIO(data))
                        total += len(data)
                        count += 1
        sha = writer.digest.hexdigest()
        final = dest / f"code-{sha[:16]}.tar.gz"
        give_user_mode(Path(tmp_name))  # mkstemp made it 0600; the snapshot is an ordinary file of the store
        os.replace(tmp_name, final)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    archive_digest = hashlib.sha256(final.read_bytes()).hexdigest()
    return {"sha256": sha, "archive_sha256": archive_digest, "files": count, "bytes": total,
            "skipped": skipped, "truncated": truncated, "path": str(final)}
