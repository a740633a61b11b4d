"""The artifact half of the API: a run's files, streamed up and down, checked by SHA-256.

Upload (editor): ``PUT /runs/{run}/artifacts/{path}?sha256=H&size=N&kind=K&offset=O`` with the bytes from
``O`` on as the body, streamed to a staging file in blocks (never held whole in memory). A body that
stops short of ``N`` keeps what arrived (202, with the new offset): the client sends the rest later from
there, as it does after a broken connection, and ``GET /runs/{run}/artifact-uploads/{path}?sha256=H&size=N``
tells it how far the server got. Once all ``N`` bytes are there their SHA-256 must be ``H``: a mismatch
keeps nothing and answers 400; a match moves the file into storage and only then records the artifact
(201). Download (viewer): ``GET /runs/{run}/artifacts/{path}``, streamed, with ``Range`` (206) and the
recorded SHA-256 in ``X-Striate-SHA256``. ``DELETE`` (editor) forgets the record and removes the file.

Every path is checked (``check_artifact_path``) before it touches storage; a run is named by its full id,
and one the caller may not see answers 404 like a run that does not exist.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time.
import contextlib
import fcntl
import hashlib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Optional

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from starlette.requests import ClientDisconnect

from striate.errors import ConfigError, ConflictError, RunNotFoundError, StoreError, StriateError
from striate.server.artifact_storage import ArtifactStorage
from striate.server.auth import Auth, Principal
from striate.server.runs_api import run_not_found, run_project
from striate.tracking.store.base import Store, artifact_path_problem
from striate.tracking.store.schema import LIMITS

API = "/api/v1"
MAX_ARTIFACT_BYTES = 16 * 1024 ** 3  # the default size cap of one artifact (`striate server --max-artifact-mb`)
BLOCK = 1 << 20  # bytes read from storage per block of a download
_SHA = r"^[0-9a-f]{64}$"
LOCKS = "locks"  # a folder of the staging folder
_RANGE = re.compile(r"bytes=(\d{0,19})-(\d{0,19})")


class PathError(StriateError):
    """An artifact path that could name something outside the run's folder."""

    http_status = 400


def _checked(path: str) -> str:
    problem = artifact_path_problem(path)
    if problem is not None:
        raise PathError(f"refusing artifact path {path[:200]!r}: {problem}",
                        "use a relative path of plain names separated by '/' (e.g. checkpoints/epoch-001.pt)")
    return path


def _checked_run(run_id: str) -> str:
    if run_id.startswith(".") or artifact_path_problem(run_id) or "/" in run_id:
        raise PathError(f"run {run_id[:80]!r} cannot hold artifact files: its id is not a plain name",
                        "artifacts belong to runs whose id is a plain name (striate's ids are hex)")
    return run_id


class _TooLarge(StriateError):
    http_status = 413


class _Mismatch(StriateError):
    http_status = 400


class _RangeError(StriateError):
    http_status = 416


def artifacts_router(store: Store, engine: sa.Engine, auth: Auth, storage: ArtifactStorage,
                     caller_dependency: Callable[..., Principal], json_response: Callable[..., Response],
                     max_bytes: int = MAX_ARTIFACT_BYTES) -> APIRouter:
    """The artifact routes over ``store`` (records) and ``storage`` (bytes)."""
    router = APIRouter(prefix=API)
    Caller = Annotated[Principal, Depends(caller_dependency)]

    def commit(staged: Path, run_id: str, path: str, kind: str, size: int, sha256: str) -> None:
        """Move a checked upload into storage and record it, one upload of a path at a time (across worker
        processes too): the record always describes the file stored. A run deleted meanwhile keeps nothing."""
        with _path_lock(storage.staging, run_id, path):
            storage.store(staged, run_id, path)
            try:
                store.add_artifact(run_id, path, kind, size, sha256)
            except sa.exc.IntegrityError:  # the run was deleted while its file arrived
                storage.remove(run_id, path)
                raise run_not_found(run_id) from None

    def run_of(caller: Principal, run_id: str, needed: str) -> str:
        """The run's project, after checking the caller's role there (404 when they may not see it)."""
        project = run_project(engine, auth, caller, run_id, needed)
        _checked_run(run_id)
        return project

    def recorded(run_id: str, path: str) -> Optional[dict[str, Any]]:
        return next((a for a in store.get_run(run_id).artifacts if a["path"] == path), None)

    def check_size(size: int) -> None:
        if size > max_bytes:
            raise _TooLarge(f"the artifact is {size:,} bytes, over this server's limit of {max_bytes:,}",
                              "ask the server's admin to raise --max-artifact-mb, or store a smaller file")

    @router.get("/runs/{run_id}/artifact-uploads/{path:path}")
    def upload_status(caller: Caller, run_id: str, path: str, sha256: Annotated[str, Query(pattern=_SHA)],
                      size: Annotated[int, Query(ge=0)]) -> Response:
        """How much of this upload the server holds (``offset``: send the rest from there), and whether the run
        already has this artifact with these bytes (``stored``: nothing to send)."""
        run_of(caller, run_id, "editor")
        _checked(path)
        check_size(size)
        there = recorded(run_id, path)
        stored = bool(there and there["sha256"] == sha256 and storage.size(run_id, path) == size)
        staged = storage.staged(run_id, path, sha256, size)
        offset = staged.stat().st_size if staged.is_file() else 0
        return json_response({"offset": 0 if stored else offset, "stored": stored})

    @router.put("/runs/{run_id}/artifacts/{path:path}",
                openapi_extra={"requestBody": {"required": True, "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
                responses={201: {"description": "stored and recorded"},
                           202: {"description": "part received; send the rest from `offset`"}})
    async def upload(caller: Caller, request: Request, run_id: str, path: str,
                     sha256: Annotated[str, Query(pattern=_SHA, description="SHA-256 of the whole file")],
                     size: Annotated[int, Query(ge=0, description="bytes of the whole file")],
                     kind: Annotated[str, Query(min_length=1, max_length=LIMITS["artifact_kind"])] = "file",
                     offset: Annotated[int, Query(ge=0, description="where this body starts in the file")] = 0,
                     ) -> Response:
        """Store (part of) an artifact's bytes; the record is added once all of them are there and match."""
        await run_in_threadpool(run_of, caller, run_id, "editor")
        _checked(path)
        if any(ch < " " or ch == "\x7f" for ch in kind):
            raise ConfigError("the artifact kind holds a control character", "give a kind of plain text")
        check_size(size)
        staged = storage.staged(run_id, path, sha256, size)
        # The staging file is held (flock) by one request from open to commit, in every worker process: a
        # second upload of the same bytes is told to wait instead of truncating the file being hashed.
        try:
            fd = os.open(staged, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as error:
            raise StoreError(f"cannot stage the upload of {path[:200]}: {error.strerror}",
                             "check the server's staging folder (it must be a folder of the server's own)") from None
        with os.fdopen(fd, "r+b") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ConflictError(f"artifact {path[:200]} of run {run_id[:8]} is being uploaded by another "
                                    "request", "wait for it to finish, then ask GET .../artifact-uploads for the "
                                    "offset") from None
            have = os.fstat(fh.fileno()).st_size
            if offset > have or offset > size:
                return json_response({"error": f"this upload can continue from byte {have}, not {offset}",
                                      "fix": f"send the bytes from offset={have}", "offset": have}, status_code=409)
            received = await _receive(request, fh, staged, offset, size)
            if received < size:
                return json_response({"offset": received, "size": size}, status_code=202)
            try:
                digest = await run_in_threadpool(_file_sha256, staged)
                if digest != sha256:
                    staged.unlink(missing_ok=True)
                    raise _Mismatch(f"the bytes received for {path[:200]} have SHA-256 {digest[:16]}…, not the "
                                    f"{sha256[:16]}… announced; nothing was kept",
                                    "upload the file again from offset 0 (it may have changed while it was sent)")
                await run_in_threadpool(commit, staged, run_id, path, kind, size, sha256)
            except FileNotFoundError:  # the run was deleted meanwhile, and its unfinished uploads with it
                raise run_not_found(run_id) from None
        return json_response({"path": path, "kind": kind, "size": size, "sha256": sha256}, status_code=201)

    @router.get("/runs/{run_id}/artifacts/{path:path}",
                responses={200: {"description": "the file", "content": {"application/octet-stream": {}}},
                           206: {"description": "the requested range"}, 416: {"description": "bad range"}})
    def download(caller: Caller, run_id: str, path: str, request: Request) -> Response:
        """The artifact's bytes, streamed; a ``Range: bytes=A-B`` header gets that part (206)."""
        run_of(caller, run_id, "viewer")
        _checked(path)
        there = recorded(run_id, path)
        if there is None:
            raise RunNotFoundError(f"run {run_id[:8]} has no artifact {path[:200]!r}",
                                   "GET /api/v1/runs/{run} lists its artifacts")
        total = storage.size(run_id, path)
        if total is None:
            raise StoreError(f"artifact {path[:200]} of run {run_id[:8]} is recorded but its file is missing from "
                             "the server's storage", "upload it again")
        if_range = request.headers.get("if-range")
        wanted = request.headers.get("range") if if_range in (None, f'"{there["sha256"]}"') else None
        ranged, start, end = _byte_range(wanted, total)
        headers = {"Accept-Ranges": "bytes", "Content-Length": str(end - start), "ETag": f'"{there["sha256"]}"',
                   "X-Striate-SHA256": there["sha256"]}
        status = 200
        if ranged:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{total}"
        return StreamingResponse(_stream(storage, run_id, path, start, end), status_code=status, headers=headers,
                                 media_type="application/octet-stream")

    @router.delete("/runs/{run_id}/artifacts/{path:path}", status_code=204)
    def remove(caller: Caller, run_id: str, path: str) -> Response:
        """Forget the artifact and remove its file."""
        run_of(caller, run_id, "editor")
        _checked(path)
        if recorded(run_id, path) is None:
            raise RunNotFoundError(f"run {run_id[:8]} has no artifact {path[:200]!r}",
                                   "GET /api/v1/runs/{run} lists its artifacts")
        with _path_lock(storage.staging, run_id, path):
            store.remove_artifact(run_id, path)
            storage.remove(run_id, path)
        return Response(status_code=204)

    return router


@contextlib.contextmanager
def _path_lock(staging: Path, run_id: str, path: str) -> Iterator[None]:
    """An exclusive lock on one artifact path of one run, held across the server's worker processes."""
    # One of 256 lock files (striped by the path's hash): a lock file per path would pile up forever, and
    # removing one while another request waits on it would let two requests hold "the" lock.
    stripe = hashlib.sha256(f"{run_id}\0{path}".encode()).digest()[0]
    locks = staging / LOCKS
    locks.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(locks / f"{stripe:02x}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


async def _receive(request: Request, fh: Any, staged: Path, offset: int, size: int) -> int:
    """Write the body into the open staging file from ``offset`` on, block by block; how many bytes it holds
    after. A connection that breaks keeps what arrived; more bytes than ``size`` keep nothing (400)."""
    position = offset
    fh.seek(offset)
    fh.truncate()
    try:
        async for block in request.stream():
            if position + len(block) > size:
                staged.unlink(missing_ok=True)
                raise _Mismatch(f"the body runs past the announced size of {size:,} bytes; nothing was kept",
                                "send size= as the whole file's size, and each part from its offset")
            fh.write(block)
            position += len(block)
    except ClientDisconnect:
        pass  # what arrived stays: the client resumes from here
    fh.flush()
    await run_in_threadpool(os.fsync, fh.fileno())  # what a 202 reports is on disk
    return position


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _byte_range(header: Optional[str], total: int) -> tuple[bool, int, int]:
    """Whether a single ``bytes=`` range applies, and its [start, end) (the whole file without one, or for
    several ranges: a server may answer those with everything)."""
    if not header or "," in header:
        return False, 0, total
    match = _RANGE.fullmatch(header.strip())
    if match is None or not (match.group(1) or match.group(2)):
        return False, 0, total  # a range this server does not read is ignored (RFC 9110): the whole file
    first, last = match.group(1), match.group(2)
    if not first:  # the last N bytes
        start, end = max(total - int(last), 0), total
    else:
        start = int(first)
        end = min(int(last) + 1, total) if last else total
    if start >= total or start >= end:
        raise _RangeError(f"range {header[:80]!r} is outside the file's {total:,} bytes",
                          f"ask for bytes within 0-{total - 1}" if total else "the file is empty: ask without Range")
    return True, start, end


def _stream(storage: ArtifactStorage, run_id: str, path: str, start: int, end: int) -> Iterator[bytes]:
    with storage.open(run_id, path) as fh:
        fh.seek(start)
        left = end - start
        while left > 0:
            block = fh.read(min(BLOCK, left))
            if not block:
                break
            left -= len(block)
            yield block
