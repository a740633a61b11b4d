"""The CLI tells the truth: JSON on failure, real elapsed time on Ctrl-C, no deleting a live run, help
that shows every setting with its default, `data ls`/`data show`, folder datasets named by themselves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from striate.tracking.store import open_store
from tests.conftest import CLI_ENV, run_cli, write_dataset


def test_train_json_prints_the_error_as_json_and_keeps_the_exit_code(synthetic_data, tmp_path):
    store = str(tmp_path / "store")
    missing = run_cli("train", "--data", str(tmp_path / "nowhere"), "--store", store, "--json")
    assert missing.returncode == 2 and "error:" in missing.stderr
    out = json.loads(missing.stdout)
    assert out["id"] is None and out["status"] is None and "nowhere" in out["error"] and out["fix"]
    diverged = run_cli("train", "--data", str(synthetic_data), "--epochs", "1", "--lr", "1e12", "--store", store,
                       "--no-progress", "--json")
    assert diverged.returncode == 4
    out = json.loads(diverged.stdout)
    [run] = open_store(store).list_runs()
    assert out["id"] == run.id and out["status"] == "failed" and "training diverged" in out["error"]
    assert out["exit_code"] == 4


def test_ctrl_c_in_the_first_epoch_reports_the_time_it_trained(tmp_path):
    data = write_dataset(tmp_path / "data", n_train=40000, n_test=100)  # an epoch of 5000 steps
    store = tmp_path / "store"
    child = subprocess.Popen([sys.executable, "-m", "striate", "train", "lenet5", "--data", str(data), "--store",
                              str(store), "--epochs", "1", "--batch-size", "8", "--log-every", "5", "--threads", "1",
                              "--no-progress", "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **CLI_ENV})
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until it is training: its first points are in the store
        runs = open_store(store).list_runs() if (store / "striate.db").exists() else []
        if runs and "train/loss" in runs[0].metrics:
            break
        time.sleep(0.1)
    time.sleep(1.5)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    summary = json.loads(out)["summary"]
    assert summary.get("epochs_completed", 0) == 0, "stopped inside the first epoch"
    assert summary["train_seconds"] >= 1.5, summary
    assert summary["train_samples_per_s"] > 0


LIVE_CHILD = """
import sys, time, striate
run = striate.init(store=sys.argv[1], system_metrics=False, capture_console=False)
print(run.id, flush=True)
time.sleep(120)
"""


def test_deleting_a_live_run_is_refused(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", LIVE_CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        run_id = child.stdout.readline().strip()
        done = run_cli("delete", run_id[:8], "--yes", "--store", str(tmp_path))
        assert done.returncode == 2 and "still running" in done.stderr and str(child.pid) in done.stderr
        assert "nothing was deleted" in done.stderr and "kill -INT" in done.stderr
        assert open_store(tmp_path).get_run(run_id).status == "running"
    finally:
        child.kill()
        child.wait()
    gone = run_cli("delete", run_id[:8], "--yes", "--store", str(tmp_path))  # its process is gone: crashed
    assert gone.returncode == 0, gone.stderr


def test_train_help_shows_model_options_and_defaults():
    done = run_cli("train", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "--model-options" in text and "small_input" in text
    assert "[default: 0.05]" in text and "[default: --nesterov]" in text and "[default: fashion-mnist]" in text


def test_model_options_flag_reaches_the_config(synthetic_data, tmp_path):
    done = run_cli("train", "lenet5", "--data", str(synthetic_data), "--epochs", "1", "--model-options",
                   "{nope: 1}", "--store", str(tmp_path / "s"), "--no-progress")
    assert done.returncode != 0 and "nope" in done.stderr  # passed to the model builder, which names it


def test_data_ls_and_show(synthetic_data, tmp_path):
    listed = run_cli("data", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    names = {row["dataset"]: row for row in json.loads(listed.stdout)}
    assert {"fashion-mnist", "mnist"} <= set(names) and names["mnist"]["classes"] == 10
    assert run_cli("data", "ls").returncode == 0
    (synthetic_data / "classes.txt").write_text("\n".join(f"kind-{i}" for i in range(10)) + "\n")
    shown = run_cli("data", "show", str(synthetic_data), "--json")
    assert shown.returncode == 0, shown.stderr
    out = json.loads(shown.stdout)
    assert out["dataset"] == "synthetic" and out["classes"][0] == "kind-0" and len(out["files"]) == 4
    assert all(f["bytes"] for f in out["files"]) and out["verified"].startswith("not checked")
    human = run_cli("data", "show", str(synthetic_data))
    assert "kind-9" in human.stdout and "train images" in human.stdout
    unknown = run_cli("data", "show", "no-such-set")
    assert unknown.returncode == 2 and "unknown dataset" in unknown.stderr
    absent = run_cli("data", "show", "mnist", "--json")
    assert absent.returncode == 0 and json.loads(absent.stdout)["verified"].startswith("no")


def test_a_folder_dataset_is_named_by_its_folder_with_classes_from_classes_txt(tmp_path):
    data = write_dataset(tmp_path / "shapes", n_train=96, n_test=32)
    (data / "classes.txt").write_text("\n".join(f"shape {i}" for i in range(10)) + "\n")
    store = tmp_path / "store"
    done = run_cli("train", "lenet5", "--data", str(data), "--epochs", "1", "--store", str(store),
                   "--no-progress", "--json")
    assert done.returncode == 0, done.stderr
    [run] = open_store(store).list_runs()
    assert run.dataset["name"] == "shapes" and run.dataset["classes"][3] == "shape 3"
    assert "shape 3" in run.summary["per_class_acc1"]
    (data / "classes.txt").write_text("only\ntwo\n")
    short = run_cli("train", "lenet5", "--data", str(data), "--epochs", "1", "--store", str(store), "--no-progress")
    assert short.returncode == 2 and "classes.txt names 2 classes" in short.stderr
    assert len(open_store(store).list_runs()) == 1, "nothing recorded for bad input"
    (data / "classes.txt").unlink()
    plain = run_cli("train", "lenet5", "--data", str(data), "--epochs", "1", "--store", str(store),
                    "--no-progress", "--json")
    assert plain.returncode == 0
    newest = open_store(store).get_run(json.loads(plain.stdout)["id"])
    assert newest.dataset["name"] == "shapes" and newest.dataset["classes"] == [str(i) for i in range(10)]
