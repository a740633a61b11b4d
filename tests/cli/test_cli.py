"""The `striate` command: training, listing, showing, bad input (in this process, through the app);
Ctrl-C and `python -m striate` itself in subprocesses."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from striate.tracking.store import DATABASE_FILE, RunRecord, open_store
from tests.conftest import run_cli, write_dataset


def recorded_runs(store: Path) -> list[RunRecord]:
    """Every run in the store at ``store``, whatever its status, archived ones too (none without a store)."""
    if not (store / DATABASE_FILE).exists():
        return []
    return open_store(store).list_runs()


def test_train_then_runs_and_show(synthetic_data, tmp_path):
    store = tmp_path / "store"
    done = run_cli("train", "lenet5", "--data", str(synthetic_data), "--epochs", "2", "--batch-size", "32",
                   "--lr", "0.05", "--seed", "1", "--store", str(store), "--no-progress", "--tag", "smoke")
    assert done.returncode == 0, done.stderr
    assert "config:" in done.stdout and "epochs=2" in done.stdout
    assert "epoch   2/2" in done.stdout
    assert "striate show" in done.stdout

    listed = run_cli("runs", "--store", str(store), "--json")
    rows = json.loads(listed.stdout)
    assert len(rows) == 1 and rows[0]["status"] == "finished" and rows[0]["model"] == "lenet5"
    assert rows[0]["lr"] == 0.05 and rows[0]["batch_size"] == 32 and rows[0]["best_test_acc1"] > 0.3
    table = run_cli("runs", "--store", str(store))
    assert rows[0]["id"][:8] in table.stdout and "finished" in table.stdout

    shown = json.loads(run_cli("show", rows[0]["id"][:8], "--store", str(store), "--json").stdout)
    assert shown["config"]["epochs"] == 2 and shown["config"]["seed"] == 1 and shown["tags"] == ["smoke"]
    env = shown["environment"]
    assert env["python"] and env["torch"] and env["cpu"] and "train" in env["command"]
    assert "packages" in env and "torch" in env["packages"] and "git" in env
    assert shown["dataset"]["fingerprint"] and shown["dataset"]["train_size"] == 320
    assert any(a["kind"] == "checkpoint" and len(a["sha256"]) == 64 for a in shown["artifacts"])
    assert set(shown["summary"]["per_class_acc1"]) == {str(i) for i in range(10)}
    text = run_cli("show", rows[0]["id"][:8], "--store", str(store))
    assert text.returncode == 0 and "per-class top-1" in text.stdout and "confusion_matrix.json" in text.stdout


def test_config_file_with_cli_overrides(synthetic_data, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"data: {synthetic_data}\nepochs: 3\nbatch_size: 64\nlr: 0.02\nname: from-file\n")
    store = tmp_path / "store"
    done = run_cli("train", "-c", str(config), "--epochs", "1", "--set", "weight_decay=0.001",
                   "--store", str(store), "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    record = open_store(store).get_run(out["id"])
    assert record.name == "from-file"
    assert record.config["epochs"] == 1 and record.config["lr"] == 0.02 and record.config["weight_decay"] == 0.001


def bad_inputs(tmp_path: Path, data: Path) -> dict[str, tuple[list[str], str]]:
    corrupt = write_dataset(tmp_path / "corrupt")
    raw = (corrupt / "train-images-idx3-ubyte.gz").read_bytes()
    (corrupt / "train-images-idx3-ubyte.gz").write_bytes(raw[: len(raw) // 2])
    return {
        "missing data": (["--data", str(tmp_path / "nowhere")], "unknown dataset"),
        "corrupt data": (["--data", str(corrupt)], "corrupt"),
        "unknown model": (["lenet", "--data", str(data)], "unknown model 'lenet'"),
        "bad value": (["--data", str(data), "--lr", "-1"], "invalid lr"),
        "bad choice": (["--data", str(data), "--optimizer", "adam"], "choose one of: sgd, adamw"),
        "unknown key": (["--data", str(data), "--set", "epoch=3"], "did you mean 'epochs'"),
        "bad type": (["--data", str(data), "--set", "epochs=three"], "invalid epochs"),
    }


@pytest.mark.parametrize("case", ["missing data", "corrupt data", "unknown model", "bad value", "bad choice",
                                  "unknown key", "bad type"])
def test_bad_input_gives_one_clear_line(synthetic_data, tmp_path, case):
    args, expected = bad_inputs(tmp_path, synthetic_data)[case]
    store = tmp_path / "store"
    done = run_cli("train", *args, "--epochs", "1", "--store", str(store), "--no-progress")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error:") and expected in lines[0] and "fix:" in lines[0]
    assert recorded_runs(store) == [], "bad input is refused before a run exists: not even a failed one"


def test_unwritable_store_is_one_clear_line(synthetic_data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    done = run_cli("train", "--data", str(synthetic_data), "--store", str(blocker / "store"))
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "store" in done.stderr and "fix:" in done.stderr


def test_bad_config_file_is_one_clear_line(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("epochs: [1\n")
    done = run_cli("train", "-c", str(config))
    assert done.returncode == 2 and "not valid YAML" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert recorded_runs(tmp_path / "default-store") == []  # $STRIATE_STORE, set by the isolated_cache fixture


def test_existing_runs_survive_a_failing_command(synthetic_data, tmp_path):
    store = tmp_path / "store"
    assert run_cli("train", "--data", str(synthetic_data), "--epochs", "1", "--store", str(store),
                   "--no-progress").returncode == 0
    assert run_cli("train", "nope", "--data", str(synthetic_data), "--store", str(store)).returncode == 2
    assert [r.status for r in recorded_runs(store)] == ["finished"]


def test_ctrl_c_marks_the_run_stopped_and_keeps_the_checkpoint(tmp_path):
    data = write_dataset(tmp_path / "bigger", n_train=640, n_test=80)  # 200 epochs: stopped long before the end
    store = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-m", "striate", "train", "--data", str(data), "--epochs", "200",
                             "--batch-size", "16", "--store", str(store), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    assert proc.stdout is not None
    for line in proc.stdout:  # wait for the first finished epoch (and its checkpoint)
        if line.startswith("epoch   1/200"):
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    (record,) = open_store(store).list_runs()
    assert record.status == "stopped"
    assert "checkpoints/epoch-001.safetensors" in {a["path"] for a in record.artifacts}
    assert record.summary["stopped_at_step"] >= record.summary["last_checkpoint"]["global_step"] > 0
    text = " ".join(out.split())
    assert re.search(r"stopped (in|after) epoch \d+/200 (at )?\(?step \d+\)?, interrupted \(Ctrl-C\)", text), text
    assert f"resume {record.id[:8]} --store {store}" in text and "epochs;" not in text


def test_names_that_look_like_markup_are_shown_literally(synthetic_data, tmp_path):
    store = str(tmp_path / "store")
    name = "exp[/bold] [red]v2"
    done = run_cli("train", "--data", str(synthetic_data), "--epochs", "1", "--store", store, "--name", name,
                   "--no-progress")
    assert done.returncode == 0, done.stderr
    assert name in done.stdout
    for command in (["runs"], ["show", name], ["tag", name, "[b]x"]):
        out = run_cli(*command, "--store", store)
        assert out.returncode == 0 and "Traceback" not in out.stderr, (command, out.stderr)
    one = run_cli("compare", name, name, "--store", store)  # one run named twice: an error that names it
    assert one.returncode == 2 and "Traceback" not in one.stderr and name in " ".join(one.stderr.split())
    assert name in run_cli("show", name, "--store", store).stdout
    missing = run_cli("show", "nope[/]", "--store", store)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "nope[/]" in missing.stderr


def strict_json(text: str):
    """Parse as standard JSON: NaN and Infinity are not numbers there."""
    def refuse(constant: str):
        raise ValueError(f"{constant} is not standard JSON")
    return json.loads(text, parse_constant=refuse)


def test_a_diverged_run_fails_and_non_finite_values_print_as_standard_json(synthetic_data, tmp_path):
    import striate

    store = str(tmp_path / "store")
    done = run_cli("train", "--data", str(synthetic_data), "--epochs", "1", "--lr", "1e12", "--store", store,
                   "--no-progress", "--json")
    assert done.returncode == 4 and "error: training diverged" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    (diverged,) = open_store(store).list_runs()
    assert diverged.status == "failed" and "training diverged" in (diverged.error or "")
    run = striate.init(store=store, system_metrics=False, capture_environment=False, capture_console=False)
    run.log({"loss": float("nan"), "grad_norm": float("inf")}, step=0)
    run.summary["test_loss"] = float("nan")
    run.finish()
    shown = run_cli("show", run.id, "--store", store, "--json")
    assert shown.returncode == 0, shown.stderr
    assert strict_json(shown.stdout)["summary"]["test_loss"] is None, "a non-finite value is reported as null"
    for command in (["show", diverged.id], ["runs"]):
        listed = run_cli(*command, "--store", store, "--json")
        assert listed.returncode == 0, listed.stderr
        strict_json(listed.stdout)


def test_store_server_errors_and_empty_tags_are_one_clear_line(synthetic_data, tmp_path):
    down = run_cli("runs", "--store", "postgresql://postgres@127.0.0.1:9/nowhere")
    assert down.returncode == 2 and len(down.stderr.strip().splitlines()) == 1, down.stderr
    assert "database server is running" in down.stderr and "folder" not in down.stderr
    store = str(tmp_path / "store")
    done = run_cli("train", "--data", str(synthetic_data), "--epochs", "1", "--store", store, "--no-progress", "--json")
    run_id = json.loads(done.stdout)["id"]
    empty = run_cli("tag", run_id, " ", "--store", store)
    assert empty.returncode == 2 and "tag is empty" in empty.stderr
    assert open_store(store).get_run(run_id).tags == []


def test_show_includes_the_runs_note(synthetic_data, tmp_path):
    store = str(tmp_path / "store")
    done = run_cli("train", "--data", str(synthetic_data), "--epochs", "1", "--store", store, "--no-progress", "--json")
    run_id = json.loads(done.stdout)["id"]
    assert run_cli("note", run_id, "baseline [for] the ablation", "--store", store).returncode == 0
    assert "notes: baseline [for] the ablation" in run_cli("show", run_id, "--store", store).stdout


def test_python_m_striate_is_the_same_app_with_the_same_errors(tmp_path):
    # Everything above runs the app in this process; this is the entry point users run.
    (tmp_path / "store").mkdir()  # an empty store (a path that does not exist is another error)
    missing = run_cli("show", "nope", "--store", str(tmp_path / "store"), subprocess=True)
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.splitlines() == ["error: no run 'nope' in this store — fix: `striate runs` lists the runs"]
    assert missing.stderr == run_cli("show", "nope", "--store", str(tmp_path / "store")).stderr


def test_help_imports_neither_torch_nor_sqlalchemy():
    """`striate --help` stays quick: the heavy packages are imported by the commands that use them."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "striate", "--help"], capture_output=True,
                          text=True, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0 and "train" in done.stdout
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert "typer" in imported, "the -X importtime listing was read"
    assert not imported & {"torch", "sqlalchemy", "numpy"}, imported & {"torch", "sqlalchemy", "numpy"}


def test_a_database_error_is_one_line_with_exit_code_3(tmp_path):
    import sqlite3
    from contextlib import closing

    import striate

    store = tmp_path / "store"
    run = striate.init(name="x", store=store, system_metrics=False, capture_environment=False)
    run.finish()
    with closing(sqlite3.connect(store / DATABASE_FILE)) as db:  # damaged in a way no check looks for
        db.execute("ALTER TABLE runs DROP COLUMN notes")
        db.commit()
    done = run_cli("show", "x", "--store", str(store))
    assert done.returncode == 3, done.stderr
    assert done.stderr.splitlines() == ["error: the store database failed: no such column: runs.notes — fix: "
                                        "check --store, its disk space and permissions"]
