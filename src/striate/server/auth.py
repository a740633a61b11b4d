"""Users, API tokens and project roles for the team server.

A token is shown once, when it is issued: ``stt_<id>_<secret>``. The server keeps the id and the
SHA-256 of the secret only (the secret is 32 random bytes, so a fast hash is enough: nothing can be
guessed from it), with an expiry and a revocation time. A project's members each have one role:
``viewer`` reads, ``editor`` also writes runs, ``owner`` also manages members. An admin sees and
manages everything. There is no default account: the first admin comes from
``striate server create-admin``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Iterator

import sqlalchemy as sa

from striate.errors import AuthError, ConflictError, NotFoundError, StriateError

metadata = sa.MetaData()

ROLES = ("viewer", "editor", "owner")  # each role can do everything the ones before it can
TOKEN_PREFIX = "stt"
_TOKEN_RE = re.compile(rf"{TOKEN_PREFIX}_([0-9a-f]{{12}})_([A-Za-z0-9_-]{{43}})")
_TOKEN_ID_RE = re.compile(r"[0-9a-f]{12}")
_USER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_TOKEN_DAYS = 365  # every token expires; a leaked one stops working within a year at the latest

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
    # the token whose holder issued this one: revoking a token revokes every token issued with it
    sa.Column("parent_id", sa.String(12)),
)

members = sa.Table(
    "server_members", metadata,
    sa.Column("project", sa.String(200), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("server_users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
)


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
    if not isinstance(name, str) or not _USER_RE.fullmatch(name):
        raise StriateError(f"invalid user name {name!r}",
                           "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def check_project_name(project: str) -> str:
    """A project name as the store holds them: 1-200 characters, no control characters (else NotFoundError:
    no such project can exist)."""
    if not project or len(project) > 200 or any(ch < " " or ch == "\x7f" for ch in project):
        raise NotFoundError(f"no project {project[:60]!r} on this server", "GET /api/v1/me lists your projects")
    return project


def check_role(role: str) -> str:
    """One of ROLES."""
    if not isinstance(role, str) or role not in ROLES:
        raise StriateError(f"unknown role {role!r}", f"use one of {', '.join(ROLES)}")
    return role


class Auth:
    """Users, tokens and memberships in the server's database."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @contextlib.contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """A write transaction that takes the write lock at once (SQLite: BEGIN IMMEDIATE), so a
        check-then-write (the last owner, the last admin, a new name) cannot race another writer."""
        with self.engine.connect() as conn:
            conn.info["begin_immediate"] = True  # read by the store's SQLite "begin" hook
            with conn.begin():
                yield conn

    # -- users -------------------------------------------------------------------------------
    def create_user(self, name: str, is_admin: bool = False) -> int:
        """Add a user; an existing name is an error (names identify users in the CLI)."""
        check_user_name(name)
        with self._write() as conn:
            if conn.execute(sa.select(users.c.id).where(users.c.name == name)).first() is not None:
                raise ConflictError(f"a user named {name!r} exists already", "pick another name")
            result = conn.execute(users.insert().values(name=name, is_admin=is_admin, created_at=time.time()))
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def user_id(self, name: str) -> int:
        """The id of the user called ``name``."""
        if not isinstance(name, str) or not _USER_RE.fullmatch(name):
            raise NotFoundError(f"no user named {name[:70]!r}", "GET /api/v1/users lists them (as an admin)")
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
    def issue_token(self, user_id: int, name: str, ttl_s: float = 90 * 86400,
                    parent: Principal | None = None) -> IssuedToken:
        """A new token for ``user_id``, valid ``ttl_s`` seconds (at most MAX_TOKEN_DAYS). With ``parent``
        (the token of the request that asks for it) it expires no later than that token and is revoked
        with it."""
        if not isinstance(name, str) or not name.strip() or len(name) > 100 or any(ch < " " for ch in name):
            raise StriateError("a token needs a name of 1-100 visible characters", "name it after where it is used")
        if not 0 <= ttl_s <= MAX_TOKEN_DAYS * 86400:
            raise StriateError(f"a token lives at most {MAX_TOKEN_DAYS} days",
                               f"ask for {MAX_TOKEN_DAYS} days or fewer")
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        now = time.time()
        expires_at = now + ttl_s
        with self._write() as conn:
            if parent is not None:
                parent_expiry = conn.execute(sa.select(tokens.c.expires_at)
                                             .where(tokens.c.id == parent.token_id)).scalar()
                if parent_expiry is not None:
                    expires_at = min(expires_at, parent_expiry)
            conn.execute(tokens.insert().values(id=token_id, user_id=user_id, name=name,
                                                secret_sha256=_secret_hash(secret), created_at=now,
                                                expires_at=expires_at,
                                                parent_id=None if parent is None else parent.token_id))
        return IssuedToken(token_id, name, f"{TOKEN_PREFIX}_{token_id}_{secret}", expires_at)

    def authenticate(self, value: str) -> Principal:
        """The principal a token value stands for; AuthError for anything else (one message for
        every reason, so a caller learns nothing about which tokens exist)."""
        invalid = AuthError("invalid, expired or revoked token",
                            "send 'Authorization: Bearer <token>' with a valid token: an admin issues one with "
                            "`striate server token USER` (or POST /api/v1/users/USER/tokens); "
                            "a token's holder gets more with POST /api/v1/tokens")
        match = _TOKEN_RE.fullmatch(value or "")
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
        """Revoke one of ``by``'s tokens (an admin may revoke anyone's) and every token issued with it."""
        if not _TOKEN_ID_RE.fullmatch(token_id or ""):
            raise NotFoundError(f"no active token {token_id[:20]!r} of yours", "list them with GET /api/v1/tokens")
        now = time.time()
        with self._write() as conn:
            query = tokens.update().where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
            if not by.is_admin:
                query = query.where(tokens.c.user_id == by.user_id)
            if conn.execute(query.values(revoked_at=now)).rowcount == 0:
                raise NotFoundError(f"no active token {token_id!r} of yours", "list them with GET /api/v1/tokens")
            parents = [token_id]
            while parents:  # the tokens issued with it, and theirs
                children = [row[0] for row in conn.execute(sa.select(tokens.c.id).where(
                    tokens.c.parent_id.in_(parents), tokens.c.revoked_at.is_(None)))]
                if children:
                    conn.execute(tokens.update().where(tokens.c.id.in_(children)).values(revoked_at=now))
                parents = children

    def disable_user(self, user_id: int, by: Principal) -> None:
        """Cut a user off: every token revoked, no new ones accepted (the last admin cannot be disabled)."""
        now = time.time()
        with self._write() as conn:
            row = conn.execute(sa.select(users.c.is_admin, users.c.disabled_at).where(users.c.id == user_id)).first()
            if row is None or row.disabled_at is not None:
                raise NotFoundError("no such active user", "GET /api/v1/users lists them")
            if row.is_admin:
                admins = conn.execute(sa.select(sa.func.count()).select_from(users).where(
                    users.c.is_admin.is_(True), users.c.disabled_at.is_(None))).scalar_one()
                if admins <= 1:
                    raise ConflictError("this is the last admin: disabling it would leave nobody to manage the server",
                                        "make another user admin first")
            conn.execute(users.update().where(users.c.id == user_id).values(disabled_at=now))
            conn.execute(tokens.update().where(tokens.c.user_id == user_id, tokens.c.revoked_at.is_(None))
                         .values(revoked_at=now))

    def list_tokens(self, user_id: int) -> list[dict[str, Any]]:
        """A user's tokens: id, name, times — never the secret or its hash."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(tokens.c.id, tokens.c.name, tokens.c.created_at, tokens.c.expires_at,
                                          tokens.c.revoked_at).where(tokens.c.user_id == user_id)
                                .order_by(tokens.c.created_at)).mappings().all()
        return [dict(row) for row in rows]

    # -- projects ----------------------------------------------------------------------------
    def set_role(self, project: str, user_id: int, role: str | None) -> None:
        """Give ``user_id`` ``role`` in ``project`` (None removes the membership). A project keeps at
        least one owner once it has one: the last owner cannot leave or step down."""
        check_project_name(project)
        if role is not None:
            check_role(role)
        with self._write() as conn:
            current = conn.execute(sa.select(members.c.role).where(
                members.c.project == project, members.c.user_id == user_id).with_for_update()).scalar()
            if current == "owner" and role != "owner":
                owners = conn.execute(sa.select(sa.func.count()).select_from(members).where(
                    members.c.project == project, members.c.role == "owner")).scalar_one()
                if owners <= 1:
                    raise ConflictError(f"this is the last owner of project {project!r}",
                                        "make another member owner first")
            conn.execute(members.delete().where(members.c.project == project, members.c.user_id == user_id))
            if role is not None:
                conn.execute(members.insert().values(project=project, user_id=user_id, role=role))

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

    def all_projects(self) -> list[str]:
        """Every project that has members."""
        with self.engine.connect() as conn:
            return [str(row[0]) for row in conn.execute(sa.select(members.c.project).distinct())]

    def members(self, project: str) -> list[dict[str, Any]]:
        """The members of ``project`` with their roles."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(users.c.name, members.c.role).join(users, users.c.id == members.c.user_id)
                                .where(members.c.project == project).order_by(users.c.name)).mappings().all()
        return [dict(row) for row in rows]


def at_least(role: str | None, needed: str) -> bool:
    """Whether ``role`` includes what ``needed`` allows."""
    return role is not None and ROLES.index(role) >= ROLES.index(needed)
