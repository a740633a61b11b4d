import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

import striate
from striate.errors import ConfigError, RunNotFoundError, StoreError
from striate.tracking.store import open_store
from striate.tracking.store.liveness import STALE_AFTER_S
from tests.conftest import as_nobody


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
    assert view.summary["best"] == 0.99
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
    assert [a for a in record.artifacts if a["kind"] == "model"] == [
        {"path": "weights.bin", "kind": "model", "size": 3000, "sha256": digest}]
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


KILL_CHILD = """
import sys, time, striate
run = striate.init(store=sys.argv[1], system_metrics=False)
print(run.id, flush=True)
step = 0
while True:
    run.log({"t": time.time()}, step=step)
    step += 1
    if step == 200:
        print("logging", flush=True)
    time.sleep(0.001)
"""


def test_sigkill_loses_at_most_100ms_and_the_run_is_marked_crashed(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    run_id = child.stdout.readline().strip()
    assert child.stdout.readline().strip() == "logging"
    time.sleep(0.5)  # let it log for a while: the point is to kill it mid-stream
    killed_at = time.time()
    child.send_signal(signal.SIGKILL)
    child.wait()
    store = open_store(tmp_path)  # opening the store notices the dead process
    record = store.get_run(run_id)
    assert record.status == "crashed"
    series = store.history(run_id, "t")
    assert (np.diff(series.steps) == 1).all(), "no gaps or duplicates in what was written"
    lost = killed_at - series.values.max()
    assert lost <= 0.1, f"lost the last {lost * 1000:.0f} ms of points"


CONSOLE_CHILD = """
import sys, time, striate, striate.tracking.run
striate.tracking.run.CONSOLE_INTERVAL_S = 0.1
run = striate.init(store=sys.argv[1], system_metrics=False)
print(run.id, flush=True)
print("epoch 1 done, loss 0.42", flush=True)
time.sleep(60)
"""


def test_a_killed_run_keeps_its_console_output(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", CONSOLE_CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    run_id = child.stdout.readline().strip()
    assert child.stdout.readline().startswith("epoch 1 done")
    time.sleep(0.6)  # several console write intervals
    child.send_signal(signal.SIGKILL)
    child.wait()
    store = open_store(tmp_path)
    record = store.get_run(run_id)
    assert record.status == "crashed"
    log_file = Path(store.artifact_root) / run_id / "console.log"
    assert "epoch 1 done, loss 0.42" in log_file.read_text()
    assert "console.log" in {a["path"] for a in record.artifacts}


def test_silent_run_on_another_host_is_marked_crashed_after_its_heartbeat_stops(tmp_path):
    run = striate.init(store=tmp_path, system_metrics=False)
    run._stopped.set()  # simulate a writer that died with its host
    run._writer.join()
    store = open_store(tmp_path)
    store.update_run(run.id, host="elsewhere", heartbeat_at=time.time() - 5)
    assert open_store(tmp_path).get_run(run.id).status == "running", "a recent heartbeat keeps it running"
    store.update_run(run.id, heartbeat_at=time.time() - STALE_AFTER_S - 1)
    assert open_store(tmp_path).get_run(run.id).status == "crashed"


def test_unknown_run_and_unwritable_store(tmp_path):
    store = open_store(tmp_path)
    with pytest.raises(RunNotFoundError, match="striate runs"):
        store.get_run("nope")
    # Root may write anywhere: as root, a forked child drops to `nobody` and tries there (a real,
    # unprivileged process, not a simulated permission check).
    shared = Path(tempfile.mkdtemp(prefix="striate-unwritable-"))  # /tmp: reachable by nobody
    try:
        shared.chmod(0o755)
        for name, with_artifacts in (("locked", False), ("locked-store", True)):
            locked = shared / name
            (locked / "artifacts" if with_artifacts else locked).mkdir(parents=True)
            locked.chmod(0o555)
            error = open_store_as_unprivileged(locked)
            assert error.startswith("StoreError") and "not writable" in error and "choose a writable folder" in error, \
                error
            assert not (locked / "striate.db").exists()
    finally:
        for folder in shared.iterdir():
            folder.chmod(0o755)
        shutil.rmtree(shared)


def open_store_as_unprivileged(folder: Path) -> str:
    """open_store(folder) in an unprivileged process; its error as "Type: message" ("" when it opened)."""
    def task() -> str:
        open_store(folder)
        return ""

    return as_nobody(task)


def test_store_path_that_is_a_file_is_rejected(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(StoreError, match="cannot create the store folder"):
        open_store(target)


def test_import_striate_does_not_import_torch():
    code = "import sys, striate; striate.Api; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("bad", [{"loss": "high"}, {"loss": None}, {"loss": [1, 2]}, {3: 1.0}])
def test_logging_non_numbers_is_a_clear_error(tmp_path, bad):
    run = striate.init(store=tmp_path, system_metrics=False)
    with pytest.raises(ConfigError, match="metric values must be numbers"):
        run.log(bad)
    run.log({"ok": np.float32(1.5), "flag": True})
    run.finish()
    assert open_store(tmp_path).get_run(run.id).metrics["ok"]["last"] == 1.5


def test_logged_dicts_are_copied(tmp_path):
    run = striate.init(store=tmp_path, system_metrics=False)
    metrics = {"loss": 1.0}
    run.log(metrics, step=0)
    metrics["loss"] = 2.0
    run.log(metrics, step=1)
    run.finish()
    assert list(open_store(tmp_path).history(run.id, "loss").values) == [1.0, 2.0]


def test_console_output_is_captured(tmp_path, capsys):
    run = striate.init(store=tmp_path, capture_console=True, system_metrics=False)
    print("hello from the training loop")
    print("a warning", file=sys.stderr)
    run.finish()
    text = (run.artifact_dir / "console.log").read_text()
    assert "hello from the training loop" in text and "a warning" in text
    assert "console.log" in {a["path"] for a in open_store(tmp_path).get_run(run.id).artifacts}
    assert "hello from the training loop" in capsys.readouterr().out, "output still reaches the terminal"


def test_a_resumed_run_keeps_the_console_output_of_its_first_part(tmp_path):
    from striate.tracking.run import reattach

    run = striate.init(store=tmp_path, capture_console=True, system_metrics=False)
    print("first part of the run")
    run.log({"loss": 1.0}, step=1)
    run.finish("stopped")
    again = reattach(open_store(tmp_path), run.id, after_step=1, capture_console=True)
    print("second part of the run")
    again.finish()
    text = (run.artifact_dir / "console.log").read_text()
    assert text.index("first part of the run") < text.index("--- resumed") < text.index("second part of the run")
    store = open_store(tmp_path)
    [entry] = [a for a in store.get_run(run.id).artifacts if a["path"] == "console.log"]
    assert entry["size"] == (run.artifact_dir / "console.log").stat().st_size, "the record describes the whole file"


def test_console_capture_keeps_head_and_tail():
    from striate.tracking.capture import ConsoleCapture

    capture = ConsoleCapture()
    capture.HEAD_BYTES, capture.TAIL_BYTES = 10, 10
    capture.write("0123456789" + "x" * 100 + "abcdefghij")
    text = capture.contents().decode()
    assert text.startswith("0123456789") and text.endswith("abcdefghij") and "100 bytes" in text


def test_system_metrics_are_sampled(tmp_path, monkeypatch):
    import striate.tracking.run as run_module

    monkeypatch.setattr(run_module, "SYSTEM_METRICS_INTERVAL_S", 0.0)
    run = striate.init(store=tmp_path)
    run._wake.wait(0.3)
    run.finish()
    metrics = open_store(tmp_path).get_run(run.id).metrics
    assert metrics["system/rss_mb"]["last"] > 10
    assert "system/cpu_percent" in metrics


def test_init_captures_the_environment_by_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside any git repository: the folder is snapshotted
    (tmp_path / "train.py").write_text("print('my training script')\n")
    run = striate.init(store=tmp_path / "store", system_metrics=False)
    run.finish()
    record = open_store(tmp_path / "store").get_run(run.id)
    env = record.environment
    assert env["python"] and env["hostname"] and env["cpu"] and env["git"] == {"in_repo": False}
    assert "sqlalchemy" in env["packages"] and env["command"]
    assert any(a["kind"] == "code-snapshot" for a in record.artifacts)
    assert record.summary["code_snapshot"]["files"] == 1
    bare = striate.init(store=tmp_path / "store", capture_environment=False, system_metrics=False)
    bare.finish()
    assert open_store(tmp_path / "store").get_run(bare.id).environment == {}


def test_values_are_read_when_logged_not_when_flushed(tmp_path):
    run = striate.init(store=tmp_path, system_metrics=False, capture_environment=False)
    running = np.zeros(())
    for step in range(3):
        running += 1  # updated in place, as `total += loss.detach()` is
        run.log({"running": running}, step=step)
    with pytest.raises(ConfigError, match="must be numbers"):
        run.log({"huge": 10**400})
    run.finish()
    assert open_store(tmp_path).history(run.id, "running").values.tolist() == [1.0, 2.0, 3.0]


def test_recorded_diff_ignores_the_users_git_colour_settings(tmp_path, monkeypatch):
    import subprocess

    from striate.tracking.capture import git_state

    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for args in (["init", "-q"], ["config", "color.ui", "always"], ["config", "diff.noprefix", "true"]):
        subprocess.run(["git", *args], cwd=tmp_path, check=True)
    (tmp_path / "f.txt").write_text("a\n")
    subprocess.run(["git", "add", "f.txt"], cwd=tmp_path, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "x"], cwd=tmp_path, check=True)
    (tmp_path / "f.txt").write_text("b\n")
    diff = git_state(tmp_path)["diff"]
    assert diff.startswith("diff --git a/f.txt b/f.txt") and "\x1b[" not in diff


def test_sys_exit_zero_inside_the_block_is_a_finished_run(tmp_path):
    with pytest.raises(SystemExit):
        with striate.init(store=tmp_path, system_metrics=False, capture_console=False) as run:
            run.log({"loss": 1.0})
            sys.exit(0)
    assert open_store(tmp_path).get_run(run.id).status == "finished"
    with pytest.raises(SystemExit):
        with striate.init(store=tmp_path, system_metrics=False, capture_console=False) as failing:
            sys.exit(3)
    assert open_store(tmp_path).get_run(failing.id).status == "failed"


def test_logging_to_a_finished_run_is_an_error(tmp_path):
    run = striate.init(store=tmp_path, system_metrics=False, capture_console=False)
    run.log({"loss": 1.0}, step=0)
    run.finish()
    with pytest.raises(ConfigError, match="finished"):
        run.log({"loss": 0.5}, step=1)
    assert len(open_store(tmp_path).history(run.id, "loss")) == 1


def test_console_captures_of_runs_that_end_out_of_order(tmp_path):
    original = sys.stdout
    first = striate.init(store=tmp_path, name="first", capture_console=True, system_metrics=False)
    print("before the second run")
    second = striate.init(store=tmp_path, name="second", capture_console=True, system_metrics=False)
    print("both running")
    first.finish()  # the earlier run ends first
    print("only the second running")
    second.finish()
    print("no run any more")
    assert sys.stdout is original, "the streams are put back once no run captures"
    first_log = (first.artifact_dir / "console.log").read_text()
    second_log = (second.artifact_dir / "console.log").read_text()
    assert "before the second run" in first_log and "both running" in first_log
    assert "only the second running" not in first_log
    assert "both running" in second_log and "only the second running" in second_log
    assert "no run any more" not in second_log and "before the second run" not in second_log


def test_points_with_changing_keys_keep_every_value_under_its_key(tmp_path):
    from collections import Counter, defaultdict

    run = striate.init(store=tmp_path, system_metrics=False, capture_environment=False, capture_console=False)
    run.log({"a": 1.0, "b": 2.0}, step=0)
    run.log({"b": 20.0, "a": 10.0}, step=1)  # the same keys in another order
    run.log({"a": 100.0, "c": 300.0}, step=2)  # as many keys, one of them new
    run.log({"a": 1000.0}, step=3)
    run.log(Counter(a=5), step=4)  # mappings that are not dicts
    run.log(defaultdict(float, {"a": 6.0, "b": 7.0}), step=5)
    with pytest.raises(ConfigError, match="'b'='x'"):
        run.log({"a": 1.0, "b": "x"}, step=6)
    with pytest.raises(ConfigError, match="keys strings"):
        run.log({"a": 1.0, 3: 1.0}, step=6)
    run.finish()
    store = open_store(tmp_path)
    expected = {"a": ([0, 1, 2, 3, 4, 5], [1, 10, 100, 1000, 5, 6]), "b": ([0, 1, 5], [2, 20, 7]), "c": ([2], [300])}
    for key, (steps, values) in expected.items():
        series = store.history(run.id, key)
        assert series.steps.tolist() == steps and series.values.tolist() == values, key


def test_an_abandoned_run_takes_its_console_capture_and_writer_with_it(tmp_path):
    import gc
    import sys

    from striate.tracking import capture

    before = sys.stdout
    run = striate.init(store=tmp_path, system_metrics=False, capture_environment=False, capture_console=True)
    writer = run._writer
    assert isinstance(sys.stdout, capture._Tee)
    striate.init(store=tmp_path, system_metrics=False, capture_environment=False, capture_console=False).finish()
    del run  # never finished: nothing holds it any more
    gc.collect()
    assert capture._HUB.captures == ()
    assert sys.stdout is before
    writer.join(timeout=5)
    assert not writer.is_alive()


@pytest.mark.parametrize(("tail", "status", "code"), [("", "finished", 0), ("raise SystemExit(0)", "finished", 0),
                                                      ("1 / 0", "failed", 1)])
def test_a_script_that_never_calls_finish_keeps_its_points(tmp_path, tail, status, code):
    import subprocess
    import sys

    script = f"""
import striate
run = striate.init(project="p", store={str(tmp_path / 's')!r}, system_metrics=False)
for i in range(5):
    run.log({{"loss": 1.0 / (i + 1)}})
print("logged")
{tail}
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == code, done.stderr
    (record,) = open_store(tmp_path / "s").list_runs()
    assert record.status == status
    assert record.metrics["loss"]["count"] == 5
    assert "console.log" in {a["path"] for a in record.artifacts}
    if status == "failed":
        assert "ZeroDivisionError" in (record.error or "")


def test_the_readmes_track_your_own_loop_example_runs_as_written(tmp_path, monkeypatch):
    """README.md's "Track your own loop" block, run verbatim: the series unpacks as steps, times, values."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Track your own loop", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    assert "steps, times, values = " in code
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    steps, times, values = namespace["steps"], namespace["times"], namespace["values"]
    assert len(steps) == len(times) == len(values) == 1000
    assert steps[0] == 0 and values[0] == 1.0 and values[-1] == pytest.approx(1 / 1000)
    series = namespace["api"].run(namespace["run"].id).history("loss")
    assert len(series) == 1000 and [a is b for a, b in zip(series, (series.steps, series.times, series.values))] \
        == [True, True, True]


def test_log_with_known_keys_converts_counts_and_refuses_like_any_call(tmp_path):
    """The usual call (a dict with the keys of an earlier call, read with one itemgetter) converts
    values at the call, numbers steps like any call, refuses what any call refuses, and refuses
    everything once the run is finished — also when kept as `log = run.log` and called later."""
    run = striate.init(store=tmp_path, system_metrics=False, capture_console=False, capture_environment=False)
    running = np.zeros(())
    for _ in range(3):
        running += 1  # updated in place after each call
        run.log({"a": running, "b": 2})  # steps 0, 1, 2
    log = run.log
    log({"a": 10.0, "b": 10.0}, step=10)
    log({"a": 11.0, "b": 11.0})  # the next step: 11
    log({"a": 5.0, "b": 5.0}, step=5)  # an earlier step does not move the next one back
    log({"b": 12.0, "a": 12.0})  # the same keys in another order: 12
    log({"a": 13.0, "c": 13.0})  # as many keys, another one
    log({})  # nothing to record, as before
    with pytest.raises(ConfigError, match="'b'='x'"):
        log({"a": 1.0, "b": "x"})
    with pytest.raises(ConfigError, match="'b'=10000"):
        log({"a": 1.0, "b": 10**400})
    run.finish()
    for call in (log, run.log):
        with pytest.raises(ConfigError, match="finished"):
            call({"a": 1.0, "b": 1.0})
    store = open_store(tmp_path)
    a, b = store.history(run.id, "a"), store.history(run.id, "b")
    assert a.steps.tolist() == [0, 1, 2, 10, 11, 5, 12, 13]
    assert a.values.tolist() == [1.0, 2.0, 3.0, 10.0, 11.0, 5.0, 12.0, 13.0]
    assert b.steps.tolist() == [0, 1, 2, 10, 11, 5, 12] and b.values.tolist() == [2, 2, 2, 10, 11, 5, 12]
    assert store.history(run.id, "c").steps.tolist() == [13]


def test_the_usual_call_is_refused_once_the_run_is_taken_over(tmp_path):
    """log()'s fast path (a dict with the keys of the last call) skips the status checks until the
    run ends or loses its claim: then it is turned off, also for a kept `log = run.log`."""
    run = striate.init(store=tmp_path, system_metrics=False, capture_console=False, capture_environment=False)
    run.log({"loss": 1.0, "acc": 0.5}, step=0)
    kept = run.log
    kept({"loss": 1.5, "acc": 0.6}, step=1)  # the fast path
    run.flush()
    store = open_store(tmp_path)
    store.update_run(run.id, status="crashed")  # as another host would see a silent run, then resume it
    assert store.claim_run(run.id, host="another-host", pid=4242, pid_started_at=1.0)
    kept({"loss": 2.0, "acc": 0.7}, step=2)  # queued before the writer learns it lost the run
    deadline = time.monotonic() + 10
    while not run.claim_lost and time.monotonic() < deadline:
        time.sleep(0.01)
    assert run.claim_lost
    for call in (kept, run.log):
        with pytest.raises(StoreError, match="taken over"):
            call({"loss": 3.0, "acc": 0.8}, step=3)
    with pytest.raises(StoreError, match="taken over"):
        run.finish()
    assert store.history(run.id, "loss").values.tolist() == [1.0, 1.5]
    assert store.history(run.id, "acc").values.tolist() == [0.5, 0.6]
