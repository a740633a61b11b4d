"""Browser sessions for the web UI: log in with an API token, get an HttpOnly cookie and a CSRF token.

A program sends its token on every request (``Authorization: Bearer``); a browser page should not
keep a token where scripts can read it. ``POST /api/v1/session`` with a token answers with a session
cookie (``HttpOnly`` — no script reads it; ``Secure`` — sent over HTTPS and to localhost only;
``SameSite=Strict`` — never sent by another site's page) and a CSRF token the page keeps in memory
and sends in the ``X-CSRF-Token`` header of every request that changes something. The server keeps
the SHA-256 of the session id, never the id. A session ends at logout, after SESSION_HOURS, or as
soon as its token is revoked or expires or its user is disabled.

Failed logins are counted per client address in the database (so every worker and a restart see
the same count): more than LOGIN_FAILURES_ALLOWED in LOGIN_WINDOW_S answer 429 until the window
has passed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa

from striate.errors import AuthError, ForbiddenError, TooManyRequestsError
from striate.server.auth import Auth, Principal, metadata, tokens, users

SESSION_COOKIE = "striate_session"
CSRF_HEADER = "X-CSRF-Token"
SESSION_HOURS = 12
LOGIN_FAILURES_ALLOWED = 10
LOGIN_WINDOW_S = 300.0
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

sessions = sa.Table(
    "server_sessions", metadata,
    sa.Column("id_sha256", sa.String(64), primary_key=True),
    sa.Column("token_id", sa.String(12), sa.ForeignKey("server_tokens.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)

login_failures = sa.Table(
    "server_login_failures", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("client", sa.String(64), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Index("ix_server_login_failures_client_at", "client", "at"),
)


class FailureCounter:
    """Failed bearer-token attempts per client address, in this process's memory (a token is checked on
    every request: a database write per failure would let a guesser load the database instead). Past
    LOGIN_FAILURES_ALLOWED in LOGIN_WINDOW_S, the client's further invalid tokens answer 429 instead of 401
    until the window has passed; a valid token is never refused (one bad client behind a shared address, a
    proxy or a NAT, must not lock the others out)."""

    def __init__(self) -> None:
        import threading

        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def failed(self, client: str) -> None:
        """Count one failed attempt of ``client``; TooManyRequestsError once it is over the limit."""
        now = time.time()
        with self._lock:
            if len(self._failures) > 100_000:  # a flood of addresses must not grow this without bound
                self._failures.clear()
            recent = [t for t in self._failures.get(client, ()) if t >= now - LOGIN_WINDOW_S] + [now]
            self._failures[client] = recent[-(LOGIN_FAILURES_ALLOWED + 1):]
        if len(recent) > LOGIN_FAILURES_ALLOWED:
            wait = max(1, int(recent[-LOGIN_FAILURES_ALLOWED - 1] + LOGIN_WINDOW_S - now) + 1)
            raise TooManyRequestsError(f"too many requests with invalid tokens from {client}",
                                       f"wait {wait} s, then send a valid token", retry_after_s=wait)


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    """A logged-in browser: who it acts for, its CSRF token and when it ends."""

    id: str  # the cookie's value: exists only in the answer to the login and in the browser
    principal: Principal
    csrf: str
    expires_at: float


class Sessions:
    """Browser sessions in the server's database."""

    def __init__(self, engine: sa.Engine, auth: Auth) -> None:
        self.engine, self.auth = engine, auth

    def login(self, token: str, client: str) -> Session:
        """A new session for the holder of ``token``; AuthError when it is not valid (counted against
        ``client``), TooManyRequestsError while ``client`` has failed too often."""
        client = (client or "unknown")[:64]
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(login_failures.delete().where(login_failures.c.at < now - LOGIN_WINDOW_S))
            failures = conn.execute(sa.select(sa.func.count(), sa.func.min(login_failures.c.at)).where(
                login_failures.c.client == client, login_failures.c.at >= now - LOGIN_WINDOW_S)).one()
        if failures[0] >= LOGIN_FAILURES_ALLOWED:
            wait = max(1, int(failures[1] + LOGIN_WINDOW_S - now) + 1)
            raise TooManyRequestsError(f"too many failed logins from {client} in the last "
                                       f"{int(LOGIN_WINDOW_S // 60)} minutes",
                                       f"wait {wait} s, then log in with a valid token", retry_after_s=wait)
        try:
            principal = self.auth.authenticate(token)
        except AuthError:
            with self.engine.begin() as conn:
                conn.execute(login_failures.insert().values(client=client, at=now))
            raise
        with self.engine.connect() as conn:
            token_expiry = conn.execute(sa.select(tokens.c.expires_at)
                                        .where(tokens.c.id == principal.token_id)).scalar()
        expires_at = min(now + SESSION_HOURS * 3600, token_expiry or float("inf"))
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(sessions.delete().where(sessions.c.expires_at < now))
            conn.execute(sessions.insert().values(id_sha256=_hash(session_id), token_id=principal.token_id, csrf=csrf,
                                                  created_at=now, expires_at=expires_at))
        return Session(session_id, principal, csrf, expires_at)

    def find(self, session_id: str) -> Session:
        """The live session with this cookie value; AuthError otherwise (ended, its token revoked or
        expired, its user disabled)."""
        ended = AuthError("this browser session has ended (logged out, expired, or its token was revoked)",
                          "log in again with a valid token")
        if not session_id or len(session_id) > 100:
            raise ended
        now = time.time()
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(sessions.c.token_id, sessions.c.csrf, sessions.c.expires_at, tokens.c.expires_at.label("te"),
                          tokens.c.revoked_at, users.c.id, users.c.name, users.c.is_admin, users.c.disabled_at)
                .join(tokens, tokens.c.id == sessions.c.token_id).join(users, users.c.id == tokens.c.user_id)
                .where(sessions.c.id_sha256 == _hash(session_id))).first()
        if row is None or row.expires_at <= now or row.revoked_at is not None or row.disabled_at is not None or (
                row.te is not None and row.te <= now):
            raise ended
        return Session(session_id, Principal(int(row.id), row.name, bool(row.is_admin), row.token_id), row.csrf,
                       float(row.expires_at))

    def check_csrf(self, session: Session, method: str, sent: str | None) -> None:
        """ForbiddenError when a request that changes something lacks the session's CSRF token."""
        if method.upper() in SAFE_METHODS:
            return
        if not sent or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
            raise ForbiddenError(f"this request changes something but carries no valid {CSRF_HEADER} header",
                                 f"send the session's CSRF token (GET /api/v1/session returns it) in {CSRF_HEADER}")

    def logout(self, session_id: str) -> None:
        """End the session (no error when it has ended already)."""
        with self.engine.begin() as conn:
            conn.execute(sessions.delete().where(sessions.c.id_sha256 == _hash(session_id)))
