"""The striate CLI against a team server (`--store http://...`, STRIATE_TOKEN) as against a local store.

One real `striate server` process serves the whole test session (fixture ``team_server``); every test
wipes its runs first. Training runs write into the local spool and reach the server through it.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import httpx
import pytest

import striate
from striate.tracking.store import open_store
from tests.conftest import TeamServer, run_cli


def _admin(team_server: TeamServer) -> httpx.Client:
    return httpx.Client(base_url=f"{team_server.url}/api/v1", headers={"Authorization": f"Bearer {team_server.token}"})


def _user_token(team_server: TeamServer, name: str, project: str | None, role: str | None) -> str:
    """A user (created when new) with ``role`` in ``project``, and a fresh token of theirs."""
    with _admin(team_server) as admin:
        created = admin.post("/users", json={"name": name})
        assert created.status_code in (201, 409), created.text
        if project and role:
            assert admin.put(f"/projects/{project}/members/{name}", json={"role": role}).status_code == 200
        issued = admin.post(f"/users/{name}/tokens", json={"name": "test", "days": 1})
        assert issued.status_code == 201, issued.text
        return str(issued.json()["token"])


def _train(url: str, data: Path, *extra: str, env: dict[str, str] | None = None) -> dict:
    done = run_cli("train", "--data", str(data), "--epochs", "1", "--store", url, "--no-progress", "--json", *extra,
                   env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return dict(json.loads(done.stdout))


def test_train_then_read_tag_note_compare_and_stop_through_the_server(server_url: str, synthetic_data: Path) -> None:
    first = _train(server_url, synthetic_data, "--name", "over-http-a")
    second = _train(server_url, synthetic_data, "--name", "over-http-b", "--lr", "0.02")
    store = open_store(server_url)
    record = store.get_run(first["id"])
    assert record.status == "finished" and "test/acc1" in record.metrics and record.environment
    assert store.history(record.id, "train/loss").steps.size == record.metrics["train/loss"]["count"]

    listed = run_cli("runs", "--store", server_url, "--json")
    assert listed.returncode == 0, listed.stderr
    assert {r["name"] for r in json.loads(listed.stdout)} == {"over-http-a", "over-http-b"}
    assert run_cli("runs", "--store", server_url, "--where", "params.lr = 0.02", "--json").stdout.count(
        second["id"]) == 1

    shown = run_cli("show", "over-http-a", "--store", server_url)
    assert shown.returncode == 0 and first["id"][:8] in shown.stdout
    assert run_cli("tag", "over-http-a", "best", "--store", server_url).returncode == 0
    assert run_cli("note", "over-http-a", "looks good", "--store", server_url).returncode == 0
    again = store.get_run(first["id"])
    assert again.tags == ["best"] and again.notes == "looks good"

    compared = run_cli("compare", "over-http-a", "over-http-b", "--store", server_url)
    assert compared.returncode == 0, compared.stderr
    history = run_cli("history", "over-http-a", "--metric", "train/loss", "--store", server_url, "--json")
    assert history.returncode == 0, history.stderr
    assert len(json.loads(history.stdout)["steps"]) == record.metrics["train/loss"]["count"]

    unknown = run_cli("runs", "--store", server_url, "--where", "params.lrr > 0")
    assert unknown.returncode != 0 and "params.lr" in unknown.stdout + unknown.stderr

    stopped = run_cli("stop", "over-http-a", "--store", server_url)
    assert stopped.returncode != 0 and "nothing to stop" in stopped.stdout + stopped.stderr

    diffed = run_cli("diff", "over-http-a", "over-http-b", "--store", server_url)
    assert diffed.returncode == 0 and "lr" in diffed.stdout, diffed.stderr
    api = striate.Api(server_url)
    assert [r.id for r in api.runs(where="params.lr = 0.02")] == [second["id"]]
    assert api.run("over-http-a").id == first["id"]

    deleted = run_cli("delete", "over-http-b", "--yes", "--store", server_url)
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert [r.id for r in store.list_runs()] == [first["id"]]


def test_no_token_or_a_bad_token_is_one_clear_error(server_url: str, synthetic_data: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STRIATE_TOKEN")
    done = run_cli("runs", "--store", server_url)
    assert done.returncode != 0 and "STRIATE_TOKEN" in done.stderr and "Traceback" not in done.stderr
    trained = run_cli("train", "--data", str(synthetic_data), "--epochs", "1", "--store", server_url)
    assert trained.returncode != 0 and "STRIATE_TOKEN" in trained.stderr
    spool = Path(os.environ["STRIATE_SPOOL"])
    assert not spool.exists() or not open_store(spool).list_runs(), "a refused token records nothing"
    monkeypatch.setenv("STRIATE_TOKEN", "stt_0000_not-a-token")
    bad = run_cli("runs", "--store", server_url)
    assert bad.returncode != 0 and "token" in bad.stderr.lower() and "Traceback" not in bad.stderr


def test_a_viewer_can_read_but_not_train_or_tag(team_server: TeamServer, server_url: str, synthetic_data: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    run = _train(server_url, synthetic_data, "--name", "team-run")
    viewer = _user_token(team_server, "vera", "default", "viewer")
    monkeypatch.setenv("STRIATE_TOKEN", viewer)
    listed = run_cli("runs", "--store", server_url, "--json")
    assert listed.returncode == 0 and [r["id"] for r in json.loads(listed.stdout)] == [run["id"]]
    refused = run_cli("train", "--data", str(synthetic_data), "--epochs", "1", "--store", server_url)
    assert refused.returncode != 0 and "cannot record runs in project 'default'" in refused.stderr
    assert "editor" in refused.stderr
    tagged = run_cli("tag", "team-run", "mine", "--store", server_url)
    assert tagged.returncode != 0 and "viewer" in tagged.stdout + tagged.stderr

    outsider = _user_token(team_server, "otto", None, None)
    monkeypatch.setenv("STRIATE_TOKEN", outsider)
    assert json.loads(run_cli("runs", "--store", server_url, "--json").stdout) == []
    hidden = run_cli("show", run["id"], "--store", server_url)
    assert hidden.returncode != 0 and "no run" in hidden.stdout + hidden.stderr


def test_training_while_the_server_is_away_spools_and_syncs_once_later(server_url: str, synthetic_data: Path,
                                                                       tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        away = f"http://127.0.0.1:{probe.getsockname()[1]}"
    done = run_cli("train", "--data", str(synthetic_data), "--epochs", "1", "--store", away, "--no-progress",
                   "--json")
    assert done.returncode == 0, done.stderr
    assert "cannot reach the striate server" in done.stderr and "striate sync" in done.stderr
    run_id = json.loads(done.stdout)["id"]
    for attempt in range(2):  # the second sync sends nothing again
        synced = run_cli("sync", "--to", server_url, "--json")
        assert synced.returncode == 0, synced.stderr
        (row,) = [r for r in json.loads(synced.stdout) if r["id"] == run_id]
        assert row["error"] is None and (row["chunks_sent"] > 0) == (attempt == 0)
    record = open_store(server_url).get_run(run_id)
    assert record.status == "finished"
    assert len(open_store(server_url).history(run_id, "train/loss")) == record.metrics["train/loss"]["count"]


def test_projects_lists_what_the_caller_may_see_with_role_and_run_count(team_server: TeamServer, server_url: str,
                                                                        synthetic_data: Path) -> None:
    _train(server_url, synthetic_data, "--project", "vision")
    _user_token(team_server, "pia", "vision", "viewer")
    with _admin(team_server) as admin:
        listed = admin.get("/projects").json()["projects"]
        assert {"name": "vision", "role": "owner", "runs": 1} in listed
        pia = _user_token(team_server, "pia", None, None)
        mine = httpx.get(f"{team_server.url}/api/v1/projects", headers={"Authorization": f"Bearer {pia}"}).json()
        assert mine == {"projects": [{"name": "vision", "role": "viewer", "runs": 1}]}


def test_keys_and_names_a_url_path_would_change_are_read_exactly(server_url: str) -> None:
    run = striate.init(store=open_store(server_url), name="exp/1", system_metrics=False, capture_console=False,
                       capture_environment=False)
    keys = {"loss": 1.0, "val/../loss": 2.0, "a/b": 4.0, "a/./b": 3.0, "x/%2F/y": 5.0}
    run.log(keys, step=0)
    run.finish()
    store = open_store(server_url)
    for key, value in keys.items():
        assert store.history(run.id, key).values.tolist() == [value], key
    shown = run_cli("show", "exp/1", "--store", server_url)
    assert shown.returncode == 0 and run.id[:8] in shown.stdout, shown.stderr
