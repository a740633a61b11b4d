"""The striate client of a team server: one more store backend, over HTTP (``http://host:8080``).

Every :class:`Store` operation is one request to the server's ``/api/v1`` (batched where the data is
large: metric points packed by ``wire.py``, run records fetched 10,000 at a time). The token comes
from ``$STRIATE_TOKEN``. Errors come back as the server's ``{"error", "fix", "type"}`` and are raised
again as the same striate exception, so a caller cannot tell this store from a local one by its
errors; a server that cannot be reached is a StoreError naming the URL.

Runs write through the local spool (``tracking/spool.py``) exactly as for a PostgreSQL store, so
training never waits on the network: this class is the spool's sync target (a ``ChunkSink``), and a
``ChunkSource`` too (a run can be synced from a server into another store).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any, Sequence

from striate import errors
from striate.errors import StoreError, StriateError
from striate.tracking.store import wire
from striate.tracking.store.base import (
    ArtifactMissingError,
    ClaimLostError,
    Owner,
    RunRecord,
    SyncableStore,
    check_artifact_path,
    confined_file,
    file_sha256,
)
from striate.tracking.store.codec import MetricChunk, MetricSeries

TOKEN_ENV = "STRIATE_TOKEN"
_BATCH_IDS = 10_000  # run ids per POST /runs/get (the server's cap)
_BATCH_POINTS = 1_000_000  # points per POST /runs/{run}/chunks
_PART_BYTES = 32 * 1024 * 1024  # bytes per PUT of an artifact upload (each part survives a broken connection)
_TRANSFER_TRIES = 5  # attempts of an artifact upload or download across broken connections
_ERRORS: dict[str, type[StriateError]] = {
    cls.__name__: cls for cls in (errors.ConfigError, errors.DataError, errors.ModelError, errors.StoreError,
                                  errors.RunNotFoundError, errors.TrainingError, errors.AuthError,
                                  errors.ForbiddenError, errors.NotFoundError, errors.ConflictError, ClaimLostError,
                                  ArtifactMissingError)}
_BY_STATUS: dict[int, type[StriateError]] = {401: errors.AuthError, 403: errors.ForbiddenError,
                                             404: errors.RunNotFoundError, 409: errors.ConflictError,
                                             413: errors.ConfigError, 422: errors.ConfigError}


def artifact_cache_for(base_url: str) -> Path:
    """Where files of this server's runs are kept on this machine: ``$STRIATE_CACHE``/server-artifacts/HOST_PORT."""
    parsed = urllib.parse.urlsplit(base_url)
    name = f"{parsed.hostname or 'server'}_{parsed.port or (443 if parsed.scheme == 'https' else 80)}"
    root = Path(os.environ.get("STRIATE_CACHE") or Path.home() / ".cache" / "striate")
    return root / "server-artifacts" / name


class HttpStore(SyncableStore):
    """The runs of a striate team server, as a store."""

    files_are_local = False  # artifact_root is a cache: the files live on the server (put_artifact_file, artifact_file)

    def __init__(self, location: str, token: str | None = None, read_only: bool = False,
                 timeout_s: float = 60.0) -> None:
        import httpx

        parsed = urllib.parse.urlsplit(location)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise StoreError(f"{location!r} is not a server URL", "give it as http://HOST:PORT")
        self.url = urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, parsed.path.rstrip("/"), "", ""))
        self.read_only = read_only
        self.artifact_root = str(artifact_cache_for(self.url))
        token = token if token is not None else os.environ.get(TOKEN_ENV, "")
        if not token.strip():
            raise errors.AuthError(f"no API token for the striate server at {self.url}",
                                   f"set {TOKEN_ENV} to a token (`striate server token USER` on the server's "
                                   "machine prints one; POST /api/v1/tokens makes more)")
        self._client = httpx.Client(base_url=self.url + "/api/v1", timeout=httpx.Timeout(timeout_s, connect=10.0),
                                    headers={"Authorization": f"Bearer {token.strip()}",
                                             "Content-Type": "application/json"})
        # Opening a store applies the crash policy (as the SQL stores do): the server marks runs whose
        # process is gone. It also proves the server is there and the token valid, before any work.
        self._call("POST", "/liveness")

    def close(self) -> None:
        """Close the connections to the server."""
        self._client.close()

    # -- transport --------------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        import httpx

        content = None if body is None else json.dumps(body, default=str).encode()
        try:
            response = self._client.request(method, path, content=content, params=params)
        except httpx.HTTPError as exc:
            raise StoreError(f"cannot reach the striate server at {self.url}: {exc or type(exc).__name__}",
                             "check that `striate server` runs there and that the URL (host, port) is right") from None
        if response.status_code >= 400:
            raise self._error(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def _error(self, response: Any) -> StriateError:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        problem = str(body.get("error") or f"the server answered HTTP {response.status_code}")
        fix = body.get("fix")
        cls = _ERRORS.get(str(body.get("type"))) or _BY_STATUS.get(response.status_code, StoreError)
        if cls is errors.AuthError and not fix:
            fix = f"check {TOKEN_ENV}"
        return cls(problem, None if fix is None else str(fix))

    @staticmethod
    def _quote(ref: str) -> str:
        return urllib.parse.quote(ref, safe="")

    def require_role(self, project: str, needed: str = "editor") -> None:
        """ForbiddenError, before any work, when this token's user cannot act as ``needed`` in ``project``
        (a run recorded into the spool would otherwise be refused at every sync)."""
        me = self._call("GET", "/me")
        projects = me.get("projects")
        if projects is None:  # an admin: owner everywhere
            return
        order = ("viewer", "editor", "owner")
        role = projects.get(project)
        if role in order and order.index(role) >= order.index(needed):
            return
        held = f"your role there is {role}" if role else "you are not a member of it"
        raise errors.ForbiddenError(
            f"user {me.get('user')!r} cannot record runs in project {project!r} on {self.url}: {held}",
            "ask a project owner for the editor role, or set another project (--project, or project: in the config)")

    # -- writes -----------------------------------------------------------------------------------
    def create_run(self, record: RunRecord) -> None:
        """POST /runs."""
        data = {k: v for k, v in wire.record_to_json(record).items() if k not in ("metrics", "artifacts")}
        data["summary"] = record.summary  # NaN kept as such (the server reads JSON's NaN tokens)
        self._call("POST", "/runs", data)

    def update_run(self, run_id: str, *, owner: Owner | None = None, **fields: Any) -> None:
        """PATCH /runs/{run}."""
        self._call("PATCH", f"/runs/{self._quote(run_id)}", {"fields": fields, "owner": wire.encode_owner(owner)})

    def set_params(self, run_id: str, flat: dict[str, Any]) -> None:
        """PUT /runs/{run}/params."""
        self._call("PUT", f"/runs/{self._quote(run_id)}/params", {"params": flat})

    def log_batch(self, run_id: str, series: list[MetricSeries], heartbeat_at: float | None = None,
                  owner: Owner | None = None) -> float | None:
        """POST /runs/{run}/metrics; when a stop was requested (with ``owner``)."""
        answer = self._call("POST", f"/runs/{self._quote(run_id)}/metrics",
                            {"series": wire.encode_series([s for s in series if len(s)]),
                             "heartbeat_at": heartbeat_at, "owner": wire.encode_owner(owner)})
        stop = answer.get("stop_requested_at") if isinstance(answer, dict) else None
        return None if stop is None else float(stop)

    def put_chunks(self, run_id: str, chunks: list[MetricChunk]) -> int:
        """POST /runs/{run}/chunks, in batches of at most a million points; how many were new."""
        stored, batch, points = 0, [], 0
        for chunk in chunks:
            batch.append(chunk)
            points += chunk.packed.count
            if points >= _BATCH_POINTS:
                stored += self._put(run_id, batch)
                batch, points = [], 0
        if batch:
            stored += self._put(run_id, batch)
        return stored

    def _put(self, run_id: str, chunks: list[MetricChunk]) -> int:
        answer = self._call("POST", f"/runs/{self._quote(run_id)}/chunks", {"chunks": wire.encode_chunks(chunks)})
        return int(answer["stored"])

    def request_stop(self, run_id: str) -> float:
        """POST /runs/{run}/stop."""
        return float(self._call("POST", f"/runs/{self._quote(run_id)}/stop")["stop_requested_at"])

    def claim_run(self, run_id: str, host: str, pid: int, pid_started_at: float | None) -> bool:
        """POST /runs/{run}/claim."""
        answer = self._call("POST", f"/runs/{self._quote(run_id)}/claim",
                            {"host": host, "pid": pid, "pid_started_at": pid_started_at})
        return bool(answer["claimed"])

    def truncate_metrics(self, run_id: str, after_step: int) -> int:
        """POST /runs/{run}/truncate."""
        return int(self._call("POST", f"/runs/{self._quote(run_id)}/truncate", {"after_step": after_step})["dropped"])

    def add_artifact(self, run_id: str, path: str, kind: str, size: int, sha256: str) -> None:
        """Not on a team server: it records an artifact only together with its bytes (put_artifact_file)."""
        raise StoreError(f"a team server records artifact {path[:200]} of run {run_id[:8]} only with its file",
                         "upload it with Store.put_artifact_file(run_id, path, source, kind)")

    def remove_artifact(self, run_id: str, path: str) -> None:
        """DELETE /runs/{run}/artifacts/{path}: the record and the stored file."""
        self._call("DELETE", self._artifact_url(run_id, path))

    def _artifact_url(self, run_id: str, path: str, what: str = "artifacts") -> str:
        check_artifact_path(path, run_id)
        return f"/runs/{self._quote(run_id)}/{what}/{urllib.parse.quote(path, safe='/')}"

    def put_artifact_file(self, run_id: str, path: str, source: Path, kind: str = "file") -> dict[str, Any]:
        """Upload ``source`` (PUT /runs/{run}/artifacts/{path}) in parts of 32 MiB, streamed from the file; a
        broken connection resumes from what the server holds. Nothing is sent when the server already holds
        these bytes for this path."""
        import httpx

        source = Path(source)
        if not source.is_file():
            raise StoreError(f"artifact source {source} is not a file", "pass the path of an existing file")
        size, digest = source.stat().st_size, file_sha256(source)
        url = self._artifact_url(run_id, path)
        params: dict[str, Any] = {"sha256": digest, "size": size}
        status = self._call("GET", self._artifact_url(run_id, path, "artifact-uploads"), params=params)
        done = {"path": path, "kind": kind, "size": size, "sha256": digest}
        if status["stored"]:
            return done
        offset, failures, stalled = int(status["offset"]), 0, 0
        while True:
            try:
                response = self._client.put(url, params={**params, "kind": kind, "offset": offset},
                                            content=_file_part(source, offset, min(offset + _PART_BYTES, size)),
                                            headers={"Content-Type": "application/octet-stream"})
            except httpx.HTTPError as exc:
                failures += 1
                if failures >= _TRANSFER_TRIES:
                    raise StoreError(f"cannot upload artifact {path} to the striate server at {self.url}: "
                                     f"{exc or type(exc).__name__}",
                                     "check that the server runs; `striate sync` sends it again later") from None
                time.sleep(min(0.5 * 2 ** failures, 5.0))
                offset = int(self._call("GET", self._artifact_url(run_id, path, "artifact-uploads"),
                                        params=params)["offset"])
                continue
            if response.status_code == 409 and isinstance(_json_or_none(response), dict) \
                    and "offset" in response.json():
                offset = int(response.json()["offset"])  # the server holds another amount: go on from there
                continue
            if response.status_code >= 400:
                raise self._error(response)
            answer = response.json()
            if response.status_code == 201:
                return {**done, **answer}
            stalled = stalled + 1 if int(answer["offset"]) <= offset else 0
            if stalled >= 3:  # the file ends before the size it had when it was hashed
                raise StoreError(f"artifact {source} changed while it was uploaded (it is no longer {size:,} bytes "
                                 "long)", "upload it again once nothing writes it")
            offset = int(answer["offset"])

    def artifact_file(self, run_id: str, path: str) -> Path:
        """The artifact in this machine's cache of the server's files, downloaded (GET, resumed with Range
        across broken connections) unless a copy matching the recorded SHA-256 is already there."""
        import httpx

        target = confined_file(Path(self.artifact_root), run_id, path)
        entry = next((a for a in self.get_run(run_id).artifacts if a["path"] == path), None)
        if entry is None:
            raise ArtifactMissingError(f"run {run_id[:8]} has no artifact {path!r}",
                             f"`striate artifacts {run_id[:8]}` lists its files")
        expected = entry.get("sha256") or ""
        if target.is_file() and not target.is_symlink() and file_sha256(target) == expected:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        if any(p.is_symlink() for p in (target.parent, *target.parent.parents) if p.is_relative_to(
                Path(self.artifact_root))):
            raise StoreError(f"the local cache folder of {path} holds a symbolic link", f"remove {target.parent}")
        # A private file of this call (O_EXCL, never a link, mode 0600): another process downloading the
        # same artifact, or a file planted in a shared cache, can neither be written through nor mixed in.
        handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".download")
        part = Path(name)
        try:
            with os.fdopen(handle, "r+b") as fh:
                for attempt in range(1, _TRANSFER_TRIES + 1):
                    have = fh.seek(0, os.SEEK_END)
                    try:
                        headers = {"Range": f"bytes={have}-", "If-Range": f'"{expected}"'} if have else {}
                        with self._client.stream("GET", self._artifact_url(run_id, path), headers=headers) as response:
                            if response.status_code == 416:  # what is on disk is not a prefix of this file
                                fh.truncate(0)
                                continue
                            if response.status_code >= 400:
                                response.read()
                                raise self._error(response)
                            if response.status_code != 206:  # the whole file: start over
                                fh.seek(0)
                                fh.truncate()
                            for block in response.iter_bytes(1 << 20):
                                fh.write(block)
                        break
                    except httpx.HTTPError as exc:
                        if attempt == _TRANSFER_TRIES:
                            raise StoreError(f"cannot download artifact {path} from the striate server at {self.url}: "
                                             f"{exc or type(exc).__name__}", "check that the server runs, then retry"
                                             ) from None
                        time.sleep(min(0.5 * 2 ** attempt, 5.0))
            digest = file_sha256(part)
            if digest != expected:
                raise StoreError(f"artifact {path} of run {run_id[:8]} as downloaded has SHA-256 {digest[:16]}, not "
                                 f"the recorded {expected[:16]}", "the server's copy was changed or damaged; nothing "
                                 "was kept")
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)
        return target

    def change_tags(self, run_id: str, add: Sequence[str] = (), remove: Sequence[str] = ()) -> list[str]:
        """POST /runs/{run}/tags."""
        answer = self._call("POST", f"/runs/{self._quote(run_id)}/tags", {"add": list(add), "remove": list(remove)})
        return list(answer["tags"])

    def delete_run(self, run_id: str) -> None:
        """DELETE /runs/{run}."""
        self._call("DELETE", f"/runs/{self._quote(run_id)}")

    # -- reads ------------------------------------------------------------------------------------
    def find_artifacts(self, sha256: str) -> list[tuple[str, str]]:
        """GET /artifacts?sha256=..."""
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            return []
        answer = self._call("GET", "/artifacts", params={"sha256": sha256})
        return [(a["run"], a["path"]) for a in answer["artifacts"]]

    def get_run(self, run_id: str, projects: Sequence[str] | None = None) -> RunRecord:
        """GET /runs/{ref}: a full id, unique id prefix or unique name."""
        if not run_id or not run_id.strip():
            raise errors.RunNotFoundError(f"no run {run_id!r}: a run reference cannot be empty",
                                          "give a run id, an id prefix or a name (`striate runs` lists them)")
        if projects is not None and not projects:
            raise errors.RunNotFoundError(f"no run {run_id!r} in this store", "`striate runs` lists the runs")
        params: dict[str, Any] = {"ref": run_id}
        if projects is not None:
            params["project"] = list(projects)
        return wire.record_from_json(self._call("GET", "/find-run", params=params))

    def chunks_since(self, run_id: str, after_seq: int) -> list[MetricChunk]:
        """GET /runs/{run}/chunks?after_seq=...: the run's chunks stored on the server after that position."""
        answer = self._call("GET", f"/runs/{self._quote(run_id)}/chunks", params={"after_seq": after_seq})
        decoded = wire.decode_chunks(answer["chunks"])
        return [dataclasses.replace(chunk, seq=int(item["seq"])) for chunk, item in zip(decoded, answer["chunks"])]

    def get_runs(self, run_ids: list[str]) -> list[RunRecord]:
        """POST /runs/get, 10,000 ids at a time; records in the order of ``run_ids``."""
        found: dict[str, RunRecord] = {}
        for start in range(0, len(run_ids), _BATCH_IDS):
            answer = self._call("POST", "/runs/get", {"ids": run_ids[start:start + _BATCH_IDS]})
            found.update((r.id, r) for r in map(wire.record_from_json, answer["runs"]))
        return [found[i] for i in run_ids if i in found]

    def list_runs(self, project: str | None = None, limit: int | None = None) -> list[RunRecord]:
        """Runs, newest first (archived ones included)."""
        return self.get_runs(self.search_runs(project=project, limit=limit, include_archived=True))

    def search_runs(self, where: str | None = None, sort: str | None = None, project: str | None = None,
                    limit: int | None = None, include_archived: bool = False,
                    projects: Sequence[str] | None = None) -> list[str]:
        """GET /runs?ids_only=true with the filter, sort and limit."""
        params: dict[str, Any] = {"ids_only": "true", "include_archived": str(include_archived).lower()}
        for name, value in (("where", where), ("sort", sort), ("project", project)):
            if value:
                params[name] = value
        # with ``projects`` the limit applies after this client narrows the scope, so every id is asked for
        params["limit"] = limit if limit and projects is None else 1_000_000
        ids: list[str] = self._call("GET", "/runs", params=params)["ids"]
        if projects is not None:  # the server scopes by the caller; a narrower scope is applied here
            allowed = set(projects)
            ids = [r.id for r in self.get_runs(ids) if r.project in allowed]
            ids = ids[:limit] if limit else ids
        return ids

    def history(self, run_id: str, key: str, max_points: int | None = None) -> MetricSeries:
        """GET /runs/{run}/history?key=... (packed), M4-downsampled by the server when ``max_points`` is given."""
        answer = self._call("GET", f"/runs/{self._quote(run_id)}/history",
                            params={"key": key, "max_points": max(int(max_points or 0), 4) if max_points else 0})
        return wire.decode_series([{**answer, "key": key}])[0]


def _file_part(source: Path, start: int, end: int) -> Any:
    """Bytes [start, end) of ``source``, read in 1 MiB blocks as the request body goes out."""
    with open(source, "rb") as fh:
        fh.seek(start)
        left = end - start
        while left > 0:
            block = fh.read(min(1 << 20, left))
            if not block:
                return
            left -= len(block)
            yield block


def _json_or_none(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
