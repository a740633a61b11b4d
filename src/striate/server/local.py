"""The local dashboard's access (`striate ui`): one random token, one admin principal, no user tables.

`striate ui` serves the team server's application over the user's own store on 127.0.0.1. It must
not add the server's users, tokens and sessions tables to that store, so here the access token is a
value in memory: whoever presents it (as ``Authorization: Bearer`` or by logging a browser in with
it) acts as the store's owner — an admin principal, owner of every project. Browser sessions live in
memory too, and end when the process does. User and token management answer that a local dashboard
has none (the team server, `striate server`, has them).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from typing import Any

import sqlalchemy as sa

from striate.errors import AuthError, NotFoundError
from striate.server.auth import Auth, Principal
from striate.server.sessions import SESSION_HOURS, Session, Sessions

LOCAL_PRINCIPAL = Principal(user_id=0, name="local", is_admin=True, token_id="local")
_NO_USERS = ("the local dashboard (`striate ui`) has no users or tokens: its one access token is the URL it printed",
             "run `striate server` for a team server with users, tokens and roles")


def new_local_token() -> str:
    """A fresh access token for one `striate ui` process (32 random bytes, URL-safe)."""
    return secrets.token_urlsafe(32)


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class LocalAuth(Auth):
    """Auth with a single token held in memory; its holder is an admin (owner of every project)."""

    def __init__(self, engine: sa.Engine, token: str) -> None:
        super().__init__(engine)
        if len(token) < 16:
            raise ValueError("a local access token needs at least 16 characters")
        self._token_sha256 = _hash(token)

    def authenticate(self, value: str) -> Principal:
        if not value or not hmac.compare_digest(_hash(value), self._token_sha256):
            raise AuthError("invalid access token for this local dashboard",
                            "open the URL `striate ui` printed (its ?token=... is the access token), "
                            "or restart `striate ui` for a new one")
        return LOCAL_PRINCIPAL

    def role(self, principal: Principal, project: str) -> str | None:
        return "owner"

    def projects(self, principal: Principal) -> dict[str, str] | None:
        return None

    def all_projects(self) -> list[str]:
        return []  # projects are the runs' (GET /projects counts them); there are no memberships

    def members(self, project: str) -> list[dict[str, Any]]:
        return [{"name": LOCAL_PRINCIPAL.name, "role": "owner"}]

    def _none(self, *_args: Any, **_kwargs: Any) -> Any:
        raise NotFoundError(*_NO_USERS)

    create_user = user_id = list_users = issue_token = revoke_token = disable_user = list_tokens = _none
    set_role = _none

    def count_admins(self) -> int:
        return 1


class LocalSessions(Sessions):
    """Browser sessions in memory (the process is the session store)."""

    def __init__(self, auth: LocalAuth) -> None:
        super().__init__(auth.engine, auth)
        self._live: dict[str, tuple[str, float]] = {}  # sha256(session id) -> (csrf, expires_at)
        self._lock = threading.Lock()

    def login(self, token: str, client: str) -> Session:
        principal = self.auth.authenticate(token)
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        expires_at = time.time() + SESSION_HOURS * 3600
        with self._lock:
            self._live[_hash(session_id)] = (csrf, expires_at)
        return Session(session_id, principal, csrf, expires_at)

    def find(self, session_id: str) -> Session:
        with self._lock:
            found = self._live.get(_hash(session_id)) if session_id and len(session_id) <= 100 else None
        if found is None or found[1] <= time.time():
            raise AuthError("this browser session has ended (logged out, expired, or `striate ui` restarted)",
                            "open the URL `striate ui` printed again")
        return Session(session_id, LOCAL_PRINCIPAL, found[0], found[1])

    def logout(self, session_id: str) -> None:
        with self._lock:
            self._live.pop(_hash(session_id), None)

