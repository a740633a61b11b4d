"""Artifact uploads racing each other, a run deleted mid-upload, colliding paths, a file that changes while it
is sent, a poisoned local cache — against the session's real `striate server` process. Each case was found
by a hostile review."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

import httpx
import pytest

import striate.tracking.store.http as http_store
from striate.errors import StoreError
from striate.tracking.store import RunRecord
from striate.tracking.store.http import HttpStore

pytest.importorskip("fastapi")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def admin(server_url: str) -> HttpStore:
    return HttpStore(server_url)


@pytest.fixture
def client(server_url: str, team_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server_url + "/api/v1", headers={"Authorization": f"Bearer {team_server.token}"},
                      timeout=60) as c:
        yield c


def _new_run(store: HttpStore) -> str:
    now = time.time()
    run_id = uuid.uuid4().hex
    store.create_run(RunRecord(id=run_id, name="r", project="art", status="finished", created_at=now, ended_at=now,
                               heartbeat_at=now))
    return run_id


def _put(client: httpx.Client, run_id: str, path: str, data: bytes, **params: object) -> httpx.Response:
    return client.put(f"/runs/{run_id}/artifacts/{path}", content=data,
                      params={"sha256": _sha(data), "size": len(data), **params})


def test_concurrent_uploads_of_one_path_leave_a_record_that_matches_the_file(server_url, team_server,
                                                                             admin: HttpStore) -> None:
    run_id = _new_run(admin)
    for _ in range(6):
        bodies = [os.urandom(1 << 20) for _ in range(4)]
        answers: list[int] = []

        def send(data: bytes, answers: list[int] = answers) -> None:
            with httpx.Client(base_url=server_url + "/api/v1", timeout=60,
                              headers={"Authorization": f"Bearer {team_server.token}"}) as c:
                answers.append(_put(c, run_id, "race.bin", data).status_code)
        threads = [threading.Thread(target=send, args=(b,)) for b in bodies]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert set(answers) <= {201, 409} and 201 in answers, answers
        got = httpx.get(f"{server_url}/api/v1/runs/{run_id}/artifacts/race.bin",
                        headers={"Authorization": f"Bearer {team_server.token}"})
        assert _sha(got.content) == got.headers["x-striate-sha256"], "the record describes another upload's bytes"


def test_identical_uploads_at_once_never_fail_with_a_wrong_mismatch(server_url, team_server, admin: HttpStore) -> None:
    run_id = _new_run(admin)
    data = os.urandom(4 << 20)
    answers: list[int] = []

    def send() -> None:
        with httpx.Client(base_url=server_url + "/api/v1", timeout=60,
                          headers={"Authorization": f"Bearer {team_server.token}"}) as c:
            answers.append(_put(c, run_id, "same.bin", data).status_code)
    threads = [threading.Thread(target=send) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(answers) <= {201, 409} and 201 in answers, answers
    assert admin.get_run(run_id).artifacts[0]["sha256"] == _sha(data)


def test_a_run_deleted_during_an_upload_keeps_no_file(client: httpx.Client, admin: HttpStore, team_server) -> None:
    run_id = _new_run(admin)
    data = os.urandom(3 << 20)
    deleted = threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield data[: 1 << 20]
        admin.delete_run(run_id)  # while the body is still arriving
        deleted.set()
        yield data[1 << 20:]
    answer = client.put(f"/runs/{run_id}/artifacts/ckpt.pt", content=slow_body(),
                        params={"sha256": _sha(data), "size": len(data)})
    assert deleted.is_set() and answer.status_code == 404, answer.text
    assert not (team_server.folder / "artifacts" / run_id / "ckpt.pt").exists()


def test_paths_that_collide_with_the_runs_own_files_are_conflicts(client: httpx.Client, admin: HttpStore) -> None:
    run_id = _new_run(admin)
    assert _put(client, run_id, "a", b"file").status_code == 201
    clash = _put(client, run_id, "a/b", b"under a file")
    assert clash.status_code == 409 and clash.json()["fix"]
    assert _put(client, run_id, "c/d", b"in a folder").status_code == 201
    clash = _put(client, run_id, "c", b"over a folder")
    assert clash.status_code == 409 and clash.json()["fix"]
    assert client.delete(f"/runs/{run_id}/artifacts/c").status_code == 404  # a folder is no artifact
    assert client.delete(f"/runs/{run_id}/artifacts/never.bin").status_code == 404
    assert client.delete(f"/runs/{run_id}/artifacts/c/d").status_code == 204


def test_a_file_that_shrinks_while_it_is_uploaded_stops_the_upload(admin: HttpStore, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = _new_run(admin)
    source = tmp_path / "ckpt.pt"
    source.write_bytes(os.urandom(1 << 20))
    real = http_store.file_sha256

    def hash_then_shrink(path):  # a checkpoint rewritten right after it was hashed
        digest = real(path)
        Path(path).write_bytes(b"short")
        return digest
    monkeypatch.setattr(http_store, "file_sha256", hash_then_shrink)
    started = time.monotonic()
    with pytest.raises(StoreError, match="changed while it was uploaded"):
        admin.put_artifact_file(run_id, "ckpt.pt", source)
    assert time.monotonic() - started < 30


def test_a_link_planted_in_the_local_cache_is_neither_followed_nor_returned(admin: HttpStore, tmp_path: Path) -> None:
    run_id = _new_run(admin)
    source = tmp_path / "w.pt"
    source.write_bytes(b"the real weights")
    admin.put_artifact_file(run_id, "m/w.pt", source)
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    cached = Path(admin.artifact_root) / run_id / "m" / "w.pt"
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.unlink(missing_ok=True)
    cached.symlink_to(victim)
    with pytest.raises(StoreError, match="link"):  # refused, naming the link to remove
        admin.artifact_file(run_id, "m/w.pt")
    assert victim.read_text() == "untouched"
    results: list[bytes] = []
    cached.unlink()

    def fetch() -> None:
        results.append(admin.artifact_file(run_id, "m/w.pt").read_bytes())
    threads = [threading.Thread(target=fetch) for _ in range(4)]  # downloads into one cache at once
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [b"the real weights"] * 4


def test_unfinished_uploads_are_capped_per_run_and_go_with_the_run(client: httpx.Client, admin: HttpStore,
                                                                    team_server, monkeypatch) -> None:
    run_id = _new_run(admin)
    staging = team_server.folder / "artifacts" / ".uploads" / run_id
    for i in range(3):  # parts of three big files, never finished
        data = os.urandom(1000)
        answer = client.put(f"/runs/{run_id}/artifacts/part-{i}.bin", content=data[:10],
                            params={"sha256": _sha(data), "size": len(data)})
        assert answer.status_code == 202, answer.text
    assert len(list(staging.glob("*.part"))) == 3
    admin.delete_run(run_id)
    assert not staging.exists(), "a deleted run's unfinished uploads stay on the server's disk"

    from striate.server import artifact_storage

    assert artifact_storage.MAX_STAGED_PER_RUN == 64
    other = _new_run(admin)
    for i in range(64):
        data = b"%d" % i + b"x" * 100
        assert client.put(f"/runs/{other}/artifacts/p{i}", content=data[:5],
                          params={"sha256": _sha(data), "size": len(data)}).status_code == 202
    refused = client.put(f"/runs/{other}/artifacts/one-more", content=b"abc", params={"sha256": _sha(b"abcd"),
                                                                                     "size": 4})
    assert refused.status_code == 409 and "unfinished uploads" in refused.json()["error"]
    admin.delete_run(other)
