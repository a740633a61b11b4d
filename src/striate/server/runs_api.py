"""The runs half of the API: every operation of the store contract, for the striate client and the UI.

A run belongs to a project, and a caller sees only the runs of the projects they are a member of:
reading needs the viewer role, writing the editor role (admins are owners everywhere). A run the
caller may not see answers 404 exactly like a run that does not exist. Metric points travel packed
(``tracking/store/wire.py``); everything a request carries is checked before it reaches the store.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time.
import time
from typing import Annotated, Any, Callable, Literal, Optional

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from striate.errors import ConfigError, ConflictError, ForbiddenError, RunNotFoundError
from striate.server.auth import Auth, Principal, at_least, check_project_name
from striate.tracking.store import wire
from striate.tracking.store.base import RUN_STATUSES, RunRecord, Store
from striate.tracking.store.limits import check_keys, check_length, check_record, check_tags
from striate.tracking.store.schema import LIMITS, runs

API = "/api/v1"
MAX_REF = 200  # a run reference longer than any id or name cannot match
MAX_IDS = 10_000  # run ids per POST /runs/get
RUN_ID_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"  # an id names a folder of artifacts: nothing that can leave it
PID_MAX = 2**31 - 1  # the pid column is a 32-bit integer on PostgreSQL
STEP_LIMIT = 2**63 - 1


class Strict(BaseModel):
    """A request body: unknown fields are an error (a misspelt field must not be dropped silently)."""

    model_config = ConfigDict(extra="forbid")


FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
_UPDATABLE = frozenset(wire.RECORD_FIELDS) - {"id", "metrics", "artifacts"}


def run_not_found(run_ref: str) -> RunNotFoundError:
    """The one answer for a run that does not exist or that the caller may not see (nothing leaks)."""
    return RunNotFoundError(f"no run {run_ref[:MAX_REF]!r} on this server",
                            "`striate runs` (GET /api/v1/runs) lists the runs you can see")


def require_role(auth: Auth, caller: Principal, project: str, needed: str, shown: str) -> None:
    """Go on only when ``caller`` has at least ``needed`` in ``project``: 404 about ``shown`` for a non-member
    (the project does not exist for them), 403 for a member whose role is too low."""
    role = auth.role(caller, project)
    if role is None:
        raise run_not_found(shown)
    if not at_least(role, needed):
        raise ForbiddenError(f"your role in project {project!r} is {role}; this needs {needed}",
                             "ask a project owner for the role")


def run_project(engine: sa.Engine, auth: Auth, caller: Principal, run_id: str, needed: str) -> str:
    """The project of the run with this full id (what clients write with), after checking the caller's role
    there: one indexed lookup, not the whole record."""
    if not run_id or len(run_id) > LIMITS["id"]:
        raise run_not_found(run_id)
    with engine.connect() as conn:
        project = conn.execute(sa.select(runs.c.project).where(runs.c.id == run_id)).scalar()
    if project is None:
        raise run_not_found(run_id)
    require_role(auth, caller, project, needed, run_id)
    return str(project)


class NewRun(Strict):
    """POST /runs: a whole run record (the client's ``Store.create_run``)."""

    id: str = Field(pattern=RUN_ID_PATTERN)
    name: str = Field(max_length=LIMITS["name"])
    project: str = Field(min_length=1, max_length=LIMITS["name"])
    status: Literal[RUN_STATUSES]  # type: ignore[valid-type]
    created_at: FiniteFloat
    ended_at: Optional[FiniteFloat] = None
    heartbeat_at: FiniteFloat
    model: Optional[str] = Field(default=None, max_length=LIMITS["name"])
    config: dict[str, Any] = Field(default_factory=dict)
    summary: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list, max_length=1000)
    notes: str = ""
    environment: dict[str, Any] = Field(default_factory=dict)
    dataset: dict[str, Any] = Field(default_factory=dict)
    error: Optional[str] = None
    reproduction_of: Optional[str] = Field(default=None, pattern=RUN_ID_PATTERN)
    host: Optional[str] = Field(default=None, max_length=LIMITS["host"])
    pid: Optional[int] = Field(default=None, ge=0, le=PID_MAX)
    pid_started_at: Optional[FiniteFloat] = None
    archived: bool = False
    stop_requested_at: Optional[FiniteFloat] = None


class OwnerBody(Strict):
    """The process a write is made under (the run's claim)."""

    host: Optional[str] = Field(default=None, max_length=LIMITS["host"])
    pid: Optional[int] = Field(default=None, ge=0, le=PID_MAX)
    pid_started_at: Optional[FiniteFloat] = None


class RunChange(Strict):
    """PATCH /runs/{run}: top-level fields to set, and optionally the claim they are written under."""

    fields: dict[str, Any]
    owner: Optional[OwnerBody] = None


class PackedArrays(Strict):
    """One metric's points: base64 of little-endian int64 steps and float64 times and values."""

    key: str = Field(min_length=1, max_length=LIMITS["key"])
    steps: str
    times: str
    values: str


class MetricBatch(Strict):
    """POST /runs/{run}/metrics: the client's ``Store.log_batch``."""

    series: list[PackedArrays] = Field(default_factory=list)
    heartbeat_at: Optional[FiniteFloat] = None
    owner: Optional[OwnerBody] = None


class PackedChunkBody(PackedArrays):
    """One synced chunk: its uid makes sending it twice a no-op."""

    uid: str = Field(min_length=1, max_length=200)


class ChunkBatch(Strict):
    """POST /runs/{run}/chunks: the client's ``ChunkSink.put_chunks``."""

    chunks: list[PackedChunkBody]


class Claim(Strict):
    """POST /runs/{run}/claim."""

    host: str = Field(min_length=1, max_length=LIMITS["host"])
    pid: int = Field(ge=0, le=PID_MAX)
    pid_started_at: Optional[FiniteFloat] = None


class Truncate(Strict):
    """POST /runs/{run}/truncate."""

    after_step: int = Field(ge=-STEP_LIMIT, le=STEP_LIMIT)


class Params(Strict):
    """PUT /runs/{run}/params: flattened params ({"optimizer.lr": 0.1, ...})."""

    params: dict[str, Any]


class RunIds(Strict):
    """POST /runs/get."""

    ids: list[str] = Field(max_length=MAX_IDS)


class TagChange(Strict):
    """POST /runs/{run}/tags."""

    add: list[str] = Field(default_factory=list, max_length=100)
    remove: list[str] = Field(default_factory=list, max_length=100)


def _owner(body: Optional[OwnerBody]) -> Any:
    return None if body is None else wire.decode_owner(body.model_dump())


def runs_router(store: Store, engine: sa.Engine, auth: Auth, caller_dependency: Callable[..., Principal],
                json_response: Callable[..., Response],
                on_delete: Optional[Callable[[str], None]] = None) -> APIRouter:
    """The run routes over ``store`` (whose tables live in ``engine``), for callers ``auth`` knows;
    ``on_delete(run_id)`` after a run is deleted (its artifact files go too).

    Artifact records are written only by the artifact routes (artifacts_api.py), together with their bytes."""
    router = APIRouter(prefix=API)
    Caller = Annotated[Principal, Depends(caller_dependency)]

    def visible_run(caller: Principal, run_ref: str, needed: str = "viewer",
                    only: Optional[list[str]] = None) -> RunRecord:
        # A reference resolves among the caller's projects only: a hidden run can neither shadow one of
        # theirs (an ambiguous prefix, the same name) nor be told apart from a run that does not exist.
        if not run_ref or len(run_ref) > MAX_REF or "\x00" in run_ref:
            raise run_not_found(run_ref)
        visible = auth.projects(caller)
        scope = None if visible is None else set(visible)
        if only is not None:
            scope = set(only) if scope is None else scope & set(only)
        # Not found and ambiguous answers come from the store, about the caller's projects only.
        record = store.get_run(run_ref, projects=None if scope is None else sorted(scope))
        require_role(auth, caller, record.project, needed, run_ref)
        return record

    def writable_run(caller: Principal, run_id: str, needed: str = "editor") -> str:
        return run_project(engine, auth, caller, run_id, needed)

    def visible_projects(caller: Principal) -> Optional[list[str]]:
        visible = auth.projects(caller)
        return None if visible is None else sorted(visible)

    # -- reads --------------------------------------------------------------------------------------
    @router.get("/projects")
    def list_projects(caller: Caller) -> Response:
        """The projects the caller may see, each with the caller's role and its number of runs (an admin
        sees every project that has runs or members)."""
        visible = auth.projects(caller)
        with engine.connect() as conn:
            counts: dict[str, int] = dict(conn.execute(
                sa.select(runs.c.project, sa.func.count()).group_by(runs.c.project)).all())
        if visible is None:
            names = set(counts) | set(auth.all_projects())
            roles = {name: "owner" for name in names}
        else:
            roles = visible
        return json_response({"projects": [{"name": name, "role": role, "runs": int(counts.get(name, 0))}
                                           for name, role in sorted(roles.items())]})

    @router.get("/runs")
    def list_runs(caller: Caller, where: Optional[str] = None, sort: Optional[str] = None,
                  project: Optional[str] = None,
                  limit: Annotated[Optional[int], Query(ge=1, le=1_000_000)] = None,
                  include_archived: bool = False, ids_only: bool = False) -> Response:
        """Runs matching a filter (the CLI's filter language), in ``sort`` order: whole records (at most
        10,000; 100 unless ``limit`` says otherwise), or with ``ids_only`` their ids (all unless ``limit``)."""
        if limit is None and not ids_only:
            limit = 100
        projects = visible_projects(caller)
        if project is not None:
            if projects is not None and project not in projects:
                projects = []  # a project you are not in has no runs, as far as you can tell
            else:
                projects = [project]
        if projects == []:
            return json_response({"ids": []} if ids_only else {"runs": []})
        if not ids_only and (limit is None or limit > MAX_IDS):
            raise ConfigError(f"limit must be at most {MAX_IDS} for whole records",
                              "page with a smaller limit, or ask for ids_only=true")
        ids = store.search_runs(where=where, sort=sort, projects=projects, limit=limit,
                                include_archived=include_archived)
        if ids_only:
            return json_response({"ids": ids})
        return json_response({"runs": [wire.record_to_json(r) for r in store.get_runs(ids)]})

    @router.post("/runs/get")
    def get_runs(caller: Caller, body: RunIds) -> Response:
        """Whole records of the runs with these full ids that the caller may see, in that order."""
        projects = visible_projects(caller)
        records = store.get_runs(list(dict.fromkeys(i for i in body.ids if isinstance(i, str))))
        if projects is not None:
            allowed = set(projects)
            records = [r for r in records if r.project in allowed]
        return json_response({"runs": [wire.record_to_json(r) for r in records]})

    @router.get("/runs/{run_ref}")
    def get_run(caller: Caller, run_ref: str,
                project: Annotated[Optional[list[str]], Query(max_length=1000)] = None) -> Response:
        """One run by full id, unique id prefix or unique name; ``project`` (repeatable): look only in these."""
        return json_response(wire.record_to_json(visible_run(caller, run_ref, only=project)))

    @router.get("/find-run")
    def find_run(caller: Caller, ref: Annotated[str, Query(max_length=MAX_REF)],
                 project: Annotated[Optional[list[str]], Query(max_length=1000)] = None) -> Response:
        """GET /runs/{ref} with the reference in the query: for names a URL path cannot carry ('/', '..')."""
        return json_response(wire.record_to_json(visible_run(caller, ref, only=project)))

    @router.get("/runs/{run_id}/history")
    def history_by_key(caller: Caller, run_id: str, key: Annotated[str, Query(min_length=1)],
                       max_points: Annotated[int, Query(ge=0, le=1_000_000)] = 1000) -> Response:
        """One metric's points, packed (M4 to ``max_points``; 0: every point), the key in the query: exact for
        keys a URL path would change ('a/../b', 'a/./b')."""
        writable_run(caller, run_id, "viewer")
        check_keys("metric key", [key])
        if 0 < max_points < 4:
            raise ConfigError("max_points must be 0 (every point) or at least 4", "ask for more points")
        series = store.history(run_id, key, max_points=max_points or None)
        return json_response({"run": run_id, **wire.encode_series([series])[0]})

    @router.get("/runs/{run_id}/chunks")
    def chunks_since(caller: Caller, run_id: str, after_seq: Annotated[int, Query(ge=0)] = 0) -> Response:
        """The run's metric chunks stored after position ``after_seq``, oldest first, with their uids and
        positions (``seq``): what a sync from this server reads."""
        writable_run(caller, run_id, "viewer")
        chunks = store.chunks_since(run_id, after_seq)  # type: ignore[attr-defined]
        return json_response({"chunks": [{**item, "seq": chunk.seq} for item, chunk
                                         in zip(wire.encode_chunks(chunks), chunks)]})

    @router.get("/runs/{run_ref}/metrics/{key:path}")
    def metric_history(caller: Caller, run_ref: str, key: str,
                       max_points: Annotated[int, Query(ge=0, le=1_000_000)] = 1000,
                       encoding: Literal["json", "packed"] = "json") -> Response:
        """One metric's points, M4-downsampled to ``max_points`` (0: every point); ``packed``: as base64
        little-endian arrays, exact to the bit."""
        record = visible_run(caller, run_ref)
        check_keys("metric key", [key])
        if 0 < max_points < 4:
            raise ConfigError("max_points must be 0 (every point) or at least 4", "ask for more points")
        series = store.history(record.id, key, max_points=max_points or None)
        if encoding == "packed":
            return json_response({"run": record.id, **wire.encode_series([series])[0]})
        return json_response({"run": record.id, "key": key, "steps": series.steps.tolist(),
                              "times": series.times.tolist(), "values": series.values.tolist()})

    @router.get("/artifacts")
    def find_artifacts(caller: Caller, sha256: Annotated[str, Query(pattern=r"^[0-9a-f]{64}$")]) -> Response:
        """(run, path) of every artifact the caller may see whose file has this SHA-256."""
        found = store.find_artifacts(sha256)
        projects = visible_projects(caller)
        if projects is not None and found:
            allowed = {r.id for r in store.get_runs(list({run for run, _ in found})) if r.project in projects}
            found = [(run, path) for run, path in found if run in allowed]
        return json_response({"artifacts": [{"run": run, "path": path} for run, path in found]})

    # -- writes -------------------------------------------------------------------------------------
    @router.post("/runs", status_code=201)
    def create_run(caller: Caller, body: NewRun) -> Response:
        """A new run; the caller needs the editor role in its project (an admin may start any project)."""
        check_project_name(body.project)
        require_role(auth, caller, body.project, "editor", body.id)
        record = RunRecord(**body.model_dump())
        check_record(record)
        _check_values(record.__dict__)
        try:
            store.create_run(record)
        except sa.exc.IntegrityError:
            raise ConflictError(f"a run with id {record.id!r} exists already",
                                "create runs with fresh ids (striate's client makes a random one per run)") from None
        return json_response({"id": record.id}, status_code=201)

    @router.patch("/runs/{run_id}")
    def update_run(caller: Caller, run_id: str, body: RunChange) -> Response:
        """Set top-level fields; with ``owner``, only while that process holds the run's claim (409 otherwise)."""
        writable_run(caller, run_id)
        unknown = sorted(set(body.fields) - _UPDATABLE)
        if unknown:
            raise ConfigError(f"run fields that cannot be set: {', '.join(unknown)[:200]}",
                              f"set only {', '.join(sorted(_UPDATABLE))}")
        try:
            checked = NewRun(**{**_CHECK_BASE, **body.fields})  # the same types as a new run's
        except ValueError as exc:
            raise ConfigError(f"invalid run fields: {' '.join(str(exc).split())[:300]}",
                              "send values of the types GET /runs/{run} returns") from None
        fields = {k: getattr(checked, k) for k in body.fields}
        if not fields:
            return Response(status_code=204)
        if "project" in fields:
            check_project_name(fields["project"])
            if not at_least(auth.role(caller, fields["project"]), "editor"):
                raise ForbiddenError(f"you cannot move runs into project {fields['project']!r}: it needs the editor "
                                     "role there", "ask that project's owner for the role")
        _check_values(fields)
        for what, limit in (("name", "name"), ("project", "name"), ("model", "name"), ("host", "host"),
                            ("notes", None), ("error", None)):
            if what in fields:
                check_length(what, fields[what], limit)
        store.update_run(run_id, owner=_owner(body.owner), **fields)
        return Response(status_code=204)

    @router.put("/runs/{run_id}/params")
    def set_params(caller: Caller, run_id: str, body: Params) -> Response:
        """Replace the run's flattened params."""
        writable_run(caller, run_id)
        check_keys("param key", body.params)
        wire.check_depth(body.params, "params")
        store.set_params(run_id, body.params)
        return Response(status_code=204)

    @router.post("/runs/{run_id}/metrics")
    def log_batch(caller: Caller, run_id: str, body: MetricBatch) -> Response:
        """Append metric points atomically (and refresh the heartbeat); with ``owner``, only while that process
        holds the run's claim — then the answer says whether a stop was requested."""
        writable_run(caller, run_id)
        series = wire.decode_series([s.model_dump() for s in body.series])
        stop = store.log_batch(run_id, series, heartbeat_at=body.heartbeat_at, owner=_owner(body.owner))
        return json_response({"stop_requested_at": stop})

    @router.post("/runs/{run_id}/chunks")
    def put_chunks(caller: Caller, run_id: str, body: ChunkBatch) -> Response:
        """Store the synced chunks whose uid this run does not hold yet; how many were new."""
        writable_run(caller, run_id)
        chunks = wire.decode_chunks([c.model_dump() for c in body.chunks])
        return json_response({"stored": store.put_chunks(run_id, chunks)})  # type: ignore[attr-defined]

    @router.post("/runs/{run_id}/claim")
    def claim_run(caller: Caller, run_id: str, body: Claim) -> Response:
        """Mark a run that is not running as running under the given process; whether it was claimed."""
        writable_run(caller, run_id)
        return json_response({"claimed": store.claim_run(run_id, body.host, body.pid, body.pid_started_at)})

    @router.post("/runs/{run_id}/truncate")
    def truncate_metrics(caller: Caller, run_id: str, body: Truncate) -> Response:
        """Drop every point with a step above ``after_step`` (before a resume); how many were dropped."""
        writable_run(caller, run_id)
        return json_response({"dropped": store.truncate_metrics(run_id, body.after_step)})

    @router.post("/runs/{run_ref}/tags")
    def change_tags(caller: Caller, run_ref: str, body: TagChange) -> dict[str, Any]:
        """Add and remove tags atomically; the run's new tags."""
        record = visible_run(caller, run_ref, "editor")
        return {"run": record.id, "tags": store.change_tags(record.id, add=body.add, remove=body.remove)}

    @router.post("/runs/{run_ref}/stop")
    def stop_run(caller: Caller, run_ref: str) -> dict[str, Any]:
        """Ask a running run's process to stop after its current step (it learns of it at its next flush)."""
        record = visible_run(caller, run_ref, "editor")
        return {"run": record.id, "stop_requested_at": store.request_stop(record.id)}

    @router.delete("/runs/{run_id}", status_code=204)
    def delete_run(caller: Caller, run_id: str) -> Response:
        """Remove a run, its points and its artifact records."""
        writable_run(caller, run_id)
        store.delete_run(run_id)
        if on_delete is not None:
            on_delete(run_id)
        return Response(status_code=204)

    @router.post("/liveness")
    def mark_crashed(caller: Caller) -> dict[str, Any]:
        """Apply the crash policy now: running runs whose process is gone (or silent too long) become crashed."""
        marker = getattr(store, "mark_stale_runs_crashed", None)
        return {"crashed": marker(time.time(), wait=False) if marker else 0}

    return router


def _check_values(fields: dict[str, Any]) -> None:
    """What pydantic's types do not say: tags as `striate tag` takes them, JSON fields not nested too deep."""
    if "tags" in fields:
        check_tags(fields["tags"])
    for name in ("config", "summary", "environment", "dataset"):
        if name in fields:
            wire.check_depth(fields[name], name)


# What a partial update is checked against: a valid run whose fields the update replaces.
_CHECK_BASE: dict[str, Any] = {"id": "x", "name": "x", "project": "x", "status": "running", "created_at": 0.0,
                               "heartbeat_at": 0.0}
