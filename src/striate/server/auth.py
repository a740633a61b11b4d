"""Users, API tokens and project roles for the team server.

A token is shown once, when it is issued: ``stt_<id>_<secret>``. The server keeps the id and the
SHA-256 of the secret only (the secret is 32 random bytes, so a fast hash is enough: nothing can be
guessed from it), with an expiry and a revocation time. A project's members each have one role:
``viewer`` reads, ``editor`` also writes runs, ``owner`` also manages members. An admin sees and
manages everything. There is no default account: the first admin comes from
``striate server create-admin``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from striate.errors import StriateError

metadata = sa.MetaData()

ROLES = ("viewer", "editor", "owner")  # each role can do everything the ones before it can
TOKEN_PREFIX = "stt"
_TOKEN_RE = re.compile(rf"^{TOKEN_PREFIX}_([0-9a-f]{{12}})_([A-Za-z0-9_-]{{43}})$")
_USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

users = sa.Table(
    "server_users", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("is_admin", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("disabled_at", sa.Float),
)

tokens = sa.Table(
    "server_tokens", metadata,
    sa.Column("id", sa.String(12), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("server_users.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float),
    sa.Column("revoked_at", sa.Float),
    sa.Column("last_used_at", sa.Float),
)

members = sa.Table(
    "server_members", metadata,
    sa.Column("project", sa.String(200), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("server_users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
)


class AuthError(StriateError):
    """A request carries no valid credentials."""

    http_status = 401


class ForbiddenError(StriateError):
    """The user may see the project but not do this to it."""

    http_status = 403


class NotFoundError(StriateError):
    """No such user or project (as far as the caller may know)."""

    http_status = 404


class ConflictError(StriateError):
    """The thing to create exists already."""

    http_status = 409


@dataclass(frozen=True)
class Principal:
    """Who a request acts for."""

    user_id: int
    name: str
    is_admin: bool
    token_id: str


@dataclass(frozen=True)
class IssuedToken:
    """A token as issued: ``value`` is the only time the secret exists outside the client."""

    id: str
    name: str
    value: str
    expires_at: float | None


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def check_user_name(name: str) -> str:
    """A user name: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit."""
    if not _USER_RE.match(name):
        raise StriateError(f"invalid user name {name!r}",
                           "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def check_role(role: str) -> str:
    """One of ROLES."""
    if role not in ROLES:
        raise StriateError(f"unknown role {role!r}", f"use one of {', '.join(ROLES)}")
    return role


class Auth:
    """Users, tokens and memberships in the server's database."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    # -- users -------------------------------------------------------------------------------
    def create_user(self, name: str, is_admin: bool = False) -> int:
        """Add a user; an existing name is an error (names identify users in the CLI)."""
        check_user_name(name)
        with self.engine.begin() as conn:
            if conn.execute(sa.select(users.c.id).where(users.c.name == name)).first() is not None:
                raise ConflictError(f"a user named {name!r} exists already", "pick another name")
            result = conn.execute(users.insert().values(name=name, is_admin=is_admin, created_at=time.time()))
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def user_id(self, name: str) -> int:
        """The id of the user called ``name``."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(users.c.id).where(users.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no user named {name!r}", "create it first (POST /api/v1/users as an admin)")
        return int(row[0])

    def list_users(self) -> list[dict[str, Any]]:
        """Every user, without secrets."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(users).order_by(users.c.id)).mappings().all()
        return [dict(row) for row in rows]

    def count_admins(self) -> int:
        """How many enabled admins exist (0 on a new server)."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(users).where(
                users.c.is_admin.is_(True), users.c.disabled_at.is_(None))).scalar_one())

    # -- tokens ------------------------------------------------------------------------------
    def issue_token(self, user_id: int, name: str, ttl_s: float | None = 90 * 86400) -> IssuedToken:
        """A new token for ``user_id``, valid ``ttl_s`` seconds (None: until revoked)."""
        if not name or len(name) > 100:
            raise StriateError("a token needs a name of 1-100 characters", "name it after where it is used")
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        now = time.time()
        expires_at = None if ttl_s is None else now + ttl_s
        with self.engine.begin() as conn:
            conn.execute(tokens.insert().values(id=token_id, user_id=user_id, name=name,
                                                secret_sha256=_secret_hash(secret), created_at=now,
                                                expires_at=expires_at))
        return IssuedToken(token_id, name, f"{TOKEN_PREFIX}_{token_id}_{secret}", expires_at)

    def authenticate(self, value: str) -> Principal:
        """The principal a token value stands for; AuthError for anything else (one message for
        every reason, so a caller learns nothing about which tokens exist)."""
        invalid = AuthError("invalid, expired or revoked token",
                            "send 'Authorization: Bearer <token>' with a token from `striate server token`")
        match = _TOKEN_RE.match(value or "")
        if match is None:
            raise invalid
        token_id, secret = match.groups()
        now = time.time()
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(tokens.c.secret_sha256, tokens.c.expires_at, tokens.c.revoked_at,
                          users.c.id, users.c.name, users.c.is_admin, users.c.disabled_at)
                .join(users, users.c.id == tokens.c.user_id).where(tokens.c.id == token_id)).first()
        if row is None or not hmac.compare_digest(row.secret_sha256, _secret_hash(secret)):
            raise invalid
        if row.revoked_at is not None or row.disabled_at is not None or (
                row.expires_at is not None and row.expires_at <= now):
            raise invalid
        return Principal(int(row.id), row.name, bool(row.is_admin), token_id)

    def revoke_token(self, token_id: str, by: Principal) -> None:
        """Revoke one of ``by``'s tokens (an admin may revoke anyone's)."""
        with self.engine.begin() as conn:
            query = tokens.update().where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
            if not by.is_admin:
                query = query.where(tokens.c.user_id == by.user_id)
            if conn.execute(query.values(revoked_at=time.time())).rowcount == 0:
                raise NotFoundError(f"no active token {token_id!r} of yours", "list them with GET /api/v1/tokens")

    def list_tokens(self, user_id: int) -> list[dict[str, Any]]:
        """A user's tokens: id, name, times — never the secret or its hash."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(tokens.c.id, tokens.c.name, tokens.c.created_at, tokens.c.expires_at,
                                          tokens.c.revoked_at).where(tokens.c.user_id == user_id)
                                .order_by(tokens.c.created_at)).mappings().all()
        return [dict(row) for row in rows]

    # -- projects ----------------------------------------------------------------------------
    def set_role(self, project: str, user_id: int, role: str | None) -> None:
        """Give ``user_id`` ``role`` in ``project`` (None removes the membership)."""
        with self.engine.begin() as conn:
            conn.execute(members.delete().where(members.c.project == project, members.c.user_id == user_id))
            if role is not None:
                conn.execute(members.insert().values(project=project, user_id=user_id, role=check_role(role)))

    def role(self, principal: Principal, project: str) -> str | None:
        """``principal``'s role in ``project`` (admins are owners everywhere); None: not a member."""
        if principal.is_admin:
            return "owner"
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(members.c.role).where(
                members.c.project == project, members.c.user_id == principal.user_id)).first()
        return None if row is None else str(row[0])

    def projects(self, principal: Principal) -> dict[str, str] | None:
        """The projects ``principal`` is a member of, with the role; None for an admin (all of them)."""
        if principal.is_admin:
            return None
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(members.c.project, members.c.role).where(
                members.c.user_id == principal.user_id)).all()
        return {str(project): str(role) for project, role in rows}

    def members(self, project: str) -> list[dict[str, Any]]:
        """The members of ``project`` with their roles."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(users.c.name, members.c.role).join(users, users.c.id == members.c.user_id)
                                .where(members.c.project == project).order_by(users.c.name)).mappings().all()
        return [dict(row) for row in rows]


def at_least(role: str | None, needed: str) -> bool:
    """Whether ``role`` includes what ``needed`` allows."""
    return role is not None and ROLES.index(role) >= ROLES.index(needed)
