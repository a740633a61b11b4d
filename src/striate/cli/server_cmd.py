"""`striate server`: run the team server, apply its migrations, create its first admin, issue tokens."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any, Optional

import typer

from striate.cli.common import console, err_console
from striate.errors import StoreError, StriateError

server_app = typer.Typer(help="the team server: the store behind a REST API with users, tokens and roles",
                         no_args_is_help=False, invoke_without_command=True)

DB_OPTION = typer.Option(None, "--db", help="the server's store: a store folder (SQLite) or a postgresql:// URL "
                         "(default $STRIATE_STORE or ./striate-runs)")
WORKER_ENV = "STRIATE_SERVER_WORKER"  # how `--workers N` hands the store and settings to its workers
DAYS_OPTION = typer.Option(90, "--days", min=1, max=365, help="days until the token expires (at most 365)")


def _server_modules() -> Any:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401

        from striate.server import app as server_app_module
    except ImportError as error:
        raise StriateError(f"the server needs packages that are not installed ({error.name})",
                           "pip install 'striate[server]'") from None
    return server_app_module


def _open(db: Optional[str]) -> tuple[Any, Any, str]:
    """The store at ``db`` (or the default), its engine and how to show it. A folder must already hold
    a store or be an empty folder: a mistyped --db must not make a new, empty server database."""
    from striate.tracking.store import check_read_location, default_store_location, is_remote, open_store

    location = db or default_store_location()
    if not is_remote(location):
        try:
            check_read_location(Path(location))
        except StoreError as error:
            raise StoreError(error.problem, "check the path given to --db; a new server starts in an empty folder "
                             "(mkdir it first) or on a postgresql:// database") from None
    store = open_store(location)
    engine = getattr(store, "engine", None)
    if engine is None:
        raise StoreError(f"{location!r} is not a database store", "give --db a store folder or a postgresql:// URL")
    shown = engine.url.render_as_string(hide_password=True) if is_remote(location) else str(location)
    return store, engine, shown


def _check_port_free(host: str, port: int) -> None:
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise StriateError(f"cannot listen on {host}:{port}: {error.strerror or error}",
                               "pick another --port, or stop what is listening there") from None


@server_app.callback()
def serve(
    ctx: typer.Context,
    db: Optional[str] = DB_OPTION,
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (0.0.0.0: every interface)"),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="port to listen on"),
    artifacts: Optional[str] = typer.Option(
        None, "--artifacts", help="where artifact files are kept: a folder, or an fsspec URL such as "
        "s3://bucket/prefix (default: the store's own artifacts/ folder)"),
    max_artifact_mb: int = typer.Option(16384, "--max-artifact-mb", min=1,
                                        help="the largest artifact file the server takes, in MiB"),
    workers: int = typer.Option(1, "--workers", min=1, max=64,
                                help="server processes sharing the port (one per core is the rule of thumb; each "
                                "counts failed bearer-token attempts on its own)"),
) -> None:
    """Serve the store at --db over HTTP (the API is under /api/v1; its OpenAPI spec at /api/v1/openapi.json)."""
    if ctx.invoked_subcommand is not None:
        return
    module = _server_modules()
    import uvicorn

    from striate.tracking.store import default_store_location

    location = db or default_store_location()
    store, engine, shown = _open(location)
    settings = {"artifacts": artifacts, "max_artifact_bytes": max_artifact_mb * 1024 * 1024}
    # refuses a database that needs a migration, here, before any worker starts
    application = module.create_app(store, engine, shown, **settings)
    _check_port_free(host, port)
    err_console.print(f"striate server on http://{host}:{port}/api/v1 (store {shown}, artifacts "
                      f"{artifacts or store.artifact_root}, {workers} process{'es' if workers > 1 else ''}); "
                      "Ctrl-C stops it", markup=False, highlight=False)
    # proxy_headers off: a client must not choose its own address with X-Forwarded-For (login limits count
    # failures per address); behind a reverse proxy every client counts as the proxy's address.
    if workers == 1:
        uvicorn.run(application, host=host, port=port, log_level="warning", proxy_headers=False)
        return
    engine.dispose()  # each worker opens the store itself
    location = location if "://" in location else str(Path(location).resolve())
    os.environ[WORKER_ENV] = json.dumps({"db": location, **settings})
    uvicorn.run("striate.cli.server_cmd:worker_app", factory=True, workers=workers, host=host, port=port,
                log_level="warning", proxy_headers=False)


def worker_app() -> Any:
    """The application of one worker process of ``striate server --workers N`` (uvicorn's factory):
    the store and settings the parent process checked, handed over in $STRIATE_SERVER_WORKER."""
    module = _server_modules()
    settings = json.loads(os.environ[WORKER_ENV])
    store, engine, shown = _open(settings.pop("db"))
    return module.create_app(store, engine, shown, **settings)


@server_app.command("upgrade")
def upgrade(db: Optional[str] = DB_OPTION) -> None:
    """Apply the server's pending database migrations (back the database up first)."""
    _server_modules()
    from striate.server.schema_version import upgrade as apply_upgrade

    _store, engine, shown = _open(db)
    before, after = apply_upgrade(engine, shown)
    if before == after:
        console.print(f"the server database is up to date (migration {after})")
    else:
        console.print(f"the server database is now at migration {after} (was {before or 'new'})")


def _issue(db: Optional[str], name: str, days: int, create_admin: bool) -> None:
    from striate.server.auth import Auth
    from striate.server.schema_version import require_current

    _store, engine, shown = _open(db)
    require_current(engine, shown)
    auth = Auth(engine)
    user_id = auth.create_user(name, is_admin=True) if create_admin else auth.user_id(name)
    token = auth.issue_token(user_id, "create-admin" if create_admin else "striate server token", days * 86400)
    what = f"admin {name!r} created; its token" if create_admin else f"a token for {name!r}"
    err_console.print(f"{what} (shown only now, valid {days} days, id {token.id}):", markup=False, highlight=False)
    print(token.value)


@server_app.command("create-admin")
def create_admin(
    name: str = typer.Argument(..., help="the admin's user name"),
    db: Optional[str] = DB_OPTION,
    days: int = DAYS_OPTION,
) -> None:
    """Create an admin user and print its first API token (shown once: keep it)."""
    _server_modules()
    _issue(db, name, days, create_admin=True)


@server_app.command("token")
def token(
    name: str = typer.Argument(..., help="the user's name (an admin makes users with POST /api/v1/users)"),
    db: Optional[str] = DB_OPTION,
    days: int = DAYS_OPTION,
) -> None:
    """Issue an API token for an existing user, on the server's machine (shown once: hand it over safely)."""
    _server_modules()
    _issue(db, name, days, create_admin=False)
