"""The server database's migration state: apply migrations, or refuse to serve a database that needs one."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from striate.errors import StoreError
from striate.server.migrations.env_settings import VERSION_TABLE

MIGRATIONS = Path(__file__).parent / "migrations"


def _config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration this striate knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None  # the package ships at least one migration
    return head


def current_revision(engine: sa.Engine) -> str | None:
    """The migration the database is at (None: none applied)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def _refuse_newer(current: str | None, shown_url: str) -> None:
    known = {rev.revision for rev in ScriptDirectory.from_config(_config()).walk_revisions()}
    if current is not None and current not in known:
        raise StoreError(f"the server database {shown_url} is at migration {current}, newer than this striate "
                         f"knows (newest {head_revision()})", "upgrade striate on this machine")


def _upgrade_command(shown_url: str) -> str:
    # A URL shown with its password masked cannot be pasted back: name the option instead.
    if "***" in shown_url:
        return "run `striate server upgrade` with the same --db URL"
    return f"run `striate server upgrade --db {shown_url}`"


def upgrade(engine: sa.Engine, shown_url: str = "the database") -> tuple[str | None, str]:
    """Apply every pending migration; returns (before, after). Refuses a database from a newer striate."""
    before = current_revision(engine)
    _refuse_newer(before, shown_url)
    with engine.begin() as conn:
        command.upgrade(_config(conn), "head")
    return before, head_revision()


def require_current(engine: sa.Engine, shown_url: str) -> None:
    """StoreError unless the database is at the newest migration."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    _refuse_newer(current, shown_url)
    state = "has no server tables" if current is None else f"is at migration {current}, this striate needs {head}"
    raise StoreError(f"the server database {shown_url} {state}",
                     f"{_upgrade_command(shown_url)} (back the database up first)")
