"""Artifact files on the team server: streamed, resumable, SHA-256-checked uploads; ranged downloads; path
confinement and roles — against real `striate server` processes (the session's, and one keeping its files in
a real local S3 server: moto's server mode)."""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import time
import urllib.parse
import uuid
from pathlib import Path

import httpx
import pytest

from striate.errors import ForbiddenError, StoreError
from striate.tracking.store import RunRecord, open_store
from striate.tracking.store.http import HttpStore
from tests.conftest import run_cli, s3_filesystem

pytest.importorskip("fastapi")


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _new_run(store: HttpStore, project: str = "art") -> str:
    now = time.time()
    run_id = uuid.uuid4().hex
    store.create_run(RunRecord(id=run_id, name="r", project=project, status="finished", created_at=now,
                               ended_at=now, heartbeat_at=now))
    return run_id


def _blob(tmp_path: Path, size: int, name: str = "blob.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def admin(server_url: str) -> HttpStore:
    return HttpStore(server_url)


def _user(url: str, admin_token: str, name: str, project: str, role: str | None) -> str:
    """A user with ``role`` in ``project`` (None: no membership) and a token for them."""
    with httpx.Client(base_url=url + "/api/v1", headers=_h(admin_token)) as client:
        if client.post("/users", json={"name": name}).status_code not in (201, 409):
            raise AssertionError(f"cannot create user {name}")
        if role is not None:
            assert client.put(f"/projects/{project}/members/{name}", json={"role": role}).status_code == 200
        answer = client.post(f"/users/{name}/tokens", json={"name": "t", "days": 1})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["token"])


def test_an_artifact_goes_up_and_comes_back_verified_and_cached(admin: HttpStore, tmp_path: Path) -> None:
    run_id = _new_run(admin)
    source = _blob(tmp_path, 3 * 1024 * 1024 + 17)
    entry = admin.put_artifact_file(run_id, "checkpoints/epoch-001.safetensors", source, "checkpoint")
    assert entry == {"path": "checkpoints/epoch-001.safetensors", "kind": "checkpoint",
                     "size": source.stat().st_size, "sha256": _sha(source.read_bytes())}
    assert admin.get_run(run_id).artifacts == [entry]

    local = admin.artifact_file(run_id, "checkpoints/epoch-001.safetensors")
    assert local.read_bytes() == source.read_bytes()
    assert local.is_relative_to(Path(admin.artifact_root) / run_id)
    first = local.stat().st_mtime_ns
    assert admin.artifact_file(run_id, "checkpoints/epoch-001.safetensors").stat().st_mtime_ns == first  # reused
    local.write_bytes(b"damaged in the cache")
    assert admin.artifact_file(run_id, "checkpoints/epoch-001.safetensors").read_bytes() == source.read_bytes()

    # the same bytes again: nothing is sent (the server says it holds them)
    again = admin.put_artifact_file(run_id, "checkpoints/epoch-001.safetensors", source, "checkpoint")
    assert again["sha256"] == entry["sha256"] and len(admin.get_run(run_id).artifacts) == 1

    admin.remove_artifact(run_id, "checkpoints/epoch-001.safetensors")
    assert admin.get_run(run_id).artifacts == []
    with pytest.raises(StoreError, match="has no artifact"):
        admin.artifact_file(run_id, "checkpoints/epoch-001.safetensors")


def test_a_sha256_mismatch_keeps_nothing(server_url: str, team_server, admin: HttpStore) -> None:
    run_id = _new_run(admin)
    data = b"x" * 5000
    staging = team_server.folder / "artifacts" / ".uploads"
    before = set(staging.rglob("*.part")) if staging.is_dir() else set()  # other tests' unfinished uploads
    with httpx.Client(base_url=server_url + "/api/v1", headers=_h(team_server.token)) as client:
        answer = client.put(f"/runs/{run_id}/artifacts/model.bin", content=data,
                            params={"sha256": _sha(b"something else"), "size": len(data)})
        assert answer.status_code == 400
        body = answer.json()
        assert "SHA-256" in body["error"] and "nothing was kept" in body["error"] and body["fix"]
        status = client.get(f"/runs/{run_id}/artifact-uploads/model.bin",
                            params={"sha256": _sha(b"something else"), "size": len(data)}).json()
        assert status == {"offset": 0, "stored": False}
        assert client.get(f"/runs/{run_id}/artifacts/model.bin").status_code == 404
        # a body longer than announced keeps nothing either
        answer = client.put(f"/runs/{run_id}/artifacts/model.bin", content=data + b"more",
                            params={"sha256": _sha(data), "size": len(data)})
        assert answer.status_code == 400 and "past the announced size" in answer.json()["error"]
    assert admin.get_run(run_id).artifacts == []
    leftovers = [p for p in staging.rglob("*.part") if p not in before]
    assert leftovers == [], leftovers
    assert not (team_server.folder / "artifacts" / run_id / "model.bin").exists()


def test_an_upload_resumes_from_what_the_server_holds(server_url: str, team_server, admin: HttpStore,
                                                      tmp_path: Path) -> None:
    run_id = _new_run(admin)
    data = os.urandom(200_000)
    params = {"sha256": _sha(data), "size": len(data)}
    with httpx.Client(base_url=server_url + "/api/v1", headers=_h(team_server.token)) as client:
        part = client.put(f"/runs/{run_id}/artifacts/big.bin", content=data[:70_000], params={**params, "offset": 0})
        assert part.status_code == 202 and part.json()["offset"] == 70_000
        assert admin.get_run(run_id).artifacts == []  # no record before every byte is there and checked
        assert client.get(f"/runs/{run_id}/artifact-uploads/big.bin", params=params).json()["offset"] == 70_000
        ahead = client.put(f"/runs/{run_id}/artifacts/big.bin", content=data[90_000:],
                           params={**params, "offset": 90_000})
        assert ahead.status_code == 409 and ahead.json()["offset"] == 70_000 and ahead.json()["fix"]
        done = client.put(f"/runs/{run_id}/artifacts/big.bin", content=data[70_000:],
                          params={**params, "offset": 70_000})
        assert done.status_code == 201, done.text
    assert admin.artifact_file(run_id, "big.bin").read_bytes() == data


def test_a_connection_broken_mid_upload_is_resumed_by_the_client(server_url: str, team_server, admin: HttpStore,
                                                                 tmp_path: Path) -> None:
    run_id = _new_run(admin)
    source = _blob(tmp_path, 1_000_000)
    data = source.read_bytes()
    query = urllib.parse.urlencode({"sha256": _sha(data), "size": len(data)})
    # A client that dies after 400,000 bytes: the request announced them all.
    with socket.create_connection(("127.0.0.1", team_server.port)) as raw:
        raw.sendall((f"PUT /api/v1/runs/{run_id}/artifacts/weights.bin?{query} HTTP/1.1\r\n"
                     f"Host: 127.0.0.1\r\nAuthorization: Bearer {team_server.token}\r\n"
                     f"Content-Length: {len(data)}\r\n\r\n").encode() + data[:400_000])
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    status = {}
    with httpx.Client(base_url=server_url + "/api/v1", headers=_h(team_server.token)) as client:
        while time.monotonic() < deadline:
            status = client.get(f"/runs/{run_id}/artifact-uploads/weights.bin",
                                params={"sha256": _sha(data), "size": len(data)}).json()
            if status["offset"] == 400_000:
                break
            time.sleep(0.1)
    assert status == {"offset": 400_000, "stored": False}
    entry = admin.put_artifact_file(run_id, "weights.bin", source, "model")  # sends the rest only
    assert entry["sha256"] == _sha(data)
    assert admin.artifact_file(run_id, "weights.bin").read_bytes() == data


def test_downloads_take_byte_ranges(server_url: str, team_server, admin: HttpStore, tmp_path: Path) -> None:
    run_id = _new_run(admin)
    source = _blob(tmp_path, 3000)
    data = source.read_bytes()
    admin.put_artifact_file(run_id, "a.bin", source)
    with httpx.Client(base_url=server_url + "/api/v1", headers=_h(team_server.token)) as client:
        whole = client.get(f"/runs/{run_id}/artifacts/a.bin")
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers["x-striate-sha256"] == _sha(data) and whole.headers["accept-ranges"] == "bytes"
        for header, expected, first, last in (("bytes=10-19", data[10:20], 10, 19), ("bytes=2990-", data[2990:], 2990,
                                              2999), ("bytes=-5", data[-5:], 2995, 2999),
                                              ("bytes=2000-99999", data[2000:], 2000, 2999)):
            part = client.get(f"/runs/{run_id}/artifacts/a.bin", headers={"Range": header})
            assert part.status_code == 206 and part.content == expected, header
            assert part.headers["content-range"] == f"bytes {first}-{last}/3000"
        for bad in ("bytes=3000-", "bytes=20-10"):
            answer = client.get(f"/runs/{run_id}/artifacts/a.bin", headers={"Range": bad})
            assert answer.status_code == 416 and answer.json()["fix"], bad
        # a range this server does not read is ignored, as RFC 9110 asks: the whole file
        for unread in ("lines=1-2", "bytes=-", "BYTES=0-1", "bytes=1-" + "9" * 5000):
            answer = client.get(f"/runs/{run_id}/artifacts/a.bin", headers={"Range": unread})
            assert answer.status_code == 200 and answer.content == data, unread
        # If-Range naming another version of the file: the whole (current) file, not a part of it
        stale = client.get(f"/runs/{run_id}/artifacts/a.bin", headers={"Range": "bytes=10-19", "If-Range": '"0"'})
        assert stale.status_code == 200 and stale.content == data
        assert client.get(f"/runs/{run_id}/artifacts/missing.bin").status_code == 404


ATTACKS = ["..%2Fescaped.bin", "%2e%2e/escaped.bin", "%2E%2E%2Fescaped.bin", "a/%2e%2e/%2e%2e/escaped.bin",
           "%252e%252e/escaped.bin", "..%5Cescaped.bin", "a%5C..%5C..%5Cescaped.bin", "x;jsessionid=1/escaped.bin",
           "%2Ftmp%2Fescaped.bin", "file:%2F%2F%2Ftmp%2Fescaped.bin", "C:escaped.bin", "a%00b/escaped.bin",
           "a//escaped.bin", "./escaped.bin", "a/./escaped.bin", "a%0A/escaped.bin", "a%01b/escaped.bin"]


def test_artifact_paths_that_could_leave_the_run_are_refused(server_url: str, team_server, admin: HttpStore) -> None:
    run_id = _new_run(admin)
    data = b"pwned"
    query = urllib.parse.urlencode({"sha256": _sha(data), "size": len(data)})
    connection = http.client.HTTPConnection("127.0.0.1", team_server.port, timeout=30)
    for attack in ATTACKS:  # sent exactly as written: no client normalizes them first
        for method in ("PUT", "GET"):
            connection.request(method, f"/api/v1/runs/{run_id}/artifacts/{attack}?{query}",
                               body=data if method == "PUT" else None, headers=_h(team_server.token))
            answer = connection.getresponse()
            answer.read()
            assert 400 <= answer.status < 500, (method, attack, answer.status)
    for literal in ("../escaped.bin", "a/../../escaped.bin"):  # dot segments as such, too
        connection.request("PUT", f"/api/v1/runs/{run_id}/artifacts/{literal}?{query}", body=data,
                           headers=_h(team_server.token))
        answer = connection.getresponse()
        answer.read()
        assert 400 <= answer.status < 500, (literal, answer.status)
    connection.close()
    assert admin.get_run(run_id).artifacts == []
    written = [p for p in team_server.folder.parent.rglob("*") if p.is_file() and p.read_bytes() == data]
    assert written == []
    assert not Path("/tmp/escaped.bin").exists()
    # the client refuses them before sending
    with pytest.raises(StoreError, match="refusing artifact path"):
        admin.put_artifact_file(run_id, "../escaped.bin", Path(__file__))


def test_size_cap_and_no_record_without_its_file(server_url: str, team_server, admin: HttpStore) -> None:
    run_id = _new_run(admin)
    with httpx.Client(base_url=server_url + "/api/v1", headers=_h(team_server.token)) as client:
        huge = client.put(f"/runs/{run_id}/artifacts/huge.bin", content=b"",
                          params={"sha256": "0" * 64, "size": 17 * 1024 ** 3})
        assert huge.status_code == 413 and "--max-artifact-mb" in huge.json()["fix"]
        forged = client.post(f"/runs/{run_id}/artifact-records",
                             json={"path": "model.bin", "kind": "model", "size": 5, "sha256": "0" * 64})
        assert forged.status_code in (404, 405)
    with pytest.raises(StoreError, match="only with its file"):
        admin.add_artifact(run_id, "model.bin", "model", 5, "0" * 64)
    assert admin.get_run(run_id).artifacts == []


def test_roles_decide_who_uploads_and_who_downloads(server_url: str, team_server, admin: HttpStore,
                                                   tmp_path: Path) -> None:
    run_id = _new_run(admin, project="roles")
    source = _blob(tmp_path, 1000)
    admin.put_artifact_file(run_id, "shared.bin", source)
    suffix = uuid.uuid4().hex[:6]
    tokens = {role: _user(server_url, team_server.token, f"{role}-{suffix}", "roles", role)
              for role in ("viewer", "editor")}
    tokens["outsider"] = _user(server_url, team_server.token, f"outsider-{suffix}", "roles", None)

    viewer = HttpStore(server_url, token=tokens["viewer"])
    assert viewer.artifact_file(run_id, "shared.bin").read_bytes() == source.read_bytes()
    with pytest.raises(ForbiddenError, match="needs editor"):
        viewer.put_artifact_file(run_id, "viewer.bin", source)
    with pytest.raises(ForbiddenError):
        viewer.remove_artifact(run_id, "shared.bin")

    editor = HttpStore(server_url, token=tokens["editor"])
    assert editor.put_artifact_file(run_id, "editor.bin", source)["size"] == 1000

    with httpx.Client(base_url=server_url + "/api/v1") as client:
        for token in (tokens["outsider"], None):
            headers = _h(token) if token else {}
            got = client.get(f"/runs/{run_id}/artifacts/shared.bin", headers=headers)
            put = client.put(f"/runs/{run_id}/artifacts/x.bin", content=b"x", headers=headers,
                             params={"sha256": _sha(b"x"), "size": 1})
            expected = 404 if token else 401  # a non-member cannot tell the run exists
            assert got.status_code == put.status_code == expected
            assert "roles" not in got.text
    assert sorted(a["path"] for a in admin.get_run(run_id).artifacts) == ["editor.bin", "shared.bin"]


def test_deleting_a_run_removes_its_files(admin: HttpStore, team_server, tmp_path: Path) -> None:
    run_id = _new_run(admin)
    admin.put_artifact_file(run_id, "a/b.bin", _blob(tmp_path, 10))
    assert (team_server.folder / "artifacts" / run_id / "a" / "b.bin").is_file()
    admin.delete_run(run_id)
    assert not (team_server.folder / "artifacts" / run_id).exists()


# -- artifacts in S3 (a real local S3 server) ----------------------------------------------------------------
@pytest.fixture
def s3_admin(s3_team_server, monkeypatch: pytest.MonkeyPatch) -> HttpStore:
    s3_team_server.wipe()
    monkeypatch.setenv("STRIATE_TOKEN", s3_team_server.token)
    return HttpStore(s3_team_server.url)


def test_artifacts_in_s3_go_up_come_back_and_go(s3_admin: HttpStore, s3_endpoint: str, s3_team_server,
                                                tmp_path: Path) -> None:
    run_id = _new_run(s3_admin)
    source = _blob(tmp_path, 2 * 1024 * 1024 + 5)
    data = source.read_bytes()
    entry = s3_admin.put_artifact_file(run_id, "checkpoints/last.safetensors", source, "checkpoint")
    assert entry["sha256"] == _sha(data)
    bucket = s3_filesystem(s3_endpoint)
    key = f"striate-test/team/{run_id}/checkpoints/last.safetensors"
    assert bucket.cat_file(key) == data  # the object itself, read back from S3
    assert not (s3_team_server.folder / "artifacts" / run_id).exists()  # nothing kept on the server's disk
    assert s3_admin.artifact_file(run_id, "checkpoints/last.safetensors").read_bytes() == data
    with httpx.Client(base_url=s3_team_server.url + "/api/v1", headers=_h(s3_team_server.token)) as client:
        part = client.get(f"/runs/{run_id}/artifacts/checkpoints/last.safetensors",
                          headers={"Range": "bytes=1048570-1048580"})
        assert part.status_code == 206 and part.content == data[1048570:1048581]
        bad = client.put(f"/runs/{run_id}/artifacts/bad.bin", content=b"abc",
                         params={"sha256": _sha(b"abd"), "size": 3})
        assert bad.status_code == 400
    assert not bucket.exists(f"striate-test/team/{run_id}/bad.bin")
    s3_admin.remove_artifact(run_id, "checkpoints/last.safetensors")
    assert not bucket.exists(key)
    s3_admin.put_artifact_file(run_id, "x.bin", source)
    s3_admin.delete_run(run_id)
    assert not bucket.exists(f"striate-test/team/{run_id}/x.bin")


def test_a_run_syncs_its_files_to_s3_through_the_spool(s3_admin: HttpStore, s3_endpoint: str, s3_team_server,
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import striate

    monkeypatch.setenv("STRIATE_SPOOL", str(tmp_path / "spool"))
    weights = _blob(tmp_path, 4096, "w.bin")
    run = striate.init(project="p", store=s3_team_server.url, system_metrics=False, capture_console=False)
    run.log({"loss": 1.0}, step=0)
    run.log_artifact(weights, kind="model")
    run.finish()
    assert run.sync_error is None
    record = open_store(s3_team_server.url).get_run(run.id)
    (entry,) = [a for a in record.artifacts if a["kind"] == "model"]
    assert s3_filesystem(s3_endpoint).cat_file(f"striate-test/team/{run.id}/{entry['path']}") == weights.read_bytes()
    # and back out through the CLI, fetched from S3 by the server into this machine's cache
    done = run_cli("artifacts", run.id, "w.bin", "-d", str(tmp_path / "out"), "--store", s3_team_server.url)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "w.bin").read_bytes() == weights.read_bytes()
