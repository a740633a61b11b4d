"""The team server's HTTP application: the tracking store behind ``/api/v1``, every route but health authenticated.

Errors leave as JSON ``{"error": ..., "fix": ...}`` with the status the error class names (the
CLI's one red line, for a program) — for unknown routes, unreadable bodies and unexpected failures
too. A project the caller is not a member of does not exist for them: its runs, names and fields
answer 404 (never 403) and never appear in a message, so nothing about it leaks. Floats that JSON
cannot carry (NaN, ±inf: a diverged loss) travel as the strings "NaN", "Infinity" and "-Infinity".
"""

# No `from __future__ import annotations` here: FastAPI reads the routes' annotations at run time,
# and the ``Caller`` dependency they name is local to create_app.
import dataclasses
import json
import logging
import math
from typing import Annotated, Any, Optional

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from striate.errors import AuthError, ForbiddenError, NotFoundError, RunNotFoundError, StriateError
from striate.server.auth import MAX_TOKEN_DAYS, Auth, Principal, at_least, check_project_name
from striate.server.schema_version import require_current
from striate.tracking.store.base import RunRecord, Store

API = "/api/v1"
MAX_REF = 200  # a run reference longer than any id or name cannot match
log = logging.getLogger("striate.server")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class ApiJSON(JSONResponse):
    """JSON with non-finite floats as strings (standard JSON has no NaN or infinity).

    Routes whose data can hold such floats return an ApiJSON themselves: FastAPI's own encoding of a
    returned dict would turn them into null before this class saw them."""

    def render(self, content: Any) -> bytes:
        return json.dumps(_finite(content), ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


class ErrorBody(BaseModel):
    """Every error the API answers with."""

    error: str
    fix: Optional[str] = None


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in ((400, "bad input"), (401, "no valid token"), (403, "the caller's role does not allow it"),
                         (404, "not found, or not visible to the caller"), (409, "conflicts with what exists"),
                         (422, "the request does not match this endpoint"))}


def error_body(error: StriateError) -> dict[str, Any]:
    """The JSON a StriateError becomes."""
    return {"error": error.problem, "fix": error.fix}


def _not_found(run_ref: str) -> RunNotFoundError:
    return RunNotFoundError(f"no run {run_ref[:MAX_REF]!r} on this server",
                            "GET /api/v1/runs lists the runs you can see")


def record_json(record: RunRecord) -> dict[str, Any]:
    """A run as the API returns it (without the owning process's pid and start time)."""
    data = dataclasses.asdict(record)
    data.pop("pid_started_at", None)
    data["duration_s"] = record.duration_s
    return data


class NewUser(BaseModel):
    """POST /users."""

    name: str
    admin: bool = False


class NewToken(BaseModel):
    """POST /tokens: a token for the caller (it expires no later than the token that asks)."""

    name: str = Field(min_length=1, max_length=100)
    days: float = Field(default=90, gt=0, le=MAX_TOKEN_DAYS, allow_inf_nan=False,
                        description=f"days until it expires (at most {MAX_TOKEN_DAYS})")


class Membership(BaseModel):
    """PUT /projects/{project}/members/{user}."""

    role: str


class TagChange(BaseModel):
    """POST /runs/{run}/tags."""

    add: list[str] = Field(default_factory=list, max_length=100)
    remove: list[str] = Field(default_factory=list, max_length=100)


def create_app(store: Store, engine: sa.Engine, shown_url: str) -> FastAPI:
    """The application serving ``store``, with users and tokens in ``engine`` (the same database).

    Refuses (StoreError) a database whose server tables need a migration."""
    require_current(engine, shown_url)
    auth = Auth(engine)
    app = FastAPI(title="striate", version="1", default_response_class=ApiJSON, responses=ERRORS,
                  openapi_url=f"{API}/openapi.json", docs_url=f"{API}/docs", redoc_url=None)

    @app.exception_handler(StriateError)
    async def striate_error(_request: Request, error: StriateError) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, AuthError) else None
        return ApiJSON(error_body(error), status_code=error.http_status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, error: RequestValidationError) -> Response:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return ApiJSON({"error": f"invalid {where or 'request'}: {first.get('msg')}",
                        "fix": f"see {API}/openapi.json for what this endpoint takes"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        if error.status_code == 404:
            body = {"error": f"no such endpoint: {request.method} {request.url.path[:200]}",
                    "fix": f"see {API}/openapi.json for the endpoints"}
        elif error.status_code == 405:
            body = {"error": f"{request.method} is not allowed on {request.url.path[:200]}",
                    "fix": f"see {API}/openapi.json for the methods each endpoint takes"}
        else:
            body = {"error": str(error.detail), "fix": f"see {API}/openapi.json"}
        return ApiJSON(body, status_code=error.status_code, headers=getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> Response:
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        return ApiJSON({"error": "the server failed on this request (the server's log has the details)",
                        "fix": "retry; if it persists, report it with the server's log"}, status_code=500)

    bearer = HTTPBearer(auto_error=False, description="an API token: `Authorization: Bearer stt_...`")

    def principal(credentials: Annotated[Optional[HTTPAuthorizationCredentials], Depends(bearer)]) -> Principal:
        if credentials is None or not credentials.credentials:
            raise AuthError("this request has no token",
                            "send 'Authorization: Bearer <token>' (set STRIATE_TOKEN for the striate client)")
        return auth.authenticate(credentials.credentials.strip())

    Caller = Annotated[Principal, Depends(principal)]

    def visible_run(caller: Principal, run_ref: str, needed: str = "viewer") -> RunRecord:
        # A reference resolves among the caller's projects only: a hidden run can neither shadow one of
        # theirs (an ambiguous prefix, the same name) nor be told apart from a run that does not exist.
        if not run_ref or len(run_ref) > MAX_REF or "\x00" in run_ref:
            raise _not_found(run_ref)
        visible = auth.projects(caller)
        try:
            record = store.get_run(run_ref, projects=None if visible is None else sorted(visible))
        except RunNotFoundError:
            raise _not_found(run_ref) from None
        role = auth.role(caller, record.project)
        if role is None:  # a membership removed in between
            raise _not_found(run_ref)
        if not at_least(role, needed):
            raise ForbiddenError(f"your role in project {record.project!r} is {role}; this needs {needed}",
                                 "ask a project owner for the role")
        return record

    @app.get(f"{API}/health", responses={})
    def health() -> dict[str, Any]:
        from importlib.metadata import version

        return {"status": "ok", "striate": version("striate")}

    @app.get(f"{API}/me")
    def me(caller: Caller) -> dict[str, Any]:
        return {"user": caller.name, "admin": caller.is_admin, "projects": auth.projects(caller)}

    @app.get(f"{API}/runs")
    def list_runs(caller: Caller, where: Optional[str] = None, sort: Optional[str] = None,
                  project: Optional[str] = None, limit: Annotated[int, Query(ge=1, le=10000)] = 100,
                  include_archived: bool = False) -> Response:
        visible = auth.projects(caller)
        projects: Optional[list[str]]
        if project is not None:
            if visible is not None and project not in visible:
                return ApiJSON({"runs": []})  # a project you are not in has no runs, as far as you can tell
            projects = [project]
        else:
            projects = None if visible is None else sorted(visible)
        if projects == []:
            return ApiJSON({"runs": []})
        ids = store.search_runs(where=where, sort=sort, projects=projects, limit=limit,
                                include_archived=include_archived)
        return ApiJSON({"runs": [record_json(r) for r in store.get_runs(ids)]})

    @app.get(f"{API}/runs/{{run_ref}}")
    def get_run(caller: Caller, run_ref: str) -> Response:
        return ApiJSON(record_json(visible_run(caller, run_ref)))

    @app.get(f"{API}/runs/{{run_ref}}/metrics/{{key:path}}")
    def metric_history(caller: Caller, run_ref: str, key: str,
                       max_points: Annotated[Optional[int], Query(ge=4, le=1_000_000)] = 1000) -> Response:
        from striate.tracking.store.limits import check_keys

        record = visible_run(caller, run_ref)
        check_keys("metric key", [key])
        series = store.history(record.id, key, max_points=max_points)
        return ApiJSON({"run": record.id, "key": key, "steps": series.steps.tolist(),
                        "times": series.times.tolist(), "values": series.values.tolist()})

    @app.post(f"{API}/runs/{{run_ref}}/tags")
    def change_tags(caller: Caller, run_ref: str, body: TagChange) -> dict[str, Any]:
        record = visible_run(caller, run_ref, "editor")
        return {"run": record.id, "tags": store.change_tags(record.id, add=body.add, remove=body.remove)}

    @app.post(f"{API}/runs/{{run_ref}}/stop")
    def stop_run(caller: Caller, run_ref: str) -> dict[str, Any]:
        record = visible_run(caller, run_ref, "editor")
        return {"run": record.id, "stop_requested_at": store.request_stop(record.id)}

    def require_admin(caller: Principal) -> None:
        if not caller.is_admin:
            raise ForbiddenError("only an admin can do this", "ask an admin of this server")

    @app.get(f"{API}/users")
    def list_users(caller: Caller) -> dict[str, Any]:
        require_admin(caller)
        return {"users": auth.list_users()}

    @app.post(f"{API}/users", status_code=201)
    def create_user(caller: Caller, body: NewUser) -> dict[str, Any]:
        require_admin(caller)
        return {"id": auth.create_user(body.name, is_admin=body.admin), "name": body.name, "admin": body.admin}

    @app.delete(f"{API}/users/{{user}}", status_code=204)
    def disable_user(caller: Caller, user: str) -> Response:
        require_admin(caller)
        auth.disable_user(auth.user_id(user), caller)
        return Response(status_code=204)

    @app.get(f"{API}/users/{{user}}/tokens")
    def list_user_tokens(caller: Caller, user: str) -> dict[str, Any]:
        require_admin(caller)
        return {"user": user, "tokens": auth.list_tokens(auth.user_id(user))}

    @app.post(f"{API}/users/{{user}}/tokens", status_code=201)
    def issue_user_token(caller: Caller, user: str, body: NewToken) -> dict[str, Any]:
        require_admin(caller)
        token = auth.issue_token(auth.user_id(user), body.name, body.days * 86400, parent=caller)
        return {"id": token.id, "name": token.name, "user": user, "token": token.value,
                "expires_at": token.expires_at}

    @app.get(f"{API}/tokens")
    def list_tokens(caller: Caller) -> dict[str, Any]:
        return {"tokens": auth.list_tokens(caller.user_id)}

    @app.post(f"{API}/tokens", status_code=201)
    def issue_token(caller: Caller, body: NewToken) -> dict[str, Any]:
        token = auth.issue_token(caller.user_id, body.name, body.days * 86400, parent=caller)
        return {"id": token.id, "name": token.name, "token": token.value, "expires_at": token.expires_at}

    @app.delete(f"{API}/tokens/{{token_id}}", status_code=204)
    def revoke_token(caller: Caller, token_id: str) -> Response:
        auth.revoke_token(token_id, caller)
        return Response(status_code=204)

    def project_role(caller: Principal, project: str, needed: str) -> None:
        check_project_name(project)
        role = auth.role(caller, project)
        if role is None:
            raise NotFoundError(f"no project {project!r} on this server", "GET /api/v1/me lists your projects")
        if not at_least(role, needed):
            raise ForbiddenError(f"your role in project {project!r} is {role}; this needs {needed}",
                                 "ask a project owner for the role")

    @app.get(f"{API}/projects/{{project}}/members")
    def list_members(caller: Caller, project: str) -> dict[str, Any]:
        project_role(caller, project, "viewer")
        return {"project": project, "members": auth.members(project)}

    @app.put(f"{API}/projects/{{project}}/members/{{user}}")
    def set_member(caller: Caller, project: str, user: str, body: Membership) -> dict[str, Any]:
        check_project_name(project)
        if not caller.is_admin:  # only an admin creates a project, by adding its first owner
            project_role(caller, project, "owner")
        auth.set_role(project, auth.user_id(user), body.role)
        return {"project": project, "user": user, "role": body.role}

    @app.delete(f"{API}/projects/{{project}}/members/{{user}}", status_code=204)
    def remove_member(caller: Caller, project: str, user: str) -> Response:
        project_role(caller, project, "owner")
        auth.set_role(project, auth.user_id(user), None)
        return Response(status_code=204)

    return app
