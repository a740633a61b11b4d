"""The team server's API in-process (FastAPI's TestClient over the real app and a real SQLite store)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

import sqlalchemy as sa  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

import striate  # noqa: E402
from striate.errors import StoreError  # noqa: E402
from striate.server import schema_version  # noqa: E402
from striate.server.app import create_app  # noqa: E402
from striate.server.auth import Auth  # noqa: E402
from striate.tracking.store import open_store  # noqa: E402


def _run(store_dir: Path, project: str, values: list[float]) -> str:
    run = striate.init(project=project, store=str(store_dir), capture_console=False, system_metrics=False,
                       capture_environment=False, config={"lr": 0.1})
    for step, value in enumerate(values):
        run.log({"loss": value}, step=step)
    run.finish()
    return run.id


@pytest.fixture()
def server(tmp_path: Path):
    store = open_store(tmp_path / "store")
    schema_version.upgrade(store.engine)  # type: ignore[attr-defined]
    auth = Auth(store.engine)  # type: ignore[attr-defined]
    admin = auth.create_user("root", is_admin=True)
    alice = auth.create_user("alice")
    auth.set_role("vision", alice, "viewer")
    runs = {"vision": _run(tmp_path / "store", "vision", [1.0, float("nan"), float("inf"), 0.5]),
            "secret": _run(tmp_path / "store", "secret", [2.0])}
    client = TestClient(create_app(store, store.engine, "test-store"))  # type: ignore[attr-defined]
    tokens = {"root": auth.issue_token(admin, "t").value, "alice": auth.issue_token(alice, "t").value}
    return client, auth, tokens, runs, store


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_health_needs_no_token_and_everything_else_does(server) -> None:
    client, _auth, _tokens, runs, _store = server
    assert client.get("/api/v1/health").json()["status"] == "ok"
    for path in ("/api/v1/runs", f"/api/v1/runs/{runs['vision']}", "/api/v1/me"):
        response = client.get(path)
        assert response.status_code == 401, path
        body = response.json()
        assert "token" in body["error"] and "Authorization: Bearer" in body["fix"]
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("token", ["", "Bearer", "Bearer stt_abc", "Basic dXNlcjpwYXNz",
                                   "Bearer stt_000000000000_" + "A" * 43])
def test_malformed_or_unknown_tokens_get_one_401(server, token: str) -> None:
    client, *_ = server
    response = client.get("/api/v1/runs", headers={"Authorization": token})
    assert response.status_code == 401
    assert set(response.json()) == {"error", "fix"}


def test_a_token_with_a_wrong_secret_is_refused(server) -> None:
    client, _auth, tokens, *_ = server
    good = tokens["alice"]
    forged = good[:-1] + ("A" if good[-1] != "A" else "B")
    assert client.get("/api/v1/me", headers=_h(good)).status_code == 200
    assert client.get("/api/v1/me", headers=_h(forged)).status_code == 401


def test_a_non_member_sees_nothing_of_a_project(server) -> None:
    client, _auth, tokens, runs, _store = server
    listed = client.get("/api/v1/runs", headers=_h(tokens["alice"])).json()["runs"]
    assert [r["id"] for r in listed] == [runs["vision"]]
    assert client.get("/api/v1/runs", params={"project": "secret"}, headers=_h(tokens["alice"])).json() == {"runs": []}
    hidden = client.get(f"/api/v1/runs/{runs['secret']}", headers=_h(tokens["alice"]))
    missing = client.get("/api/v1/runs/ffffffffffff", headers=_h(tokens["alice"]))
    assert hidden.status_code == missing.status_code == 404
    assert "secret" not in hidden.text  # the project's name does not leak
    assert client.get(f"/api/v1/runs/{runs['secret']}/metrics/loss", headers=_h(tokens["alice"])).status_code == 404
    admin = client.get("/api/v1/runs", headers=_h(tokens["root"])).json()["runs"]
    assert sorted(r["id"] for r in admin) == sorted(runs.values())


def test_the_filter_language_works_through_the_api_and_its_errors_are_json(server) -> None:
    client, _auth, tokens, runs, _store = server
    found = client.get("/api/v1/runs", params={"where": "params.lr = 0.1"}, headers=_h(tokens["root"])).json()
    assert len(found["runs"]) == 2
    bad = client.get("/api/v1/runs", params={"where": "params.lr >>> 1"}, headers=_h(tokens["root"]))
    assert bad.status_code == 400 and bad.json()["error"]


def test_metric_history_keeps_nan_and_infinity(server) -> None:
    client, _auth, tokens, runs, _store = server
    body = client.get(f"/api/v1/runs/{runs['vision']}/metrics/loss", headers=_h(tokens["alice"])).json()
    assert body["steps"] == [0, 1, 2, 3]
    assert body["values"][0] == 1.0 and body["values"][1] == "NaN" and body["values"][2] == "Infinity"
    assert body["values"][3] == 0.5


def test_expired_and_revoked_tokens_are_refused(server) -> None:
    client, auth, tokens, *_ = server
    alice = auth.user_id("alice")
    expired = auth.issue_token(alice, "short", ttl_s=0.0)
    time.sleep(0.01)
    assert client.get("/api/v1/me", headers=_h(expired.value)).status_code == 401
    fresh = auth.issue_token(alice, "fresh")
    assert client.get("/api/v1/me", headers=_h(fresh.value)).status_code == 200
    auth.revoke_token(fresh.id, auth.authenticate(fresh.value))
    assert client.get("/api/v1/me", headers=_h(fresh.value)).status_code == 401


def test_tokens_are_stored_hashed(server, tmp_path: Path) -> None:
    _client, auth, tokens, _runs, store = server
    secret = tokens["alice"].rsplit("_", 1)[1]
    with store.engine.connect() as conn:
        stored = [tuple(row) for row in conn.execute(sa.text("SELECT * FROM server_tokens"))]
    assert stored and secret not in repr(stored)
    assert all(secret.encode() not in p.read_bytes() for p in (tmp_path / "store").rglob("*") if p.is_file())


def test_a_database_without_the_server_tables_is_refused_naming_the_command(tmp_path: Path) -> None:
    store = open_store(tmp_path / "fresh")
    with pytest.raises(StoreError, match="striate server upgrade --db"):
        create_app(store, store.engine, "fresh")  # type: ignore[attr-defined]


def test_a_database_from_a_newer_striate_is_refused(tmp_path: Path) -> None:
    store = open_store(tmp_path / "newer")
    schema_version.upgrade(store.engine)  # type: ignore[attr-defined]
    with store.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(sa.text(f"UPDATE {schema_version.VERSION_TABLE} SET version_num = '9999'"))
    with pytest.raises(StoreError, match="newer than this striate"):
        create_app(store, store.engine, "newer")  # type: ignore[attr-defined]


def test_upgrade_is_idempotent(tmp_path: Path) -> None:
    store = open_store(tmp_path / "twice")
    before, after = schema_version.upgrade(store.engine)  # type: ignore[attr-defined]
    assert before is None and after == schema_version.head_revision()
    assert schema_version.upgrade(store.engine) == (after, after)  # type: ignore[attr-defined]


def test_the_openapi_spec_lists_the_versioned_routes(server) -> None:
    client, *_ = server
    spec = client.get("/api/v1/openapi.json").json()
    assert {"/api/v1/health", "/api/v1/runs", "/api/v1/runs/{run_ref}"} <= set(spec["paths"])
    assert math.isfinite(float(spec["info"]["version"]))


def test_roles_decide_who_may_write(server) -> None:
    client, auth, tokens, runs, store = server
    tag = {"add": ["good"]}
    denied = client.post(f"/api/v1/runs/{runs['vision']}/tags", json=tag, headers=_h(tokens["alice"]))
    assert denied.status_code == 403 and "viewer" in denied.json()["error"]
    assert store.get_run(runs["vision"]).tags == []
    auth.set_role("vision", auth.user_id("alice"), "editor")
    allowed = client.post(f"/api/v1/runs/{runs['vision']}/tags", json=tag, headers=_h(tokens["alice"]))
    assert allowed.status_code == 200 and store.get_run(runs["vision"]).tags == ["good"]
    # an editor still cannot manage members; a non-member gets 404 for the project itself
    put = client.put("/api/v1/projects/vision/members/root", json={"role": "viewer"}, headers=_h(tokens["alice"]))
    assert put.status_code == 403
    assert client.get("/api/v1/projects/secret/members", headers=_h(tokens["alice"])).status_code == 404


def test_only_an_admin_creates_users_and_an_owner_adds_members(server) -> None:
    client, auth, tokens, runs, _store = server
    assert client.post("/api/v1/users", json={"name": "bob"}, headers=_h(tokens["alice"])).status_code == 403
    assert client.post("/api/v1/users", json={"name": "bob"}, headers=_h(tokens["root"])).status_code == 201
    assert client.post("/api/v1/users", json={"name": "bob"}, headers=_h(tokens["root"])).status_code == 409
    assert client.post("/api/v1/users", json={"name": "../x"}, headers=_h(tokens["root"])).status_code == 400
    owner = client.put("/api/v1/projects/secret/members/alice", json={"role": "owner"}, headers=_h(tokens["root"]))
    assert owner.status_code == 200
    bad_role = client.put("/api/v1/projects/secret/members/bob", json={"role": "god"}, headers=_h(tokens["alice"]))
    assert bad_role.status_code == 400 and "owner" in bad_role.json()["fix"]
    assert client.put("/api/v1/projects/secret/members/bob", json={"role": "viewer"},
                      headers=_h(tokens["alice"])).status_code == 200
    members = client.get("/api/v1/projects/secret/members", headers=_h(tokens["alice"])).json()["members"]
    assert members == [{"name": "alice", "role": "owner"}, {"name": "bob", "role": "viewer"}]
    listed = client.get("/api/v1/runs", headers=_h(tokens["alice"])).json()["runs"]
    assert sorted(r["id"] for r in listed) == sorted(runs.values())


def test_a_token_issued_through_the_api_is_shown_once_and_can_be_revoked(server) -> None:
    client, _auth, tokens, *_ = server
    issued = client.post("/api/v1/tokens", json={"name": "laptop", "days": 1}, headers=_h(tokens["alice"])).json()
    assert issued["token"].startswith("stt_") and issued["expires_at"] > time.time()
    listed = client.get("/api/v1/tokens", headers=_h(issued["token"])).json()["tokens"]
    assert {t["name"] for t in listed} == {"t", "laptop"}
    assert issued["token"].rsplit("_", 1)[1] not in str(listed)
    # alice cannot revoke root's token; her own goes
    root_id = tokens["root"].split("_")[1]
    assert client.delete(f"/api/v1/tokens/{root_id}", headers=_h(tokens["alice"])).status_code == 404
    assert client.delete(f"/api/v1/tokens/{issued['id']}", headers=_h(tokens["alice"])).status_code == 204
    assert client.get("/api/v1/me", headers=_h(issued["token"])).status_code == 401
    assert client.get("/api/v1/me", headers=_h(tokens["root"])).status_code == 200
