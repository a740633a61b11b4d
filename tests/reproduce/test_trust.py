"""Reproducing runs code: never the recorded files as Python, never outside the reproduction's folder,
and code from elsewhere only when the user says so."""

from __future__ import annotations

import io
import json
import socket
import tarfile
from pathlib import Path

from striate.tracking.store import open_store
from tests.conftest import run_cli
from tests.reproduce.test_reproduce import NET, committed_repo, train

EVIL = "import pathlib; pathlib.Path({marker!r}).write_text('ran {name}')\n"


def _tar_gz(path: Path, files: dict[str, str]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_a_snapshot_never_shadows_striate_or_the_standard_library(synthetic_data, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "net.yaml").write_text(NET % 3)
    store = tmp_path / "store"
    original = train(store, synthetic_data, "--set", "model=net.yaml", cwd=work)
    record = open_store(store).get_run(original)
    snapshot = next(a for a in record.artifacts if a["kind"] == "code-snapshot")
    marker = tmp_path / "pwned"
    # The stored snapshot, replaced by one that holds modules named like striate's and the stdlib's.
    _tar_gz(Path(open_store(store).artifact_root) / original / snapshot["path"], {
        "net.yaml": NET % 3,
        "striate/__init__.py": EVIL.format(marker=str(marker), name="striate"),
        "striate/__main__.py": EVIL.format(marker=str(marker), name="striate main"),
        "json.py": EVIL.format(marker=str(marker), name="json"),
        "yaml.py": EVIL.format(marker=str(marker), name="yaml"),
        "src/striate/__init__.py": EVIL.format(marker=str(marker), name="src/striate"),
    })
    (work / "net.yaml").unlink()
    done = run_cli("reproduce", original[:8], "--verify", "--trust", "--store", str(store), "--json", cwd=tmp_path)
    assert not marker.exists(), marker.read_text()
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["verdict"]["verdict"] == "identical"


def test_a_run_from_another_host_needs_trust(synthetic_data, tmp_path):
    store = tmp_path / "store"
    original = train(store, synthetic_data, cwd=tmp_path)
    open_store(store).update_run(original, host=socket.gethostname() + "-elsewhere")
    refused = run_cli("reproduce", original[:8], "--store", str(store), cwd=tmp_path)
    assert refused.returncode == 2
    assert "recorded on another host" in refused.stderr and "--trust" in refused.stderr
    assert len(open_store(store).list_runs()) == 1
    trusted = run_cli("reproduce", original[:8], "--trust", "--store", str(store), cwd=tmp_path)
    assert trusted.returncode == 0, trusted.stderr


def test_a_recorded_working_directory_outside_the_repository_is_refused(synthetic_data, tmp_path):
    repo = committed_repo(tmp_path / "repo")
    store = tmp_path / "store"
    original = train(store, synthetic_data, cwd=repo)
    victim = tmp_path / "victim"
    victim.mkdir()
    precious = victim / ".striate-reproduction.yaml"
    precious.write_text("precious")
    opened = open_store(store)
    env = opened.get_run(original).environment
    opened.update_run(original, environment={**env, "cwd": str(victim)})  # a crafted record
    done = run_cli("reproduce", original[:8], "--store", str(store), cwd=tmp_path)
    assert done.returncode == 2 and "outside its repository" in done.stderr
    assert precious.read_text() == "precious" and sorted(p.name for p in victim.iterdir()) == [precious.name]
    assert len(open_store(store).list_runs()) == 1


def test_reproducing_writes_nothing_into_the_users_folder(tmp_path):
    # A run recorded without code: it reruns in the current folder, which must stay as it was.
    from tests.conftest import write_dataset

    data = write_dataset(tmp_path / "data")
    store = tmp_path / "store"
    original = train(store, data, "--set", "model=lenet5", cwd=tmp_path)
    opened = open_store(store)
    record = opened.get_run(original)
    for artifact in record.artifacts:
        if artifact["kind"].startswith("code-"):
            opened.remove_artifact(original, artifact["path"])
    opened.update_run(original, environment={**record.environment, "git": {}})
    user = tmp_path / "user"
    user.mkdir()
    done = run_cli("reproduce", original[:8], "--store", str(store), cwd=user)
    assert done.returncode == 0, done.stderr
    assert list(user.iterdir()) == []
