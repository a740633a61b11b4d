"""The team server's HTTP application: the tracking store behind ``/api/v1``, every route but health authenticated.

Errors leave as JSON ``{"error": ..., "fix": ...}`` with the status the error class names (the
CLI's one red line, for a program) — for unknown routes, unreadable bodies and unexpected failures
too. A project the caller is not a member of does not exist for them: its runs, names and fields
answer 404 (never 403) and never appear in a message, so nothing about it leaks. Floats that JSON
cannot carry (NaN, ±inf: a diverged loss) travel as the strings "NaN", "Infinity" and "-Infinity".
"""

# No `from __future__ import annotations` here: FastAPI reads the routes' annotations at run time,
# and the ``Caller`` dependency they name is local to create_app.
import json
import logging
import re
import time
from typing import Annotated, Any, Optional

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from striate.errors import AuthError, ForbiddenError, NotFoundError, StriateError, TooManyRequestsError
from striate.server.artifact_storage import ArtifactStorage
from striate.server.artifacts_api import MAX_ARTIFACT_BYTES, artifacts_router
from striate.server.auth import MAX_TOKEN_DAYS, Auth, Principal, at_least, check_project_name
from striate.server.local import LocalAuth, LocalSessions
from striate.server.runs_api import runs_router
from striate.server.schema_version import require_current
from striate.server.sessions import CSRF_HEADER, SESSION_COOKIE, FailureCounter, Sessions
from striate.server.ui import mount_ui
from striate.tracking.store.base import Store
from striate.tracking.store.wire import finite_json

API = "/api/v1"
MAX_BODY_BYTES = 64 * 1024 * 1024  # a JSON body past this is refused (413) before more of it is read
# Most requests are small: parsing JSON costs ~10x its size in memory, so only the routes that carry
# metric batches take big bodies (a million packed points is ~32 MiB of JSON).
SMALL_BODY_BYTES = 4 * 1024 * 1024
BIG_BODY_ROUTE = re.compile(r"/api/v1/runs/[^/]+/(metrics|chunks)")  # POST: metric batches
STREAMED_ROUTE = re.compile(r"/api/v1/runs/[^/]+/artifacts/.+")  # PUT: streamed to storage, capped by the route
ANONYMOUS_BODY_BYTES = 64 * 1024  # a request with no token or session cookie (a login) carries no more
log = logging.getLogger("striate.server")


class BodyLimit:
    """ASGI middleware: answers 413 once a request body passes ``limit`` bytes — by its Content-Length
    before anything is read, or while a body without one streams in."""

    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES, small: int = SMALL_BODY_BYTES) -> None:
        self.app, self.big, self.small = app, limit, small

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope.get("path", ""), scope.get("method", "")
        headers = dict(scope.get("headers") or ())
        # Bodies are read and parsed before the route checks the caller: a request without credentials gets
        # a tiny allowance, so nobody without a token can make the server parse megabytes.
        credentials = b"authorization" in headers or b"striate_session=" in headers.get(b"cookie", b"")
        if not credentials:
            limit = ANONYMOUS_BODY_BYTES
        elif method == "PUT" and STREAMED_ROUTE.fullmatch(path):
            await self.app(scope, receive, send)
            return
        else:
            limit = self.big if method == "POST" and BIG_BODY_ROUTE.fullmatch(path) else self.small
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(send, limit)
            return
        seen = 0
        started = False

        async def counted_receive() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # FastAPI passes an HTTPException through its body parsing
                    raise _BodyTooLarge(413, f"the request body is over {_size(limit)}")
            return message

        async def tracked_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _BodyTooLarge:
            if not started:
                await _too_large(send, limit)


class ServerTiming:
    """ASGI middleware: every answer carries ``Server-Timing: app;dur=MS``, the milliseconds from the
    request reaching the application to the answer's start (its body already rendered): the server's own
    time, without the network and the client (what benchmarks/server_load.py reports)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                took = f"app;dur={(time.perf_counter() - start) * 1000:.2f}".encode()
                message = {**message, "headers": [*message.get("headers", ()), (b"server-timing", took)]}
            await send(message)

        await self.app(scope, receive, timed_send)


class _BodyTooLarge(StarletteHTTPException):
    pass


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit // 1024} KiB"


async def _too_large(send: Any, limit: int) -> None:
    body = json.dumps({"error": f"the request body is over {_size(limit)}",
                       "fix": "send smaller batches"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class ApiJSON(JSONResponse):
    """JSON with non-finite floats as strings (standard JSON has no NaN or infinity).

    Routes whose data can hold such floats return an ApiJSON themselves: FastAPI's own encoding of a
    returned dict would turn them into null before this class saw them."""

    def render(self, content: Any) -> bytes:
        return json.dumps(finite_json(content), ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


class ErrorBody(BaseModel):
    """Every error the API answers with."""

    error: str
    fix: Optional[str] = None
    type: Optional[str] = Field(default=None, description="the error's class (the striate client raises it again)")


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in ((400, "bad input"), (401, "no valid token"), (403, "the caller's role does not allow it"),
                         (404, "not found, or not visible to the caller"), (409, "conflicts with what exists"),
                         (429, "too many failed logins: wait (Retry-After)"),
                         (422, "the request does not match this endpoint"))}


def error_body(error: StriateError) -> dict[str, Any]:
    """The JSON a StriateError becomes."""
    return {"error": error.problem, "fix": error.fix, "type": type(error).__name__}


class NewUser(BaseModel):
    """POST /users."""

    name: str
    admin: bool = False


class NewToken(BaseModel):
    """POST /tokens: a token for the caller (it expires no later than the token that asks)."""

    name: str = Field(min_length=1, max_length=100)
    days: float = Field(default=90, gt=0, le=MAX_TOKEN_DAYS, allow_inf_nan=False,
                        description=f"days until it expires (at most {MAX_TOKEN_DAYS})")


class Login(BaseModel):
    """POST /session: the API token a browser logs in with."""

    token: str = Field(min_length=1, max_length=200)


class Membership(BaseModel):
    """PUT /projects/{project}/members/{user}."""

    role: str


def create_app(store: Store, engine: sa.Engine, shown_url: str, artifacts: Optional[str] = None,
               max_artifact_bytes: int = MAX_ARTIFACT_BYTES, local_token: Optional[str] = None) -> FastAPI:
    """The application serving ``store``, with users and tokens in ``engine`` (the same database),
    artifact files in ``artifacts`` (a folder or an fsspec URL; default: the store's own artifact folder),
    and the dashboard at ``/`` (server/ui.py).

    Refuses (StoreError) a database whose server tables need a migration. ``local_token`` (`striate ui`):
    no user tables at all — that one token is the only credential, and its holder an admin (server/local.py)."""
    if local_token is None:
        require_current(engine, shown_url)
    storage = ArtifactStorage(artifacts or store.artifact_root)
    storage.check()
    auth = Auth(engine) if local_token is None else LocalAuth(engine, local_token)
    app = FastAPI(title="striate", version="1", default_response_class=ApiJSON, responses=ERRORS,
                  openapi_url=f"{API}/openapi.json", docs_url=f"{API}/docs", redoc_url=None)
    app.add_middleware(BodyLimit)
    app.add_middleware(ServerTiming)  # added last: the outermost, so it times everything, refusals too

    @app.exception_handler(StriateError)
    async def striate_error(_request: Request, error: StriateError) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, AuthError) else None
        if isinstance(error, TooManyRequestsError):
            headers = {"Retry-After": str(error.retry_after_s)}
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
        elif error.status_code == 413:
            body = {"error": str(error.detail), "fix": "send smaller batches"}
        else:
            body = {"error": str(error.detail), "fix": f"see {API}/openapi.json"}
        return ApiJSON(body, status_code=error.status_code, headers=getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> Response:
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        # Connection: close — the server drops the connection after a failure, and a client must not
        # send its next request on it (it would read as "connection reset" and look like a network fault).
        return ApiJSON({"error": "the server failed on this request (the server's log has the details)",
                        "fix": "retry; if it persists, report it with the server's log"}, status_code=500,
                       headers={"Connection": "close"})

    bearer = HTTPBearer(auto_error=False, description="an API token: `Authorization: Bearer stt_...`")

    session_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False,
                                  description="a browser session (POST /api/v1/session); changes need X-CSRF-Token")
    sessions = Sessions(engine, auth) if local_token is None else LocalSessions(auth)  # type: ignore[arg-type]
    bearer_failures = FailureCounter()

    def principal(request: Request,
                  credentials: Annotated[Optional[HTTPAuthorizationCredentials], Depends(bearer)],
                  cookie: Annotated[Optional[str], Depends(session_cookie)]) -> Principal:
        if credentials is not None and credentials.credentials:
            client = request.client.host if request.client else "unknown"
            try:
                return auth.authenticate(credentials.credentials.strip())
            except AuthError:
                bearer_failures.failed(client)  # 429 once a client has guessed too often (a valid token still works)
                raise
        if cookie:
            session = sessions.find(cookie)
            sessions.check_csrf(session, request.method, request.headers.get(CSRF_HEADER))
            return session.principal
        raise AuthError("this request has no token",
                        "send 'Authorization: Bearer <token>' (set STRIATE_TOKEN for the striate client)")

    Caller = Annotated[Principal, Depends(principal)]

    @app.post(f"{API}/session")
    def log_in(request: Request, body: Login) -> Response:
        """Log a browser in with an API token: sets the session cookie and returns the CSRF token that every
        change must carry in X-CSRF-Token. Failed attempts are limited per client address."""
        session = sessions.login(body.token.strip(), request.client.host if request.client else "unknown")
        response = ApiJSON({"user": session.principal.name, "admin": session.principal.is_admin,
                            "csrf_token": session.csrf, "expires_at": session.expires_at})
        response.set_cookie(SESSION_COOKIE, session.id, max_age=max(1, int(session.expires_at - time.time())),
                            path=API, secure=True, httponly=True, samesite="strict")
        return response

    @app.get(f"{API}/session")
    def current_session(cookie: Annotated[Optional[str], Depends(session_cookie)]) -> dict[str, Any]:
        """The browser session's user and CSRF token (a reloaded page gets it back here)."""
        session = sessions.find(cookie or "")
        return {"user": session.principal.name, "admin": session.principal.is_admin, "csrf_token": session.csrf,
                "expires_at": session.expires_at}

    @app.delete(f"{API}/session", status_code=204)
    def log_out(request: Request, cookie: Annotated[Optional[str], Depends(session_cookie)]) -> Response:
        """End the browser session (it needs the CSRF token like any change)."""
        session = sessions.find(cookie or "")
        sessions.check_csrf(session, request.method, request.headers.get(CSRF_HEADER))
        sessions.logout(session.id)
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, path=API, secure=True, httponly=True, samesite="strict")
        return response

    @app.get(f"{API}/health", responses={})
    def health() -> dict[str, Any]:
        from importlib.metadata import version

        return {"status": "ok", "striate": version("striate")}

    @app.get(f"{API}/me")
    def me(caller: Caller) -> dict[str, Any]:
        return {"user": caller.name, "admin": caller.is_admin, "projects": auth.projects(caller)}

    app.include_router(runs_router(store, engine, auth, principal, ApiJSON, on_delete=storage.remove_run))
    app.include_router(artifacts_router(store, engine, auth, storage, principal, ApiJSON, max_artifact_bytes))

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

    mount_ui(app)
    return app
