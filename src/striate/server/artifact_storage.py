"""Where the team server keeps artifact files: a local folder, or any fsspec URL (``s3://bucket/prefix``, ...).

A run's artifact ``path`` lives at ``ROOT/RUN_ID/PATH``. Both parts are checked before they are joined
(``check_artifact_path``: no absolute path, scheme, '..', backslash, NUL, '%' or ';'), and a run id must
be one plain name, so no request can name an object outside the run's own prefix.

Uploads arrive in a staging folder on the server's own disk (``ROOT/.uploads`` for a local folder, a
folder under the system's temporary directory otherwise), where a broken upload waits to be resumed;
only a complete file whose SHA-256 matches is moved (local) or copied (fsspec) into storage.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import BinaryIO

from striate.errors import ConflictError, StoreError, StriateError
from striate.tracking.store.base import check_artifact_path

STAGING = ".uploads"  # under a local root: no run id starts with '.'
MAX_STAGED_PER_RUN = 64  # unfinished uploads one run may have waiting on the server's disk
COPY_BLOCK = 16 * 1024 * 1024  # bytes per block copied into fsspec storage (one S3 multipart part)


def check_run_id(run_id: str) -> str:
    """A run id that can be one segment of a storage key (StoreError otherwise)."""
    if not run_id or "/" in run_id or run_id.startswith("."):
        raise StoreError(f"run id {run_id[:80]!r} cannot name an artifact folder",
                         "artifacts belong to runs whose id is a plain name (striate's ids are hex)")
    check_artifact_path(run_id)
    return run_id


class ArtifactStorage:
    """The artifact files of a server's runs."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.fs = None
        if "://" in location and not location.startswith("file://"):
            try:
                import fsspec
            except ImportError:
                raise StriateError(f"artifacts at {location} need fsspec, which is not installed",
                                   "pip install 'striate[server]' (it brings fsspec and s3fs)") from None
            try:
                self.fs, root = fsspec.core.url_to_fs(location)
            except (ImportError, ValueError) as error:
                raise StriateError(f"cannot use {location} for artifacts: {error}",
                                   "install the fsspec backend for that scheme (s3fs for s3://), or give a "
                                   "local folder") from None
            self.root = root.rstrip("/")
            digest = hashlib.sha256(location.encode()).hexdigest()[:16]
            # Under this user's own cache, not a shared temporary folder another user could prepare
            cache = Path(os.environ.get("STRIATE_CACHE") or Path.home() / ".cache" / "striate")
            self.staging = cache / "server-uploads" / digest
        else:
            self.root = str(Path(location.removeprefix("file://")).resolve())
            self.staging = Path(self.root) / STAGING
        try:
            self.staging.mkdir(parents=True, exist_ok=True, mode=0o700)
            if self.fs is None:
                Path(self.root).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"cannot create the artifact folder {error.filename}: {error.strerror}",
                             "give --artifacts a folder the server can write") from None
        info = self.staging.lstat()
        if self.staging.is_symlink() or info.st_uid != os.getuid():
            raise StoreError(f"the upload staging folder {self.staging} is a link or belongs to another user",
                             "remove it; the server makes its own")
        os.chmod(self.staging, 0o700)

    def check(self) -> None:
        """Reach the storage once (at start-up): a wrong bucket or endpoint is named before any upload."""
        if self.fs is None:
            return
        try:
            self.fs.ls(self.root.split("/")[0])
        except Exception as error:  # the backends raise their own exception types
            raise StoreError(f"cannot reach the artifact storage {self.location}: {type(error).__name__}: {error}",
                             "check the bucket, its endpoint (AWS_ENDPOINT_URL) and the credentials") from None

    def key(self, run_id: str, path: str) -> str:
        """Where the artifact is stored (checked: it cannot leave ROOT/RUN_ID)."""
        return f"{self.root}/{check_run_id(run_id)}/{check_artifact_path(path, run_id)}"

    def staged(self, run_id: str, path: str, sha256: str, size: int) -> Path:
        """The staging file of one upload: in the run's own staging folder (removed with the run), named by a
        hash of what it will become, never by the path itself. StoreError (409) when the run already has
        MAX_STAGED_PER_RUN unfinished uploads."""
        folder = self.staging / check_run_id(run_id)
        name = hashlib.sha256(f"{run_id}\0{path}\0{sha256}\0{size}".encode()).hexdigest()
        staged = folder / f"{name}.part"
        folder.mkdir(mode=0o700, exist_ok=True)
        if not staged.exists() and sum(1 for _ in folder.glob("*.part")) >= MAX_STAGED_PER_RUN:
            raise ConflictError(f"run {run_id[:8]} has {MAX_STAGED_PER_RUN} unfinished uploads on this server",
                                "finish or abandon them (deleting the run removes them) before starting more")
        return staged

    def store(self, staged: Path, run_id: str, path: str) -> None:
        """Move (local) or copy (fsspec) a complete, checked upload into place."""
        key = self.key(run_id, path)
        if self.fs is None:
            target = self._local(run_id, path)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise ConflictError(f"artifact {path} of run {run_id[:8]} cannot be stored: a folder of its path is "
                                    "already one of the run's files", "choose another path") from None
            if target.is_dir() and not target.is_symlink():
                raise ConflictError(f"artifact {path} of run {run_id[:8]} cannot be stored: the run's artifacts "
                                    "hold a folder at that path", "choose another path") from None
            if target.is_symlink() or (target.exists() and not target.is_file()):
                raise StoreError(f"artifact {path} of run {run_id[:8]}: something other than a file is in the way",
                                 "remove it from the server's artifact folder")
            os.chmod(staged, 0o644)
            os.replace(staged, target)
            return
        # Copied block by block (a multipart upload for S3), so memory holds one block, whatever the file's size
        # (fsspec's put_file sends several large chunks at once: 650 MB resident for a 256 MiB file, measured).
        block = max(COPY_BLOCK, -(-staged.stat().st_size // 9000))  # S3 takes at most 10,000 parts
        with open(staged, "rb") as src, self.fs.open(key, "wb", block_size=block) as dst:
            for chunk in iter(lambda: src.read(COPY_BLOCK), b""):
                dst.write(chunk)
        staged.unlink(missing_ok=True)

    def _local(self, run_id: str, path: str) -> Path:
        """A local artifact's file, refused (StoreError) when a link inside the run's folder leads elsewhere."""
        target = Path(self.key(run_id, path))
        folder = (Path(self.root) / run_id).resolve()
        if not target.resolve().is_relative_to(folder) or (folder.parent != Path(self.root).resolve()):
            raise StoreError(f"artifact {path} of run {run_id[:8]}: its folder leads outside the run's folder "
                             "(a symbolic link)", "remove the link from the server's artifact folder")
        return target

    def open(self, run_id: str, path: str) -> BinaryIO:
        """The stored file, for reading (seekable)."""
        key = self.key(run_id, path)
        try:
            if self.fs is None:
                return open(self._local(run_id, path), "rb")  # noqa: SIM115 - the caller closes it
            # 16 MiB read-ahead blocks: s3fs's default (50 MiB) would sit in memory for each download in flight
            return self.fs.open(key, "rb", block_size=COPY_BLOCK)  # type: ignore[no-any-return]
        except FileNotFoundError:
            raise StoreError(f"artifact {path} of run {run_id[:8]} is recorded but its file is missing from "
                             "the server's storage", "upload it again") from None

    def size(self, run_id: str, path: str) -> int | None:
        """The stored file's size, None when there is none."""
        key = self.key(run_id, path)
        try:
            if self.fs is None:
                return os.stat(key).st_size if Path(key).is_file() else None
            return int(self.fs.info(key)["size"])
        except FileNotFoundError:
            return None

    def remove(self, run_id: str, path: str) -> None:
        """Delete a stored file (nothing when there is none)."""
        key = self.key(run_id, path)
        if self.fs is None:
            target = self._local(run_id, path)
            if target.is_file() or target.is_symlink():
                target.unlink(missing_ok=True)
            return
        try:
            self.fs.rm_file(key)
        except FileNotFoundError:
            pass

    def remove_run(self, run_id: str) -> None:
        """Delete every stored file of a run."""
        try:
            check_run_id(run_id)
        except StoreError:
            return  # no artifact of such a run can have been stored
        staging = self.staging / run_id
        if staging.is_dir() and not staging.is_symlink():  # its unfinished uploads go too
            shutil.rmtree(staging, ignore_errors=True)
        folder = f"{self.root}/{run_id}"
        if self.fs is None:
            shutil.rmtree(folder, ignore_errors=True)
            return
        try:
            self.fs.rm(folder, recursive=True)
        except FileNotFoundError:
            pass
