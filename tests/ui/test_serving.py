"""How the server serves the dashboard's files (no browser needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from striate.server.app import create_app  # noqa: E402
from striate.server.local import new_local_token  # noqa: E402
from striate.server.ui import mount_ui  # noqa: E402
from striate.tracking.store import open_store  # noqa: E402


def test_without_a_bundle_the_root_page_names_make_ui(tmp_path: Path) -> None:
    app = FastAPI()
    mount_ui(app, dist=tmp_path / "ui_dist")
    response = TestClient(app).get("/")
    assert response.status_code == 503
    assert "make ui" in response.text and str(tmp_path / "ui_dist") in response.text


def test_a_built_bundle_is_served_at_the_root_with_its_assets_and_security_headers(tmp_path: Path) -> None:
    dist = tmp_path / "ui_dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>striate</title><script src='/assets/app-1.js'></script>")
    (dist / "assets" / "app-1.js").write_text("console.log('x')")
    app = FastAPI()
    mount_ui(app, dist=dist)
    client = TestClient(app)
    index = client.get("/")
    assert index.status_code == 200 and "<title>striate</title>" in index.text
    assert index.headers["referrer-policy"] == "no-referrer", "a ?token= URL must never leak as a referrer"
    assert "script-src 'self'" in index.headers["content-security-policy"]
    asset = client.get("/assets/app-1.js")
    assert asset.status_code == 200 and "immutable" in asset.headers["cache-control"]
    assert client.get("/assets/missing.js").status_code == 404


def test_the_local_token_mode_needs_no_user_tables_and_keeps_the_api_under_api_v1(tmp_path: Path) -> None:
    store = open_store(tmp_path / "store")
    token = new_local_token()
    client = TestClient(create_app(store, store.engine, "local", local_token=token),  # type: ignore[attr-defined]
                        base_url="https://testserver")
    assert client.get("/api/v1/me").status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": "Bearer wrong"}).status_code == 401
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["admin"] is True
    login = client.post("/api/v1/session", json={"token": token})
    assert login.status_code == 200 and "HttpOnly" in login.headers["set-cookie"]
    assert client.get("/api/v1/projects").status_code == 200
    refused = client.post("/api/v1/runs/x/stop")  # a change without the CSRF header
    assert refused.status_code == 403
    assert client.delete("/api/v1/session", headers={"X-CSRF-Token": login.json()["csrf_token"]}).status_code == 204
    assert client.get("/api/v1/projects").status_code == 401
    with store.engine.connect() as conn:  # type: ignore[attr-defined]
        tables = set(conn.exec_driver_sql("select name from sqlite_master where type='table'").scalars())
    assert not any(name.startswith("server_") for name in tables)
    assert client.get("/api/v1/nothing").json()["error"].startswith("no such endpoint")


def test_striate_ui_refuses_a_missing_store_and_a_team_server_url(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    missing = run_cli("ui", "--store", str(tmp_path / "nope"))
    assert missing.returncode != 0 and "no store at" in missing.stderr
    assert not (tmp_path / "nope").exists(), "a mistyped --store makes nothing"
    remote = run_cli("ui", "--store", "http://127.0.0.1:9")
    assert remote.returncode != 0 and "serves its own dashboard" in remote.stderr
