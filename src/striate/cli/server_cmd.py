"""`striate server`: run the team server, apply its migrations, create its first admin."""

from __future__ import annotations

from typing import Any, Optional

import typer

from striate.cli.common import console, err_console
from striate.errors import StoreError, StriateError

server_app = typer.Typer(help="the team server: the store behind a REST API with users, tokens and roles",
                         no_args_is_help=False, invoke_without_command=True)

DB_OPTION = typer.Option(None, "--db", help="the server's store: a folder (SQLite) or a postgresql:// URL "
                         "(default $STRIATE_STORE or ./striate-runs)")


def _server_modules() -> Any:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401

        from striate.server import app as server_app_module
    except ImportError as error:
        raise StriateError(f"the server needs packages that are not installed ({error.name})",
                           "pip install 'striate[server]'") from None
    return server_app_module


def _open(db: Optional[str]) -> Any:
    from striate.tracking.store import open_store

    store = open_store(db)
    engine = getattr(store, "engine", None)
    if engine is None:
        raise StoreError(f"{db!r} is not a database store", "give --db a store folder or a postgresql:// URL")
    return store, engine, engine.url.render_as_string(hide_password=True) if db and "://" in db else (db or "")


@server_app.callback()
def serve(
    ctx: typer.Context,
    db: Optional[str] = DB_OPTION,
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (0.0.0.0: every interface)"),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="port to listen on (0: any free port)"),
) -> None:
    """Serve the store at --db over HTTP (the API is under /api/v1; its OpenAPI spec at /api/v1/openapi.json)."""
    if ctx.invoked_subcommand is not None:
        return
    module = _server_modules()
    import uvicorn

    from striate.tracking.store import default_store_location

    store, engine, shown = _open(db or default_store_location())
    application = module.create_app(store, engine, shown or str(db or default_store_location()))
    err_console.print(f"striate server on http://{host}:{port}/api/v1 (store {shown or db}); Ctrl-C stops it")
    uvicorn.run(application, host=host, port=port, log_level="warning")


@server_app.command("upgrade")
def upgrade(db: Optional[str] = DB_OPTION) -> None:
    """Apply the server's pending database migrations (back the database up first)."""
    _server_modules()
    from striate.server.schema_version import upgrade as apply_upgrade
    from striate.tracking.store import default_store_location

    _store, engine, _shown = _open(db or default_store_location())
    before, after = apply_upgrade(engine)
    if before == after:
        console.print(f"the server database is up to date (migration {after})")
    else:
        console.print(f"the server database is now at migration {after} (was {before or 'new'})")


@server_app.command("create-admin")
def create_admin(
    name: str = typer.Argument(..., help="the admin's user name"),
    db: Optional[str] = DB_OPTION,
    days: int = typer.Option(90, "--days", min=1, help="days until the admin's first token expires"),
) -> None:
    """Create an admin user and print its first API token (shown once: keep it)."""
    _server_modules()
    from striate.server.auth import Auth
    from striate.server.schema_version import require_current
    from striate.tracking.store import default_store_location

    _store, engine, shown = _open(db or default_store_location())
    require_current(engine, shown or str(db or default_store_location()))
    auth = Auth(engine)
    user_id = auth.create_user(name, is_admin=True)
    token = auth.issue_token(user_id, "create-admin", ttl_s=days * 86400)
    err_console.print(f"admin {name!r} created; its token (shown only now, valid {days} days):")
    print(token.value)
