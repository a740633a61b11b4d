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
    assert {"error", "fix"} <= set(response.json()) <= {"error", "fix", "type"}


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


def test_every_answer_says_how_long_the_server_took(server) -> None:
    client, _auth, tokens, runs, _store = server
    for response in (client.get(f"/api/v1/runs/{runs['vision']}/metrics/loss", headers=_h(tokens["alice"])),
                     client.get("/api/v1/runs"), client.get("/api/v1/nowhere")):
        name, took = response.headers["server-timing"].split(";dur=")
        assert name == "app" and 0 < float(took) < 60_000, response.headers["server-timing"]


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
    secret = tokens["alice"].split("_", 2)[2]
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
    assert issued["token"].split("_", 2)[2] not in str(listed)
    # alice cannot revoke root's token; her own goes
    root_id = tokens["root"].split("_")[1]
    assert client.delete(f"/api/v1/tokens/{root_id}", headers=_h(tokens["alice"])).status_code == 404
    assert client.delete(f"/api/v1/tokens/{issued['id']}", headers=_h(tokens["alice"])).status_code == 204
    assert client.get("/api/v1/me", headers=_h(issued["token"])).status_code == 401
    assert client.get("/api/v1/me", headers=_h(tokens["root"])).status_code == 200


# -- what a hostile review found ------------------------------------------------------------------

def test_filter_errors_name_no_field_of_a_hidden_project(server, tmp_path: Path) -> None:
    client, _auth, tokens, runs, store = server
    hidden = striate.init(project="secret", store=str(tmp_path / "store"), capture_console=False,
                          system_metrics=False, capture_environment=False, config={"customer_budget": 5})
    hidden.log({"acme_forecast": 1.0})
    hidden.finish()
    for where in ("params.customer_budge > 0", "params.customer_budget > 0", "params.nothing > 0",
                  "metrics.acme_forecas > 0"):
        response = client.get("/api/v1/runs", params={"where": where}, headers=_h(tokens["alice"]))
        assert response.status_code == 400, where  # no run alice can see has it: the same answer either way
        fix = response.json()["fix"]  # the error repeats the caller's own filter; the fix names what exists
        assert "customer_budget" not in fix and "acme_forecast" not in fix, fix
    sort = client.get("/api/v1/runs", params={"sort": "params.customer_budge"}, headers=_h(tokens["alice"]))
    assert sort.status_code == 400 and "customer_budget" not in sort.json()["fix"]
    # the admin sees every project, so the same filter works and the hint names the field
    admin = client.get("/api/v1/runs", params={"where": "params.customer_budget > 0"}, headers=_h(tokens["root"]))
    assert [r["id"] for r in admin.json()["runs"]] == [hidden.id]


def test_a_hidden_run_neither_shadows_a_visible_one_nor_shows_through_a_prefix(server, tmp_path: Path) -> None:
    client, _auth, tokens, runs, store = server
    visible = store.get_run(runs["vision"])
    twin = striate.init(project="secret", name=visible.name, store=str(tmp_path / "store"), capture_console=False,
                        system_metrics=False, capture_environment=False)
    twin.finish()
    by_name = client.get(f"/api/v1/runs/{visible.name}", headers=_h(tokens["alice"]))
    assert by_name.status_code == 200 and by_name.json()["id"] == visible.id
    # a one-character prefix that both share answers like one that only the visible run has
    for prefix in {visible.id[:1], twin.id[:1]}:
        response = client.get(f"/api/v1/runs/{prefix}", headers=_h(tokens["alice"]))
        assert response.status_code in (200, 404)
        if response.status_code == 200:
            assert response.json()["id"] == visible.id


def test_concurrent_tag_changes_all_land(server) -> None:
    from concurrent.futures import ThreadPoolExecutor

    client, auth, tokens, runs, store = server
    auth.set_role("vision", auth.user_id("alice"), "editor")

    def add(i: int) -> int:
        return client.post(f"/api/v1/runs/{runs['vision']}/tags", json={"add": [f"t{i}"]},
                           headers=_h(tokens["alice"])).status_code

    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(add, range(40)))
    assert codes == [200] * 40
    assert sorted(store.get_run(runs["vision"]).tags) == sorted(f"t{i}" for i in range(40))


@pytest.mark.parametrize("tags", [[""], ["   "], ["a\nb"], ["x" * 400]])
def test_the_api_refuses_the_tags_the_cli_refuses(server, tags: list[str]) -> None:
    client, auth, tokens, runs, store = server
    response = client.post(f"/api/v1/runs/{runs['vision']}/tags", json={"add": tags}, headers=_h(tokens["root"]))
    assert response.status_code == 400 and response.json()["fix"]
    assert store.get_run(runs["vision"]).tags == []


def test_an_admin_issues_a_users_first_token_and_can_cut_the_user_off(server) -> None:
    client, auth, tokens, *_ = server
    client.post("/api/v1/users", json={"name": "carol"}, headers=_h(tokens["root"]))
    issued = client.post("/api/v1/users/carol/tokens", json={"name": "first"}, headers=_h(tokens["root"]))
    assert issued.status_code == 201
    carol = issued.json()["token"]
    assert client.get("/api/v1/me", headers=_h(carol)).json()["user"] == "carol"
    assert client.post("/api/v1/users/alice/tokens", json={"name": "x"}, headers=_h(carol)).status_code == 403
    listed = client.get("/api/v1/users/carol/tokens", headers=_h(tokens["root"])).json()["tokens"]
    assert [t["name"] for t in listed] == ["first"]
    assert client.delete("/api/v1/users/carol", headers=_h(tokens["root"])).status_code == 204
    assert client.get("/api/v1/me", headers=_h(carol)).status_code == 401
    # the last admin cannot be disabled
    assert client.delete("/api/v1/users/root", headers=_h(tokens["root"])).status_code == 409


def test_a_token_never_outlives_the_token_that_issued_it_and_dies_with_it(server) -> None:
    client, auth, tokens, *_ = server
    alice = auth.user_id("alice")
    short = auth.issue_token(alice, "short", ttl_s=3600)
    child = client.post("/api/v1/tokens", json={"name": "child", "days": 300}, headers=_h(short.value)).json()
    assert child["expires_at"] <= short.expires_at + 1e-6
    grandchild = client.post("/api/v1/tokens", json={"name": "grandchild"}, headers=_h(child["token"])).json()
    for body in ({"name": "forever", "days": None}, {"name": "long", "days": 400}, {"name": "nan", "days": "NaN"}):
        assert client.post("/api/v1/tokens", json=body, headers=_h(short.value)).status_code == 422, body
    assert client.delete(f"/api/v1/tokens/{short.id}", headers=_h(short.value)).status_code == 204
    for value in (short.value, child["token"], grandchild["token"]):
        assert client.get("/api/v1/me", headers=_h(value)).status_code == 401
    assert client.get("/api/v1/me", headers=_h(tokens["alice"])).status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/runs/%00", "/api/v1/runs/" + "a" * 300, "/api/v1/projects/a%00/members",
                                  "/api/v1/projects/" + "p" * 300 + "/members", "/api/v1/tokens/%00"])
def test_input_no_store_can_hold_is_a_4xx_not_a_500(server, path: str) -> None:
    client, _auth, tokens, *_ = server
    method = client.delete if path.startswith("/api/v1/tokens") else client.get
    response = method(path, headers=_h(tokens["root"]))
    assert response.status_code == 404 and {"error", "fix"} <= set(response.json()) <= {"error", "fix", "type"}


def test_memberships_and_sorts_are_checked(server) -> None:
    client, auth, tokens, runs, _store = server
    for project in ("a%00b", "p" * 300):
        response = client.put(f"/api/v1/projects/{project}/members/alice", json={"role": "viewer"},
                              headers=_h(tokens["root"]))
        assert response.status_code == 404
    assert client.get("/api/v1/runs", headers=_h(tokens["alice"])).status_code == 200  # nothing broke for alice
    many = client.get("/api/v1/runs", params={"sort": ",".join(["params.lr"] * 500)}, headers=_h(tokens["root"]))
    assert many.status_code == 400 and "sort" in many.json()["error"]


def test_the_last_owner_cannot_leave_or_step_down(server) -> None:
    client, auth, tokens, *_ = server
    client.put("/api/v1/projects/vision/members/alice", json={"role": "owner"}, headers=_h(tokens["root"]))
    assert client.delete("/api/v1/projects/vision/members/alice", headers=_h(tokens["alice"])).status_code == 409
    assert client.put("/api/v1/projects/vision/members/alice", json={"role": "viewer"},
                      headers=_h(tokens["alice"])).status_code == 409
    assert auth.members("vision") == [{"name": "alice", "role": "owner"}]


@pytest.mark.parametrize("name", ["boss\n", "a b", "", "-x", "x" * 65])
def test_user_names_are_checked_whole(server, name: str) -> None:
    client, _auth, tokens, *_ = server
    assert client.post("/api/v1/users", json={"name": name}, headers=_h(tokens["root"])).status_code == 400


def test_unknown_routes_methods_and_unreadable_bodies_answer_in_the_error_format(server) -> None:
    client, _auth, tokens, *_ = server
    for response in (client.get("/api/v1/nope", headers=_h(tokens["root"])),
                     client.patch("/api/v1/me", headers=_h(tokens["root"])),
                     client.post("/api/v1/users", content=b'{"name":"\xff\xfe"}',
                                 headers={**_h(tokens["root"]), "Content-Type": "application/json"})):
        assert response.status_code in (400, 404, 405, 422), response.text
        assert {"error", "fix"} <= set(response.json()) <= {"error", "fix", "type"}, response.text


def test_the_openapi_spec_declares_bearer_auth_and_the_error_body(server) -> None:
    client, *_ = server
    spec = client.get("/api/v1/openapi.json").json()
    assert any(scheme.get("scheme") == "bearer" for scheme in spec["components"]["securitySchemes"].values())
    runs_get = spec["paths"]["/api/v1/runs"]["get"]
    assert runs_get["security"] and {"401", "403", "404"} <= set(runs_get["responses"])
    assert "ErrorBody" in spec["components"]["schemas"]


def test_downsampling_keeps_where_a_metric_became_nan() -> None:
    import numpy as np

    from striate.tracking.store.base import downsample_m4
    from striate.tracking.store.codec import MetricSeries

    values = np.linspace(0, 1, 5000)
    values[1234] = np.nan
    values[3001] = np.inf
    steps = np.arange(5000, dtype=np.int64)
    down = downsample_m4(MetricSeries("loss", steps, steps.astype(float), values), 1000)
    assert len(down) <= 1000
    assert 1234 in down.steps.tolist() and 3001 in down.steps.tolist()


def test_an_editor_stops_a_running_run_through_the_api(server, tmp_path: Path) -> None:
    client, auth, tokens, runs, store = server
    live = striate.init(project="vision", store=str(tmp_path / "store"), capture_console=False,
                        system_metrics=False, capture_environment=False)
    try:
        assert client.post(f"/api/v1/runs/{live.id}/stop", headers=_h(tokens["alice"])).status_code == 403
        auth.set_role("vision", auth.user_id("alice"), "editor")
        asked = client.post(f"/api/v1/runs/{live.id}/stop", headers=_h(tokens["alice"]))
        assert asked.status_code == 200
        assert store.get_run(live.id).stop_requested_at == asked.json()["stop_requested_at"]
        finished = client.post(f"/api/v1/runs/{runs['vision']}/stop", headers=_h(tokens["alice"]))
        assert finished.status_code == 400 and "nothing to stop" in finished.json()["error"]
        assert client.post(f"/api/v1/runs/{runs['secret']}/stop", headers=_h(tokens["alice"])).status_code == 404
    finally:
        live.finish()
