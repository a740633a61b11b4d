"""32 real processes logging into one SQLite store at once: nothing lost, nothing doubled, no lock errors."""

import subprocess
import sys

import numpy as np

from striate.tracking.store import open_store

WORKER = """
import sys, striate
run = striate.init(store=sys.argv[1], name=f"worker-{sys.argv[2]}", system_metrics=False)
for step in range(int(sys.argv[3])):
    run.log({"loss": step * 0.5, "acc": step / 10, "lr": 0.1, "k3": 3.0, "k4": 4.0}, step=step)
    if step % 500 == 0:
        run.log_artifact(sys.argv[4], name=f"note-{step}.txt")
run.summary["done"] = True
run.finish()
print("ok")
"""


def test_32_processes_log_into_one_store(tmp_path):
    store_dir = tmp_path / "store"
    open_store(store_dir)  # create the schema once, as the first user would
    note = tmp_path / "note.txt"
    note.write_text("hello")
    steps = 2000
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(store_dir), str(i), str(steps), str(note)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(32)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0 and out.strip() == "ok", err
        assert "locked" not in err
    store = open_store(store_dir)
    runs = store.list_runs()
    assert len(runs) == 32 and all(r.status == "finished" and r.summary["done"] is True for r in runs)
    for run in runs:
        for key in ("loss", "acc", "lr", "k3", "k4"):
            series = store.history(run.id, key)
            assert len(series) == steps
            np.testing.assert_array_equal(series.steps, np.arange(steps))
        assert run.metrics["loss"]["max"] == (steps - 1) * 0.5
        assert len([a for a in run.artifacts if a["kind"] == "file"]) == 4
