"""The team server's HTTP application: the tracking store behind ``/api/v1``, every route but health authenticated.

Errors leave as JSON ``{"error": ..., "fix": ...}`` with the status the error class names (the
CLI's one red line, for a program). A project the caller is not a member of does not exist for
them: 404, never 403, so project and run names do not leak. Floats that JSON cannot carry (NaN,
±inf: a diverged loss) travel as the strings "NaN", "Infinity" and "-Infinity".
"""

# No `from __future__ import annotations` here: FastAPI reads the routes' annotations at run time,
# and the ``Caller`` dependency they name is local to create_app.
import dataclasses
import json
import math
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from striate.errors import RunNotFoundError, StriateError
from striate.server.auth import Auth, AuthError, ForbiddenError, NotFoundError, Principal, at_least
from striate.server.schema_version import require_current
from striate.tracking.store.base import RunRecord, Store

API = "/api/v1"


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


def error_body(error: StriateError) -> dict[str, Any]:
    """The JSON a StriateError becomes."""
    return {"error": error.problem, "fix": error.fix}


def _not_found(run_ref: str) -> RunNotFoundError:
    return RunNotFoundError(f"no run {run_ref!r} on this server", "GET /api/v1/runs lists the runs you can see")


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
    """POST /tokens: a token for the caller."""

    name: str = Field(min_length=1, max_length=100)
    days: float | None = Field(default=90, gt=0, le=3650, description="days until it expires; null: never")


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
    app = FastAPI(title="striate", version="1", default_response_class=ApiJSON,
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

    def principal(authorization: Annotated[str | None, Header()] = None) -> Principal:
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not value:
            raise AuthError("this request has no token",
                            "send 'Authorization: Bearer <token>' (set STRIATE_TOKEN for the striate client)")
        return auth.authenticate(value.strip())

    Caller = Annotated[Principal, Depends(principal)]

    def visible_run(caller: Principal, run_ref: str, needed: str = "viewer") -> RunRecord:
        try:
            record = store.get_run(run_ref)
        except RunNotFoundError:
            raise _not_found(run_ref) from None
        role = auth.role(caller, record.project)
        if role is None:
            raise _not_found(run_ref)
        if not at_least(role, needed):
            raise ForbiddenError(f"your role in project {record.project!r} is {role}; this needs {needed}",
                                 "ask a project owner for the role")
        return record

    @app.get(f"{API}/health")
    def health() -> dict[str, Any]:
        from importlib.metadata import version

        return {"status": "ok", "striate": version("striate")}

    @app.get(f"{API}/me")
    def me(caller: Caller) -> dict[str, Any]:
        return {"user": caller.name, "admin": caller.is_admin, "projects": auth.projects(caller)}

    @app.get(f"{API}/runs")
    def list_runs(caller: Caller, where: str | None = None, sort: str | None = None,
                  project: str | None = None, limit: Annotated[int, Query(ge=1, le=10000)] = 100,
                  include_archived: bool = False) -> Response:
        visible = auth.projects(caller)
        projects: list[str] | None
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
                       max_points: Annotated[int | None, Query(ge=4, le=1_000_000)] = 1000) -> Response:
        record = visible_run(caller, run_ref)
        series = store.history(record.id, key, max_points=max_points)
        return ApiJSON({"run": record.id, "key": key, "steps": series.steps.tolist(),
                        "times": series.times.tolist(), "values": series.values.tolist()})

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

    @app.get(f"{API}/tokens")
    def list_tokens(caller: Caller) -> dict[str, Any]:
        return {"tokens": auth.list_tokens(caller.user_id)}

    @app.post(f"{API}/tokens", status_code=201)
    def issue_token(caller: Caller, body: NewToken) -> dict[str, Any]:
        token = auth.issue_token(caller.user_id, body.name, None if body.days is None else body.days * 86400)
        return {"id": token.id, "name": token.name, "token": token.value, "expires_at": token.expires_at}

    @app.delete(f"{API}/tokens/{{token_id}}", status_code=204)
    def revoke_token(caller: Caller, token_id: str) -> Response:
        auth.revoke_token(token_id, caller)
        return Response(status_code=204)

    def project_role(caller: Principal, project: str, needed: str) -> None:
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
        if not caller.is_admin:  # only an admin creates a project, by adding its first owner
            project_role(caller, project, "owner")
        auth.set_role(project, auth.user_id(user), body.role)
        return {"project": project, "user": user, "role": body.role}

    @app.delete(f"{API}/projects/{{project}}/members/{{user}}", status_code=204)
    def remove_member(caller: Caller, project: str, user: str) -> Response:
        project_role(caller, project, "owner")
        auth.set_role(project, auth.user_id(user), None)
        return Response(status_code=204)

    @app.post(f"{API}/runs/{{run_ref}}/tags")
    def change_tags(caller: Caller, run_ref: str, body: TagChange) -> dict[str, Any]:
        from striate.tracking.store.limits import check_keys

        record = visible_run(caller, run_ref, "editor")
        check_keys("tag", set(body.add))
        tags = [t for t in record.tags if t not in set(body.remove)]
        tags += [t for t in dict.fromkeys(body.add) if t not in tags]
        store.update_run(record.id, tags=tags)
        return {"run": record.id, "tags": tags}

    return app
