"""Resume and reproduce show their training like `train`; `diff` tells the truth about code; a foreign
record never makes reproduce write into (or run git in) a path taken from the record."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from striate.tracking.store import open_store
from tests.conftest import run_cli, train_killed_after_epoch_1, write_dataset
from tests.reproduce.test_reproduce import NET, committed_repo, git, train


def test_resume_after_sigkill_prints_epoch_lines_and_keeps_a_console_log(tmp_path):
    data = write_dataset(tmp_path / "data", n_train=640)
    store = tmp_path / "store"
    train_killed_after_epoch_1("--data", str(data), "--store", str(store), "--epochs", "3", "--batch-size", "32",
                               "--no-progress", "--set", "model=lenet5")
    [record] = open_store(store).list_runs()
    assert record.status == "crashed"
    done = run_cli("resume", record.id[:8], "--no-progress", "--store", str(store), subprocess=True)
    assert done.returncode == 0, done.stderr
    assert "epoch   2/3" in done.stdout and "epoch   3/3" in done.stdout, done.stdout
    resumed = open_store(store).get_run(record.id)
    assert resumed.status == "finished"
    assert "console.log" in {a["path"] for a in resumed.artifacts}, "a resumed run ends with its console output"
    text = (Path(open_store(store).artifact_root) / record.id / "console.log").read_text()
    assert "epoch   3/3" in text


def test_reproduce_shows_the_training_by_default_and_json_stays_json(synthetic_data, tmp_path):
    store = tmp_path / "store"
    original = train(store, synthetic_data, cwd=tmp_path)
    shown = run_cli("reproduce", original[:8], "--store", str(store), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "epoch   1/2" in shown.stdout and "epoch   2/2" in shown.stdout, shown.stdout
    assert "reproduced" in shown.stdout.splitlines()[-1]
    quiet = run_cli("reproduce", original[:8], "--store", str(store), "--json", cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert json.loads(quiet.stdout)["original"] == original  # nothing but the JSON on stdout


def test_diff_of_a_clean_run_and_its_reproduction_shows_no_code_difference(synthetic_data, tmp_path):
    repo = committed_repo(tmp_path / "repo")
    (repo / ".gitignore").write_text("striate-runs/\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-q", "-m", "ignore")
    store = tmp_path / "store"
    original = train(store, synthetic_data, cwd=repo)
    record = open_store(store).get_run(original)
    assert record.environment["git"]["dirty"] is False
    done = run_cli("reproduce", original[:8], "--store", str(store), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    repro = json.loads(done.stdout)["reproduction"]
    diff = run_cli("diff", original[:8], repro[:8], "--store", str(store), "--json")
    assert diff.returncode == 0, diff.stderr
    assert json.loads(diff.stdout)["code"] == {}, "same commit, same branch, clean in both"
    again = open_store(store).get_run(repro).environment["git"]
    assert again["branch"] == record.environment["git"]["branch"] and not again["dirty"]
    assert not (Path(again["root"])).exists(), "the reproduction's clone is gone"
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=repo, capture_output=True, text=True).stdout
    assert len(worktrees.splitlines()) == 1, "nothing was registered in the user's repository"


def test_diff_names_an_untracked_file_one_run_had(synthetic_data, tmp_path):
    repo = committed_repo(tmp_path / "repo")
    store = tmp_path / "store"
    one = ("--epochs", "1")  # the code is what is compared here, not the training
    clean = train(store, synthetic_data, *one, cwd=repo)
    (repo / "scratch.py").write_text("print('trying something')\n")
    with_scratch = train(store, synthetic_data, *one, cwd=repo)
    (repo / "scratch.py").write_text("print('trying something else')\n")
    changed = train(store, synthetic_data, *one, cwd=repo)
    done = run_cli("diff", clean[:8], with_scratch[:8], "--store", str(store), "--json")
    assert json.loads(done.stdout)["code"]["untracked_files"] == [[], ["scratch.py"]]
    human = run_cli("diff", clean[:8], with_scratch[:8], "--store", str(store))
    assert "untracked files only in" in human.stdout and "scratch.py" in human.stdout
    assert "no differences" not in human.stdout
    contents = run_cli("diff", with_scratch[:8], changed[:8], "--store", str(store))
    assert "different contents: scratch.py" in contents.stdout and "no differences" not in contents.stdout
    (repo / "scratch.py").write_text("x = 3\n")
    (repo / "scratch2.py").write_text("y = 1\n")
    both = train(store, synthetic_data, *one, cwd=repo)  # one file changed AND one file added
    done = run_cli("diff", changed[:8], both[:8], "--store", str(store), "--json")
    code = json.loads(done.stdout)["code"]
    assert code["untracked_files"] == [[], ["scratch2.py"]] and code["untracked_changed"] == ["scratch.py"]
    human = run_cli("diff", changed[:8], both[:8], "--store", str(store))
    assert "scratch2.py" in human.stdout and "different contents: scratch.py" in human.stdout


def test_a_foreign_record_never_makes_reproduce_use_its_recorded_repository(synthetic_data, tmp_path):
    import socket

    victim = committed_repo(tmp_path / "victim")  # a repository the record points at
    (victim / "net.yaml").write_text(NET % 4)
    git(victim, "add", "net.yaml")
    git(victim, "commit", "-q", "-m", "net")
    store = tmp_path / "store"
    original = train(store, synthetic_data, "--set", "model=net.yaml", cwd=victim)
    opened = open_store(store)
    opened.update_run(original, host=socket.gethostname() + "-elsewhere")  # now a foreign record
    hooks = victim / ".git" / "hooks" / "post-checkout"
    hooks.write_text("#!/bin/sh\ntouch \"$GIT_DIR/../HOOK-RAN\"\n")
    hooks.chmod(0o755)
    before = sorted(p.name for p in (victim / ".git").iterdir())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Run from a folder that is no repository: the commit cannot be found, so nothing is cloned from the record.
    done = run_cli("reproduce", original[:8], "--trust", "--store", str(store), "--json", cwd=elsewhere)
    assert done.returncode != 0 and "net.yaml" in done.stderr  # the model file is not here: no code was taken
    assert sorted(p.name for p in (victim / ".git").iterdir()) == before and not (victim / "HOOK-RAN").exists()
    # Named explicitly, the user's own clone of the code is used; the record's path still is not written to.
    mine = tmp_path / "mine"
    subprocess.run(["git", "clone", "-q", str(victim), str(mine)], check=True)
    done = run_cli("reproduce", original[:8], "--trust", "--repo", str(mine), "--verify", "--store", str(store),
                   "--json", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["verdict"]["verdict"] == "identical"
    assert sorted(p.name for p in (victim / ".git").iterdir()) == before and not (victim / "HOOK-RAN").exists()
    assert "worktrees" not in before
