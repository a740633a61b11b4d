"""`striate ui`: the dashboard over the local store with a URL token (the Jupyter convention), and no user tables."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CLI_ENV
from tests.ui.conftest import get_json, require_ui, seed_store, stop_process, wait_for_health


def _tables(folder: Path) -> set[str]:
    database = next(p for p in folder.iterdir() if p.suffix == ".db" or p.name.endswith(".sqlite"))
    with sqlite3.connect(database) as conn:
        return {row[0] for row in conn.execute("select name from sqlite_master where type = 'table'")}


@pytest.fixture(scope="module")
def local_ui(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One `striate ui` process over a seeded local store (no server tables), for this module."""
    require_ui()
    folder = tmp_path_factory.mktemp("local") / "local-store"
    folder.mkdir()
    runs = seed_store(folder)
    tables_before = _tables(folder)
    process = subprocess.Popen([sys.executable, "-m", "striate", "ui", "--store", str(folder)],
                               env={**os.environ, **CLI_ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and "/?token=" in url, (url, process.poll())
        base = url.split("/?token=")[0]
        wait_for_health(base, process, timeout=60)
        yield url, base, folder, runs, tables_before
    finally:
        stop_process(process)


def test_the_printed_url_logs_the_browser_in_and_the_token_leaves_the_address_bar(page: Any, local_ui: Any) -> None:
    url, base, folder, runs, tables_before = local_ui
    token = url.split("token=", 1)[1]
    assert len(token) >= 40
    page.goto(url)
    page.wait_for_selector("#runs-table tbody tr")
    assert "token" not in page.url, "the token is taken out of the address bar at once"
    assert set(page.locator("#runs-table tbody tr td:nth-child(2)").all_inner_texts()) == {r.name for r in runs}
    projects = [o.split(" (")[0] for o in page.locator("#project option").all_inner_texts()]
    assert projects == ["other", "vision"], "the local user owns every project of the store"

    # the local user can change runs (with the session's CSRF token), like an owner
    live = next(r for r in runs if r.status == "running")
    page.goto(f"{base}/#/run/{live.id}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Stop run").click()
    page.locator("#stop-requested").wait_for()
    from striate.tracking.store import open_store

    assert open_store(folder).get_run(live.id).stop_requested_at is not None

    # the API wants the token (or the session); users and tokens do not exist here; no tables were added
    assert get_json(f"{base}/api/v1/runs")[0] == 401
    assert get_json(f"{base}/api/v1/runs", token)[0] == 200
    status, body = get_json(f"{base}/api/v1/users", token)
    assert status == 404 and "striate server" in body["fix"]
    assert _tables(folder) == tables_before
    assert not any(name.startswith("server_") for name in _tables(folder))


def test_a_wrong_url_token_shows_the_error_and_the_login_form(page: Any, local_ui: Any) -> None:
    _url, base, _folder, _runs, _tables_before = local_ui
    page.goto(f"{base}/?token=not-the-token")
    alert = page.get_by_role("alert")
    assert "invalid access token" in alert.inner_text() and "striate ui" in alert.inner_text()
    assert "token" not in page.url
    assert page.get_by_label("API token").is_visible()
