"""What a hostile client sends the team server: every case answers one clear 4xx, and nothing breaks for others.

Each case here was found by a hostile review of the server (crafted ids that removed the store, NaN in
record fields, nesting that broke every listing, overflowing integers, unknown fields, ...)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from striate.server import schema_version, sessions  # noqa: E402
from striate.server.app import create_app  # noqa: E402
from striate.server.auth import Auth  # noqa: E402
from striate.tracking.store import open_store  # noqa: E402


@pytest.fixture()
def api(tmp_path: Path):
    store = open_store(tmp_path / "store")
    schema_version.upgrade(store.engine)  # type: ignore[attr-defined]
    auth = Auth(store.engine)  # type: ignore[attr-defined]
    eve = auth.create_user("eve")
    auth.set_role("E", eve, "owner")
    alice = auth.create_user("alice")
    auth.set_role("A", alice, "owner")
    client = TestClient(create_app(store, store.engine, "test-store"))  # type: ignore[attr-defined]
    headers = {name: {"Authorization": f"Bearer {auth.issue_token(uid, 't').value}"}
               for name, uid in (("eve", eve), ("alice", alice))}
    return client, headers, store, tmp_path / "store"


def _run(project: str = "E", **fields: object) -> dict:
    now = time.time()
    return {"id": uuid.uuid4().hex, "name": "r", "project": project, "status": "running", "created_at": now,
            "heartbeat_at": now, **fields}


def _error(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] and body["fix"], body
    return str(body["error"])


@pytest.mark.parametrize("run_id", ["..", ".", "a/b", "a\\\\b", "x" * 33, "", "../../etc"])
def test_a_run_id_that_could_name_another_folder_is_refused(api, run_id: str) -> None:
    client, headers, _store, folder = api
    _error(client.post("/api/v1/runs", json=_run(id=run_id), headers=headers["eve"]), 422)
    assert (folder / "striate.db").is_file() and (folder / "artifacts").is_dir()


def test_deleting_a_crafted_id_never_removes_the_store(api) -> None:
    _client, _headers, store, folder = api
    from striate.tracking.store import RunRecord

    for crafted in ("..", "."):  # recorded by hand, as an imported or edited store might hold them
        now = time.time()
        store.create_run(RunRecord(id=crafted, name="x", project="E", status="finished", created_at=now,
                                   ended_at=now, heartbeat_at=now))
        store.delete_run(crafted)
    assert (folder / "striate.db").is_file() and (folder / "artifacts").is_dir()


@pytest.mark.parametrize("fields", [{"heartbeat_at": float("inf")}, {"created_at": float("nan")},
                                    {"pid": 2**70}, {"pid": -1}, {"bogus": 1}, {"metrics": {}},
                                    {"tags": ["a\nb"]}, {"tags": [""]}])
def test_bad_record_fields_are_refused_at_create_and_at_patch(api, fields: dict) -> None:
    client, headers, _store, _folder = api
    created = client.post("/api/v1/runs", content=_json({**_run(), **fields}),
                          headers={**headers["eve"], "Content-Type": "application/json"})
    assert created.status_code in (400, 422), created.text
    good = _run()
    assert client.post("/api/v1/runs", json=good, headers=headers["eve"]).status_code == 201
    patched = client.patch(f"/api/v1/runs/{good['id']}", content=_json({"fields": fields}),
                           headers={**headers["eve"], "Content-Type": "application/json"})
    assert patched.status_code in (400, 422), patched.text
    assert client.get("/api/v1/runs", headers=headers["eve"]).status_code == 200


def _json(value: object) -> bytes:
    import json

    return json.dumps(value).encode()  # NaN and Infinity as bare tokens, as a crafted client sends them


def test_deep_nesting_is_refused_and_listing_keeps_working(api) -> None:
    client, headers, _store, _folder = api
    deep: object = 1
    for _ in range(200):
        deep = [deep]
    good = _run()
    assert client.post("/api/v1/runs", json=good, headers=headers["eve"]).status_code == 201
    assert "deeper" in _error(client.patch(f"/api/v1/runs/{good['id']}", json={"fields": {"config": {"a": deep}}},
                                           headers=headers["eve"]), 400)
    assert "deeper" in _error(client.post("/api/v1/runs", json=_run(summary={"a": deep}), headers=headers["eve"]),
                              400)
    assert client.get("/api/v1/runs", headers=headers["eve"]).status_code == 200


def test_an_existing_id_is_a_conflict_and_small_things_are_not_500s(api) -> None:
    client, headers, _store, _folder = api
    run = _run()
    assert client.post("/api/v1/runs", json=run, headers=headers["eve"]).status_code == 201
    assert "exists already" in _error(client.post("/api/v1/runs", json=run, headers=headers["eve"]), 409)
    assert client.patch(f"/api/v1/runs/{run['id']}", json={"fields": {}}, headers=headers["eve"]).status_code == 204
    _error(client.post(f"/api/v1/runs/{run['id']}/claim", json={"host": "h", "pid": 2**70}, headers=headers["eve"]),
           422)
    owner = {"host": "h", "pid": 2**70, "pid_started_at": None}
    _error(client.post(f"/api/v1/runs/{run['id']}/metrics", json={"series": [], "owner": owner},
                       headers=headers["eve"]), 422)
    _error(client.post(f"/api/v1/runs/{run['id']}/truncate", json={"after_step": 2**70}, headers=headers["eve"]), 422)


def test_a_metric_key_no_store_can_hold_is_refused_on_write(api) -> None:
    client, headers, _store, _folder = api
    run = _run()
    client.post("/api/v1/runs", json=run, headers=headers["eve"])
    packed = {"key": "a\x00b", "steps": "AAAAAAAAAAA=", "times": "AAAAAAAAAAA=", "values": "AAAAAAAAAAA="}
    assert "NUL" in _error(client.post(f"/api/v1/runs/{run['id']}/metrics", json={"series": [packed]},
                                       headers=headers["eve"]), 400)


def test_moving_a_run_into_a_project_you_cannot_write_names_that_project(api) -> None:
    client, headers, _store, _folder = api
    run = _run()
    client.post("/api/v1/runs", json=run, headers=headers["eve"])
    problem = _error(client.patch(f"/api/v1/runs/{run['id']}", json={"fields": {"project": "A"}},
                                  headers=headers["eve"]), 403)
    assert "into project 'A'" in problem


def test_ids_only_lists_every_id_and_records_default_to_100(api) -> None:
    client, headers, _store, _folder = api
    for _ in range(103):
        assert client.post("/api/v1/runs", json=_run(), headers=headers["eve"]).status_code == 201
    assert len(client.get("/api/v1/runs?ids_only=true", headers=headers["eve"]).json()["ids"]) == 103
    assert len(client.get("/api/v1/runs", headers=headers["eve"]).json()["runs"]) == 100


def test_a_big_json_body_on_a_small_route_is_refused_before_it_is_parsed(api) -> None:
    client, headers, _store, _folder = api
    body = b'{"ids": [' + b",".join([b"1.5"] * 2_000_000) + b"]}"
    _error(client.post("/api/v1/runs/get", content=body, headers={**headers["eve"],
                                                                   "Content-Type": "application/json"}), 413)
    # a route whose name holds "artifacts" or ends like a metrics route gets no bigger allowance
    _error(client.post("/api/v1/runs/artifacts/tags", content=body, headers={**headers["eve"],
                                                                              "Content-Type": "application/json"}), 413)
    # without a token, even a metrics batch is refused at 64 KiB, before anything is parsed
    spam = b'{"series": [' + b",".join([b"{}"] * 100_000) + b"]}"
    _error(client.post("/api/v1/runs/x/metrics", content=spam, headers={"Content-Type": "application/json"}), 413)


@pytest.mark.parametrize("params", [{"big": 10**400}, {"nested": {"x": -(2**64)}}])
def test_integers_beyond_64_bits_are_refused(api, params: dict) -> None:
    client, headers, _store, _folder = api
    run = _run()
    client.post("/api/v1/runs", json=run, headers=headers["eve"])
    _error(client.put(f"/api/v1/runs/{run['id']}/params", content=_json({"params": params}),
                      headers={**headers["eve"], "Content-Type": "application/json"}), 400)
    _error(client.post("/api/v1/runs", content=_json(_run(config=params)),
                       headers={**headers["eve"], "Content-Type": "application/json"}), 400)


def test_guessing_bearer_tokens_is_limited_per_client(api, monkeypatch: pytest.MonkeyPatch) -> None:
    client, headers, _store, _folder = api
    monkeypatch.setattr(sessions, "LOGIN_FAILURES_ALLOWED", 3)
    for _ in range(3):
        guess = {"Authorization": f"Bearer stt_{uuid.uuid4().hex[:12]}_{'a' * 43}"}
        assert client.get("/api/v1/me", headers=guess).status_code == 401
    guess = {"Authorization": f"Bearer stt_{uuid.uuid4().hex[:12]}_{'a' * 43}"}
    limited = client.get("/api/v1/me", headers=guess)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    assert client.get("/api/v1/me", headers=headers["eve"]).status_code == 200  # a valid token is never locked out
    monkeypatch.setattr(sessions, "LOGIN_WINDOW_S", 0.0)
    assert client.get("/api/v1/me", headers=guess).status_code == 401
