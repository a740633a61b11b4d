import os
import subprocess
import sys
import time

import numpy as np
import pytest

import striate
from striate.errors import ConfigError, RunNotFoundError, StoreError
from striate.tracking.store import open_store
from striate.tracking.store.base import STALE_AFTER_S


def test_log_history_summary_and_read_api(tmp_path):
    store_dir = tmp_path / "store"
    with striate.init(project="p", name="first", config={"lr": 0.1, "opt": {"momentum": 0.9}}, tags=["a"],
                      store=store_dir) as run:
        for step in range(1000):
            run.log({"loss": 1.0 / (step + 1), "acc": step / 1000}, step=step)
        striate.log({"loss": 0.5})  # the active run, next step
        run.summary["best"] = 0.99
    api = striate.Api(store_dir)
    view = api.run(run.id[:6])
    assert view.status == "finished" and view.name == "first" and view.tags == ["a"]
    assert view.config == {"lr": 0.1, "opt": {"momentum": 0.9}}
    assert view.summary == {"best": 0.99}
    loss = view.history("loss")
    assert len(loss) == 1001 and loss.steps[-1] == 1000 and loss.values[-1] == 0.5
    np.testing.assert_allclose(loss.values[:1000], 1.0 / np.arange(1, 1001))
    assert (np.diff(loss.times) >= 0).all()
    assert view.metrics["loss"]["min"] == pytest.approx(0.001) and view.metrics["loss"]["max"] == 1.0
    assert view.metrics["acc"]["last"] == pytest.approx(0.999)
    assert [r.id for r in api.runs(project="p")] == [run.id]
    assert api.run("first").id == run.id


def test_exception_in_context_marks_run_failed(tmp_path):
    with pytest.raises(ValueError):
        with striate.init(store=tmp_path) as run:
            run.log({"x": 1})
            raise ValueError("boom")
    record = open_store(tmp_path).get_run(run.id)
    assert record.status == "failed" and "boom" in record.error
    assert record.metrics["x"]["last"] == 1


def test_artifacts_are_copied_and_hashed(tmp_path):
    src = tmp_path / "weights.bin"
    src.write_bytes(b"abc" * 1000)
    run = striate.init(store=tmp_path / "s")
    digest = run.log_artifact(src, kind="model")
    run.finish()
    record = open_store(tmp_path / "s").get_run(run.id)
    assert record.artifacts == [{"path": "weights.bin", "kind": "model", "size": 3000, "sha256": digest}]
    assert (run.artifact_dir / "weights.bin").read_bytes() == src.read_bytes()
    with pytest.raises(ConfigError):
        run.log_artifact(tmp_path / "missing")


def test_log_does_not_wait_for_the_store(tmp_path):
    run = striate.init(store=tmp_path)
    start = time.perf_counter()
    for step in range(20_000):
        run.log({"a": 1.0, "b": 2.0}, step=step)
    elapsed = time.perf_counter() - start
    run.finish()
    assert len(open_store(tmp_path).history(run.id, "a")) == 20_000
    assert elapsed < 2.0  # generous: enqueueing 20k points must not involve a database round trip each


def test_killed_process_run_is_marked_crashed(tmp_path):
    code = ("import os, striate; r = striate.init(store=%r); r.log({'x': 1}); r.flush(); "
            "print(r.id, flush=True); os._exit(0)" % str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    run_id = out.strip()
    store = open_store(tmp_path)
    assert store.get_run(run_id).status == "running", "a fresh heartbeat keeps it running"
    store.update_run(run_id, heartbeat_at=time.time() - STALE_AFTER_S - 1)
    assert open_store(tmp_path).get_run(run_id).status == "crashed"


def test_unknown_run_and_unwritable_store(tmp_path):
    store = open_store(tmp_path)
    with pytest.raises(RunNotFoundError, match="striate runs"):
        store.get_run("nope")
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(StoreError, match="not writable"):
            open_store(locked)
    finally:
        os.chmod(locked, 0o700)


def test_store_path_that_is_a_file_is_rejected(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(StoreError, match="cannot create the store folder"):
        open_store(target)


def test_import_striate_does_not_import_torch():
    code = "import sys, striate; striate.Api; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
