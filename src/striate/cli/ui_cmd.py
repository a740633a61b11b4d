"""`striate ui`: the web dashboard over the local store, on 127.0.0.1 with a random access token."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Optional

import typer

from striate.cli.common import STORE_OPTION, err_console
from striate.errors import StoreError, StriateError

commands = typer.Typer()


@commands.command("ui")
def ui(
    store: Optional[str] = STORE_OPTION,
    port: int = typer.Option(0, "--port", min=0, max=65535, help="port on 127.0.0.1 (0: any free port)"),
    open_browser: bool = typer.Option(False, "--open", help="also open the URL in the default browser"),
) -> None:
    """Open the dashboard on this machine's store: serves it on 127.0.0.1 and prints the URL to open
    (with a fresh access token in it, as Jupyter does); Ctrl-C stops it."""
    try:
        import uvicorn

        from striate.server.app import create_app
        from striate.server.local import new_local_token
        from striate.server.ui import UI_DIST, ui_built
    except ImportError as error:
        raise StriateError(f"the dashboard needs packages that are not installed ({error.name})",
                           "pip install 'striate[server]'") from None
    from striate.tracking.store import check_read_location, default_store_location, is_remote, is_server, open_store

    location = store or default_store_location()
    if is_server(location):
        raise StriateError(f"{location} is a team server: it serves its own dashboard",
                           f"open {location.rstrip('/')}/ in a browser and log in with your token")
    if not is_remote(location):
        check_read_location(Path(location))
    opened = open_store(location)
    engine = getattr(opened, "engine", None)
    if engine is None:
        raise StoreError(f"{location!r} is not a database store", "give --store a store folder or a postgresql:// URL")
    if not ui_built():
        err_console.print(f"warning: the dashboard bundle is not built ({UI_DIST} is missing): the page will say "
                          "so; build it with `make ui`", markup=False, highlight=False)
    token = new_local_token()
    application = create_app(opened, engine, str(location), local_token=token)

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", port))
    except OSError as error:
        listener.close()
        raise StriateError(f"cannot listen on 127.0.0.1:{port}: {error.strerror or error}",
                           "pick another --port, or leave it out for any free port") from None
    listener.listen(128)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/?token={token}"
    err_console.print(f"striate dashboard for store {location}; Ctrl-C stops it. Open:", markup=False,
                      highlight=False)
    print(url, flush=True)
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    server = uvicorn.Server(uvicorn.Config(application, log_level="warning"))
    server.run(sockets=[listener])
