"""Reproduction and exact resume through the CLI (`reproduce` itself runs the code again in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from striate.reproduce.reproduce import compare_runs
from striate.tracking.store import open_store
from tests.conftest import run_cli, train_killed_after_epoch_1, write_dataset

TRAIN = ["--epochs", "2", "--batch-size", "32", "--crop-padding", "2", "--flip", "--seed", "5", "--no-progress"]


def train(store: Path, data: Path, *extra: str, cwd: Path | None = None, env_threads: str | None = None) -> str:
    env = {"OMP_NUM_THREADS": env_threads} if env_threads else None
    # torch reads OMP_NUM_THREADS once, when a process starts: a thread count set there needs a process.
    done = run_cli("train", "--data", str(data), "--store", str(store), *TRAIN, *extra, "--json", cwd=cwd, env=env,
                   subprocess=env is not None)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["id"]


def test_reproduction_is_bit_identical_and_linked(synthetic_data, tmp_path):
    store = tmp_path / "store"
    original = train(store, synthetic_data, cwd=tmp_path)
    done = run_cli("reproduce", original[:8], "--verify", "--store", str(store), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["verdict"]["verdict"] == "identical" and out["verdict"]["weights_identical"]
    repro = open_store(store).get_run(out["reproduction"])
    assert repro.reproduction_of == original and repro.status == "finished"
    assert repro.summary["weights_hash"] == open_store(store).get_run(original).summary["weights_hash"]


def test_a_changed_run_is_reported_with_the_first_differing_step(synthetic_data, tmp_path):
    store = tmp_path / "store"
    a = train(store, synthetic_data)
    b = train(store, synthetic_data, "--seed", "6")
    opened = open_store(store)
    verdict = compare_runs(opened, opened.get_run(a), opened.get_run(b), tolerance=1e-9)
    assert verdict.verdict == "differs" and not verdict.weights_identical
    assert verdict.first_difference is not None and verdict.first_difference["step"] >= 1


def test_resume_after_sigkill_matches_the_uninterrupted_run(tmp_path):
    data = write_dataset(tmp_path / "data", n_train=1200, n_test=80)
    store = tmp_path / "store"
    args = ["--epochs", "3", "--batch-size", "16", "--checkpoint-every", "7", "--crop-padding", "2", "--flip",
            "--seed", "9", "--no-progress"]
    reference = train(store, data, *args[:-1])
    train_killed_after_epoch_1("--data", str(data), "--store", str(store), *args)  # between step checkpoints
    opened = open_store(store)
    killed = next(r for r in opened.list_runs() if r.id != reference)
    assert killed.status == "crashed"
    done = run_cli("resume", killed.id[:8], "--store", str(store), "--no-progress", "--json")
    assert done.returncode == 0, done.stderr
    resumed = open_store(store).get_run(killed.id)
    ref = open_store(store).get_run(reference)
    assert resumed.status == "finished"
    assert resumed.summary["weights_hash"] == ref.summary["weights_hash"]
    verdict = compare_runs(open_store(store), ref, resumed, tolerance=0.0)
    assert verdict.verdict == "identical", verdict.first_difference


def test_resume_refuses_finished_runs(synthetic_data, tmp_path):
    store = tmp_path / "store"
    run_id = train(store, synthetic_data)
    done = run_cli("resume", run_id[:8], "--store", str(store))
    assert done.returncode == 2 and "already finished" in done.stderr


def git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, env=env)


def committed_repo(repo: Path) -> Path:
    """A git repository at ``repo`` with one commit (a README)."""
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "README").write_text("x")
    git(repo, "add", "README")
    git(repo, "commit", "-q", "-m", "init")
    return repo


NET = """input_size: 32
layers:
  - conv: {out: %d, kernel: 5}
  - relu
  - maxpool: 2
  - linear: classes
"""


def test_reproduction_applies_the_recorded_uncommitted_diff(synthetic_data, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "net.yaml").write_text(NET % 4)
    git(repo, "add", "net.yaml")
    git(repo, "commit", "-q", "-m", "net")
    (repo / "net.yaml").write_text(NET % 6)  # the run uses this uncommitted version
    store = tmp_path / "store"
    original = train(store, synthetic_data, "--set", "model=net.yaml", cwd=repo)
    record = open_store(store).get_run(original)
    assert record.environment["git"]["dirty"] and "out: 6" in record.environment["git"]["diff"]
    git(repo, "checkout", "--", "net.yaml")  # the working tree no longer has the change
    done = run_cli("reproduce", original[:8], "--verify", "--store", str(store), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert "uncommitted diff" in out["code"] and out["verdict"]["verdict"] == "identical"
    repro = open_store(store).get_run(out["reproduction"])
    assert repro.summary["parameters"] == record.summary["parameters"]


def test_reproduction_refuses_different_data(tmp_path):
    data = write_dataset(tmp_path / "data")
    store = tmp_path / "store"
    original = train(store, data, cwd=tmp_path)
    write_dataset(tmp_path / "data", seed=42)  # same path, other images
    done = run_cli("reproduce", original[:8], "--store", str(store), cwd=tmp_path)
    assert done.returncode == 2 and "not the run's data" in done.stderr
    assert len(open_store(store).list_runs()) == 1, "nothing was run"


def test_drift_is_reported_and_strict_refuses(synthetic_data, tmp_path):
    store = tmp_path / "store"
    original = train(store, synthetic_data, cwd=tmp_path)
    opened = open_store(store)
    env = opened.get_run(original).environment
    env["packages"] = {**env["packages"], "torch": "0.0.1"}
    opened.update_run(original, environment=env)
    strict = run_cli("reproduce", original[:8], "--strict", "--store", str(store), cwd=tmp_path)
    assert strict.returncode == 5 and "torch 0.0.1 ->" in strict.stderr
    assert len(open_store(store).list_runs()) == 1
    warned = run_cli("reproduce", original[:8], "--store", str(store), cwd=tmp_path)
    assert warned.returncode == 0 and "packages differ" in warned.stderr and "torch 0.0.1" in warned.stderr


@pytest.mark.parametrize("bad", ["nope"])
def test_reproduce_unknown_run(tmp_path, bad):
    done = run_cli("reproduce", bad, "--store", str(tmp_path))
    assert done.returncode == 2 and "no run" in done.stderr


def test_untracked_source_files_are_snapshotted_and_restored(synthetic_data, tmp_path):
    repo = committed_repo(tmp_path / "repo")
    (repo / "fresh_net.yaml").write_text(NET % 5)  # never committed
    store = tmp_path / "store"
    original = train(store, synthetic_data, "--set", "model=fresh_net.yaml", cwd=repo)
    record = open_store(store).get_run(original)
    assert any(a["kind"] == "code-untracked" for a in record.artifacts)
    (repo / "fresh_net.yaml").unlink()
    done = run_cli("reproduce", original[:8], "--verify", "--store", str(store), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert "untracked files" in out["code"] and out["verdict"]["verdict"] == "identical"


def test_outside_git_the_folder_is_snapshotted(synthetic_data, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "net.yaml").write_text(NET % 3)
    store = tmp_path / "store"
    original = train(store, synthetic_data, "--set", "model=net.yaml", cwd=work)
    (work / "net.yaml").write_text(NET % 8)  # the code changes afterwards
    done = run_cli("reproduce", original[:8], "--verify", "--store", str(store), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["code"].startswith("source snapshot")


def test_an_imported_run_reproduces_the_same_way(synthetic_data, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "net.yaml").write_text(NET % 3)
    original = train(tmp_path / "a", synthetic_data, "--set", "model=net.yaml", cwd=work)
    archive = tmp_path / "run.tar.gz"
    assert run_cli("export-run", original[:8], str(archive), "--store", str(tmp_path / "a")).returncode == 0
    imported = run_cli("import-run", str(archive), "--store", str(tmp_path / "b"))
    assert imported.returncode == 0, imported.stderr
    (work / "net.yaml").unlink()  # only the archive's code snapshot is left
    refused = run_cli("reproduce", original[:8], "--store", str(tmp_path / "b"), cwd=tmp_path)
    assert refused.returncode == 2 and "imported from run.tar.gz" in refused.stderr and "--trust" in refused.stderr
    assert "model net.yaml" in refused.stderr and "source snapshot" in refused.stderr  # what would run
    assert len(open_store(tmp_path / "b").list_runs()) == 1, "nothing ran"
    done = run_cli("reproduce", original[:8], "--verify", "--trust", "--store", str(tmp_path / "b"), "--json",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["verdict"]["verdict"] == "identical" and out["origin"] == "imported from run.tar.gz"
    # A reproduction of a foreign run is foreign too: its code is the foreign snapshot.
    again = run_cli("reproduce", out["reproduction"][:8], "--store", str(tmp_path / "b"), cwd=tmp_path)
    assert again.returncode == 2 and "--trust" in again.stderr


def test_a_nan_on_one_side_is_a_difference(tmp_path):
    import numpy as np

    import striate
    from striate.tracking.store import MetricSeries

    store = open_store(tmp_path)
    runs = []
    for values in ([1.0, 0.5, 0.25, 0.2], [1.0, float("nan"), 9.0, 0.2]):
        run = striate.init(store=store, system_metrics=False, capture_environment=False)
        run.summary["weights_hash"] = "same"
        run.finish()
        store.log_batch(run.id, [MetricSeries("loss", np.arange(4), np.zeros(4), np.array(values))])
        runs.append(store.get_run(run.id))
    verdict = compare_runs(store, runs[0], runs[1], tolerance=1e-6)
    assert verdict.verdict == "differs" and verdict.first_difference["step"] == 1


def test_resume_from_a_damaged_checkpoint_changes_nothing(tmp_path):
    data = write_dataset(tmp_path / "data", n_train=1200, n_test=80)
    store = tmp_path / "store"
    train_killed_after_epoch_1("--data", str(data), "--store", str(store), "--epochs", "3", "--batch-size", "16",
                               "--no-progress")
    (before,) = open_store(store).list_runs()
    assert before.status == "crashed"
    weights = store / "artifacts" / before.id / before.summary["last_checkpoint"]["weights"]
    weights.write_bytes(weights.read_bytes()[:100])
    done = run_cli("resume", before.id[:8], "--store", str(store), "--no-progress")
    assert done.returncode == 2 and "damaged" in done.stderr and "Traceback" not in done.stderr
    after = open_store(store).get_run(before.id)
    assert after.status == "crashed", "a resume that cannot start leaves the run as it was"
    assert after.metrics == before.metrics


def test_reproduction_pins_the_original_thread_count(tmp_path):
    data = write_dataset(tmp_path / "data", n_train=640, n_test=80)
    store = tmp_path / "store"
    original = train(store, data, "--threads", "0", env_threads="2")
    assert open_store(store).get_run(original).summary["torch_threads"] == 2
    done = run_cli("reproduce", original[:8], "--verify", "--store", str(store), "--json",
                   env={"OMP_NUM_THREADS": "1"})  # a machine whose default is another thread count
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["verdict"]["verdict"] == "identical", out["verdict"]
    assert open_store(store).get_run(out["reproduction"]).config["threads"] == 2


def test_a_weights_only_difference_is_named_as_such(synthetic_data, tmp_path):
    store = tmp_path / "store"
    original = train(store, synthetic_data, cwd=tmp_path)
    opened = open_store(store)
    summary = opened.get_run(original).summary
    opened.update_run(original, summary={**summary, "weights_hash": "0" * 64})  # as if the weights differed
    done = run_cli("reproduce", original[:8], "--verify", "--tolerance", "0", "--store", str(store), cwd=tmp_path)
    assert done.returncode == 4, done.stderr
    assert "the final weights differ" in done.stdout and "None" not in done.stdout
