"""The web dashboard's files: the bundle `make ui` builds into ``ui_dist/`` (shipped in the wheel), served at ``/``.

The page reads and writes only through ``/api/v1``. When the bundle has not been built (a source
checkout without Node), ``/`` answers a page that says so and names ``make ui``; the API works either way.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

UI_DIST = Path(__file__).with_name("ui_dist")

# The page's own files only; no inline scripts; the token a local URL carries never leaves as a referrer.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>striate: dashboard not built</title></head>
<body><h1>The striate dashboard has not been built</h1>
<p>This server has no dashboard bundle ({where} is missing). In a source checkout, build it with
<code>make ui</code> (needs Node 20 and npm), then restart the server. Installed wheels include it.</p>
<p>The REST API works without it: <a href="/api/v1/docs">/api/v1/docs</a>.</p></body></html>
"""


def ui_built(dist: Path = UI_DIST) -> bool:
    """Whether the dashboard bundle exists (index.html is written last by the build)."""
    return (dist / "index.html").is_file()


def mount_ui(app: FastAPI, dist: Path = UI_DIST) -> None:
    """Serve the dashboard at ``/`` (its hashed assets under ``/assets``), or the not-built page."""

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        if not ui_built(dist):
            return HTMLResponse(NOT_BUILT.format(where=dist), status_code=503,
                                headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})
        return FileResponse(dist / "index.html", media_type="text/html",
                            headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})

    if (dist / "assets").is_dir():
        app.mount("/assets", _Assets(directory=dist / "assets"), name="ui-assets")


class _Assets(StaticFiles):
    """The bundle's assets: content-hashed names, so a browser may keep them."""

    async def get_response(self, path: str, scope):  # type: ignore[no-untyped-def]
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
            response.headers["X-Content-Type-Options"] = "nosniff"
        return response
