"""The store contract: every backend (SQLite, PostgreSQL and the team server over HTTP) passes these tests.

Written against the ``Store`` interface and ``open_store(location)`` only — except where a test must
craft a database by hand (schema-version guards), which it does with plain SQL on the same location
(for the team server: on the database behind it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

import striate
import striate.tracking.run as striate_run
from striate.errors import RunNotFoundError, StoreError
from striate.tracking.store import MetricChunk, MetricSeries, RunRecord, Store, liveness, open_store
from striate.tracking.store.base import ClaimLostError, Owner, chunk_sink, chunk_source
from striate.tracking.store.liveness import process_start_time
from striate.tracking.store.schema import SCHEMA_VERSION

SERVER_DATABASES: dict[str, Path] = {}  # a team server's URL -> the store folder behind it


@pytest.fixture(params=["sqlite", "postgresql", "http"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store lives, for each backend: a folder nobody has opened yet, a fresh, empty database, or
    the team server (one process for the whole session) with its runs wiped."""
    if request.param == "sqlite":
        return str(tmp_path / "store")
    if request.param == "http":
        url = str(request.getfixturevalue("server_url"))
        SERVER_DATABASES[url] = request.getfixturevalue("team_server").folder
        return url
    return str(request.getfixturevalue("postgres_url"))


def needs_own_database(location: str) -> None:
    """Skip for the team server: a test that breaks the store's database by hand would break the one
    server every test shares, and a server checks its database's schema when it starts (tests/server)."""
    if location.startswith("http"):
        pytest.skip("the team server checks its database's schema version at start-up (tests/server covers it)")


@pytest.fixture
def store(location: str) -> Store:
    return open_store(location)


def new_record(name: str = "r", status: str = "running", **fields: object) -> RunRecord:
    now = time.time()
    fields.setdefault("heartbeat_at", now)
    return RunRecord(id=uuid.uuid4().hex, name=name, project="contract", status=status, created_at=now,
                     ended_at=None, **fields)  # type: ignore[arg-type]


def series(key: str, steps: np.ndarray | list[int], values: np.ndarray | list[float]) -> MetricSeries:
    steps = np.asarray(steps, np.int64)
    return MetricSeries(key, steps, steps.astype(float) + 1e9, np.asarray(values, np.float64))


def raw_engine(location: str) -> sa.Engine:
    """Plain SQL access to the database behind a store location (for crafting broken stores)."""
    if location.startswith("postgresql://"):
        return sa.create_engine("postgresql+psycopg://" + location.removeprefix("postgresql://"))
    if location in SERVER_DATABASES:
        location = str(SERVER_DATABASES[location])
    return sa.create_engine(f"sqlite:///{Path(location) / 'striate.db'}")


# -- runs: create / claim / update ----------------------------------------------------------------
def test_create_read_update_and_find_runs(store: Store) -> None:
    record = new_record("first", status="stopped", config={"lr": 0.1, "opt": {"name": "sgd"}}, tags=["a", "b"],
                        model="lenet5", notes="n", host="h", pid=12, pid_started_at=3.5)
    store.create_run(record)
    got = store.get_run(record.id)
    assert (got.name, got.status, got.config, got.tags, got.model, got.notes, got.host, got.pid, got.pid_started_at) \
        == ("first", "stopped", {"lr": 0.1, "opt": {"name": "sgd"}}, ["a", "b"], "lenet5", "n", "h", 12, 3.5)
    assert store.get_run(record.id[:8]).id == record.id and store.get_run("first").id == record.id
    store.update_run(record.id, status="finished", summary={"best": 0.9}, ended_at=record.created_at + 5, archived=True)
    got = store.get_run(record.id)
    assert got.status == "finished" and got.summary == {"best": 0.9} and got.archived and got.duration_s == 5
    assert store.search_runs(where="params.opt.name = sgd", include_archived=True) == [record.id]
    assert [r.id for r in store.list_runs(project="contract")] == [record.id]
    with pytest.raises(RunNotFoundError, match="striate runs"):
        store.get_run("nope")
    store.delete_run(record.id)
    assert store.list_runs() == []


def test_a_run_cannot_be_claimed_twice(store: Store) -> None:
    record = new_record(status="stopped")
    store.create_run(record)
    assert store.claim_run(record.id, host="h", pid=1, pid_started_at=None) is True
    assert store.claim_run(record.id, host="h", pid=2, pid_started_at=None) is False
    got = store.get_run(record.id)
    assert got.status == "running" and got.pid == 1


CLAIMER = """
import os, sys, time
from pathlib import Path
from striate.tracking.store import open_store
store = open_store(sys.argv[1])
Path(sys.argv[3] + f".ready{os.getpid()}").touch()
while not Path(sys.argv[3]).exists():
    time.sleep(0.001)
print(store.claim_run(sys.argv[2], host="h", pid=os.getpid(), pid_started_at=None))
"""


def test_concurrent_claims_from_processes_one_wins(store: Store, location: str, tmp_path: Path) -> None:
    record = new_record(status="stopped")
    store.create_run(record)
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, location, record.id, str(go)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    deadline = time.time() + 120
    while len(list(tmp_path.glob("go.ready*"))) < len(procs) and time.time() < deadline:
        time.sleep(0.01)
    go.touch()  # all claim at once
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    assert sorted(out.strip() for out, _ in outputs) == ["False", "False", "False", "True"]
    assert store.get_run(record.id).status == "running"


# -- metric points --------------------------------------------------------------------------------
def test_batched_log_appends_in_order_and_keeps_summaries(store: Store) -> None:
    record = new_record()
    store.create_run(record)
    store.log_batch(record.id, [series("loss", [0, 1, 2], [3.0, 2.0, 2.5]), series("acc", [0, 1, 2], [0.1, 0.2, 0.3])])
    store.log_batch(record.id, [series("loss", [3, 4], [1.0, 1.5])], heartbeat_at=record.created_at + 7)
    store.log_batch(record.id, [], heartbeat_at=record.created_at + 9)  # a heartbeat alone
    loss = store.history(record.id, "loss")
    assert loss.steps.tolist() == [0, 1, 2, 3, 4] and loss.values.tolist() == [3.0, 2.0, 2.5, 1.0, 1.5]
    assert loss.times.tolist() == (np.arange(5) + 1e9).tolist()
    got = store.get_run(record.id)
    assert got.metrics["loss"] == {"last": 1.5, "min": 1.0, "max": 3.0, "count": 5, "last_step": 4}
    assert got.metrics["acc"] == {"last": 0.3, "min": 0.1, "max": 0.3, "count": 3, "last_step": 2}
    assert got.heartbeat_at == record.created_at + 9
    assert len(store.history(record.id, "missing")) == 0


def test_put_chunks_is_idempotent_and_keeps_summaries(store: Store, tmp_path: Path) -> None:
    source = open_store(tmp_path / "source")
    record = new_record()
    for target in (source, store):
        target.create_run(record)
    for first in (0, 10, 20):
        steps = np.arange(first, first + 10)
        source.log_batch(record.id, [series("loss", steps, 100.0 - steps), series("acc", steps, steps / 100)])
    chunks = chunk_source(source).chunks_since(record.id, 0)
    assert all(isinstance(c, MetricChunk) for c in chunks) and len({c.uid for c in chunks}) == 6
    sink = chunk_sink(store)
    assert sink.put_chunks(record.id, chunks[:4] + chunks[:1]) == 4  # a uid twice in one call: stored once
    assert sink.put_chunks(record.id, chunks) == 2
    assert sink.put_chunks(record.id, chunks) == 0
    assert chunk_source(source).chunks_since(record.id, chunks[-1].seq) == []
    assert store.history(record.id, "loss").steps.tolist() == list(range(30))
    assert store.get_run(record.id).metrics == source.get_run(record.id).metrics
    assert store.get_run(record.id).metrics["loss"] == {"last": 71.0, "min": 71.0, "max": 100.0, "count": 30,
                                                        "last_step": 29}


def test_truncate_metrics_drops_points_after_a_step_and_fixes_summaries(store: Store) -> None:
    record = new_record()
    store.create_run(record)
    for first in (0, 10, 20):  # three chunks; the cut at step 14 straddles the second
        steps = np.arange(first, first + 10)
        store.log_batch(record.id, [MetricSeries("loss", steps, steps.astype(float), 100.0 - steps)])
    assert store.truncate_metrics(record.id, after_step=14) == 15
    assert store.history(record.id, "loss").steps.tolist() == list(range(15))
    summary = store.get_run(record.id).metrics["loss"]
    assert summary == {"last": 86.0, "min": 86.0, "max": 100.0, "count": 15, "last_step": 14}
    assert store.truncate_metrics(record.id, after_step=14) == 0
    assert store.truncate_metrics(record.id, after_step=-1) == 15
    assert "loss" not in store.get_run(record.id).metrics and len(store.history(record.id, "loss")) == 0


def test_nan_and_inf_round_trip_in_history_and_are_no_value_in_summaries(store: Store) -> None:
    record = new_record()
    store.create_run(record)
    nan, inf = float("nan"), float("inf")
    store.log_batch(record.id, [series("loss", [0, 1, 2], [1.0, nan, inf]), series("blown", [0, 1], [-inf, inf]),
                                series("ok", [0], [5.0])])
    store.log_batch(record.id, [series("loss", [3, 4], [-inf, nan])])
    np.testing.assert_array_equal(store.history(record.id, "loss").values, [1.0, nan, inf, -inf, nan])
    metrics = store.get_run(record.id).metrics
    assert metrics["loss"] == {"last": None, "min": 1.0, "max": 1.0, "count": 5, "last_step": 4}
    assert metrics["blown"] == {"last": None, "min": None, "max": None, "count": 2, "last_step": 1}
    store.log_batch(record.id, [series("blown", [2], [2.0])])
    assert store.get_run(record.id).metrics["blown"] == {"last": 2.0, "min": 2.0, "max": 2.0, "count": 3,
                                                         "last_step": 2}


def frames_and_chunks(location: str, run_id: str) -> tuple[int, int, int]:
    """(frame rows, chunk rows, bytes of steps and times stored) of one run, read with plain SQL."""
    engine = raw_engine(location)
    with engine.connect() as conn:
        frames, stored = conn.execute(sa.text(
            "SELECT count(*), coalesce(sum(length(steps) + length(times)), 0) FROM metric_frames WHERE run_id = :r"),
            {"r": run_id}).one()
        chunks = conn.execute(sa.text("SELECT count(*) FROM metric_chunks WHERE run_id = :r"), {"r": run_id}).scalar()
    engine.dispose()
    return int(frames), int(chunks), int(stored)


def test_a_flush_of_several_keys_stores_its_steps_and_times_once(store: Store, location: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys logged at the same points share one frame; keys logged at other points of the same flush
    get theirs; every value (NaN and infinities too), step and time reads back exactly, through
    history, M4 downsampling, summaries, sync, truncation and deletion."""
    nan, inf = float("nan"), float("inf")
    monkeypatch.setattr(striate_run, "FLUSH_INTERVAL_S", 3600.0)  # the writer waits: finish() flushes it all at once
    run = striate.init(store=store, system_metrics=False, capture_console=False, capture_environment=False)
    for step in range(100):
        values = {"loss": 1.0 / (step + 1), "acc": step / 100, "lr": 0.1, "odd": [nan, inf, -inf, 2.5][step % 4]}
        run.log(values, step=step)
        if step % 10 == 9:
            run.log({"val_acc": step / 1000, "val_loss": [inf, nan][step % 20 // 10]}, step=step)
    run.log({"loss": -inf, "acc": nan, "lr": 0.0, "odd": inf}, step=100)
    run.finish()
    frames, chunks, stored = frames_and_chunks(location, run.id)
    assert (frames, chunks) == (2, 6), "one frame for the 4 keys logged together, one for the 2 logged elsewhere"
    assert stored == (101 + 10) * 16, "each step and time stored once"

    def expect(key: str, steps: list[int], values: list[float]) -> None:
        got = store.history(run.id, key)
        np.testing.assert_array_equal(got.steps, steps)
        np.testing.assert_array_equal(got.values, values)  # NaN equals NaN here
        assert (np.diff(got.times) >= 0).all() and got.times[0] > 1e9
    every = list(range(101))
    expect("loss", every, [1.0 / (s + 1) for s in range(100)] + [-inf])
    expect("acc", every, [s / 100 for s in range(100)] + [nan])
    expect("odd", every, [[nan, inf, -inf, 2.5][s % 4] for s in range(100)] + [inf])
    expect("val_acc", list(range(9, 100, 10)), [s / 1000 for s in range(9, 100, 10)])
    expect("val_loss", list(range(9, 100, 10)), [[inf, nan][s % 20 // 10] for s in range(9, 100, 10)])
    assert (store.history(run.id, "loss").times == store.history(run.id, "odd").times).all(), "one clock per point"
    down = store.history(run.id, "loss", max_points=8)
    assert down.steps[0] == 0 and down.steps[-1] == 100 and down.values.max() == 1.0
    metrics = store.get_run(run.id).metrics
    assert metrics["odd"] == {"last": None, "min": 2.5, "max": 2.5, "count": 101, "last_step": 100}
    assert metrics["val_loss"] == {"last": None, "min": None, "max": None, "count": 10, "last_step": 99}

    # sync: the chunks travel with their own steps and times, and share frames again where they land
    source, sink = chunk_source(store), open_store(tmp_path / "sink")
    sink.create_run(store.get_run(run.id))
    sent = source.chunks_since(run.id, 0)
    assert len(sent) == chunks and chunk_sink(sink).put_chunks(run.id, sent) == chunks
    assert frames_and_chunks(str(tmp_path / "sink"), run.id) == (frames, chunks, stored)
    for key in ("loss", "odd", "val_loss"):
        np.testing.assert_array_equal(sink.history(run.id, key).values, store.history(run.id, key).values)
        np.testing.assert_array_equal(sink.history(run.id, key).times, store.history(run.id, key).times)
    assert sink.get_run(run.id).metrics == metrics

    # truncation rewrites the frames it cuts (still shared) and leaves none behind unused
    assert store.truncate_metrics(run.id, after_step=49) == 4 * 51 + 2 * 5
    frames_after, chunks_after, stored_after = frames_and_chunks(location, run.id)
    assert frames_after == frames and stored_after == (50 + 5) * 16
    expect("odd", list(range(50)), [[nan, inf, -inf, 2.5][s % 4] for s in range(50)])
    expect("val_loss", list(range(9, 50, 10)), [[inf, nan][s % 20 // 10] for s in range(9, 50, 10)])
    assert store.truncate_metrics(run.id, after_step=-1) == 4 * 50 + 2 * 5
    assert frames_and_chunks(location, run.id) == (0, 0, 0)
    store.delete_run(run.id)
    sink.delete_run(run.id)
    assert frames_and_chunks(str(tmp_path / "sink"), run.id) == (0, 0, 0)


def test_history_downsampling_keeps_extremes_first_and_last(store: Store) -> None:
    run = striate.init(store=store, system_metrics=False, capture_console=False, capture_environment=False)
    for step in range(5000):
        run.log({"loss": 1.0 if step not in (1234, 4321) else (99.0 if step == 4321 else -99.0)}, step=step)
    run.finish()
    down = striate.Api(store).run(run.id).history("loss", max_points=100)
    assert len(down) <= 100 and down.values.max() == 99.0 and down.values.min() == -99.0
    assert down.steps[0] == 0 and down.steps[-1] == 4999 and (np.diff(down.steps) > 0).all()


# -- many processes at once -------------------------------------------------------------------------
WRITER = """
import os, sys, time
import numpy as np
from striate.tracking.store import MetricChunk, MetricSeries, RunRecord, open_store
from striate.tracking.store.codec import pack
location, index, batches, shared = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
store = open_store(location)
run_id = f"{index:04d}" + "a" * 28
now = time.time()
store.create_run(RunRecord(id=run_id, name=f"writer-{index}", project="contract", status="running",
                           created_at=now, ended_at=None, heartbeat_at=now, host=None, pid=os.getpid()))
for b in range(batches):
    steps = np.arange(b * 10, b * 10 + 10)
    store.log_batch(run_id, [MetricSeries(key, steps, np.full(10, now), steps * factor + index)
                             for factor, key in ((1.0, "loss"), (2.0, "acc"), (3.0, "lr"))], heartbeat_at=time.time())
if shared != "-":
    chunks = []
    for c in range(20):
        p = pack(MetricSeries("shared", np.arange(c * 5, c * 5 + 5), np.full(5, now), np.full(5, float(c))))
        chunks.append(MetricChunk(f"origin:{c}", p.key, p.steps, p.times, p.values, c + 1))
    order = np.random.default_rng(index).permutation(20)
    for start in range(0, 20, 4):
        store.put_chunks(shared, [chunks[i] for i in order[start:start + 4]])
store.update_run(run_id, status="finished", ended_at=time.time())
print("ok")
"""


def run_writers(location: str, shared: str, processes: int = 8, batches: int = 40) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, location, str(i), str(batches), shared],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(processes)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0 and out.strip() == "ok", err
        assert "locked" not in err


def check_writers(store: Store, processes: int = 8, batches: int = 40) -> None:
    runs = [r for r in store.list_runs() if r.name.startswith("writer-")]
    assert sorted(r.name for r in runs) == [f"writer-{i}" for i in range(processes)]
    for run in runs:
        index = int(run.name.split("-")[1])
        assert run.status == "finished"
        for factor, key in ((1.0, "loss"), (2.0, "acc"), (3.0, "lr")):
            got = store.history(run.id, key)
            np.testing.assert_array_equal(got.steps, np.arange(batches * 10))  # nothing lost, nothing twice
            np.testing.assert_array_equal(got.values, np.arange(batches * 10) * factor + index)
            assert run.metrics[key]["count"] == batches * 10


def test_eight_processes_create_and_fill_a_store_nobody_opened_yet(location: str) -> None:
    run_writers(location, shared="-")  # all of them create the schema at the same moment
    check_writers(open_store(location))


def test_eight_processes_write_their_runs_and_sync_the_same_chunks_into_one(store: Store, location: str) -> None:
    shared = new_record("shared")
    store.create_run(shared)
    run_writers(location, shared=shared.id)
    check_writers(store)
    got = store.history(shared.id, "shared")  # in order of arrival: each chunk exactly once
    assert sorted(got.steps.tolist()) == list(range(100))
    summary = store.get_run(shared.id).metrics["shared"]
    assert summary["count"] == 100 and summary["min"] == 0.0 and summary["max"] == 19.0


# -- schema versions ------------------------------------------------------------------------------
@pytest.mark.parametrize("craft,message", [
    ("UPDATE store_meta SET value = '1' WHERE key = 'schema_version'", "much older striate"),
    # the schema before frames (steps and times in every chunk): refused, naming `striate store upgrade`
    (f"UPDATE store_meta SET value = '{SCHEMA_VERSION - 1}' WHERE key = 'schema_version'", "older striate"),
    (f"UPDATE store_meta SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'", "newer than this striate"),
    ("DROP TABLE store_meta", "records no schema version"),
])
def test_schema_version_guards(store: Store, location: str, craft: str, message: str) -> None:
    needs_own_database(location)
    store.create_run(new_record())
    engine = raw_engine(location)
    with engine.begin() as conn:
        conn.execute(sa.text(craft))
    engine.dispose()
    with pytest.raises(StoreError, match=message) as caught:
        open_store(location)
    assert caught.value.fix  # every refusal says what to do
    if "much older" in message:  # too old to upgrade in place: moved run by run
        assert "export-run" in caught.value.fix and "import-run" in caught.value.fix
    elif "older" in message:  # upgraded in place, by the command the fix names with this very store
        assert f"striate store upgrade --store {location}" in caught.value.fix


def test_a_store_at_this_schema_version_opens_and_keeps_its_runs(store: Store, location: str) -> None:
    needs_own_database(location)
    record = new_record()
    store.create_run(record)
    engine = raw_engine(location)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT value FROM store_meta WHERE key = 'schema_version'")).scalar() \
            == str(SCHEMA_VERSION)
    engine.dispose()
    assert open_store(location).get_run(record.id).id == record.id


# -- crash detection ------------------------------------------------------------------------------
def test_pid_reuse_is_detected_by_the_process_start_time(store: Store, location: str) -> None:
    started = process_start_time()
    assert started is not None, "psutil reads process start times here"
    here = socket.gethostname()
    reused = new_record("reused", host=here, pid=os.getpid(), pid_started_at=started - 1000)  # same PID, not us
    alive = new_record("alive", host=here, pid=os.getpid(), pid_started_at=started)
    elsewhere = new_record("elsewhere", host="another-host", pid=os.getpid(), pid_started_at=started - 1000)
    for record in (reused, alive, elsewhere):
        store.create_run(record)
    reopened = open_store(location)  # opening a store applies the crash policy
    assert reopened.get_run(reused.id).status == "crashed"
    assert reopened.get_run(alive.id).status == "running"
    assert reopened.get_run(elsewhere.id).status == "running", "another host's PID says nothing; its heartbeat does"


def test_a_live_process_on_this_host_is_never_crashed_however_old_its_heartbeat(
        store: Store, location: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A suspended (SIGSTOP) job refreshes no heartbeat, yet its process is alive: it keeps its run.
    monkeypatch.setattr(liveness, "STALE_AFTER_S", 1.0)
    monkeypatch.delenv("STRIATE_STALE_AFTER_S", raising=False)
    old = time.time() - 3600
    here = socket.gethostname()
    alive = new_record("alive", host=here, pid=os.getpid(), pid_started_at=process_start_time(), heartbeat_at=old)
    elsewhere = new_record("elsewhere", host="another-host", pid=os.getpid(), heartbeat_at=old)
    unchecked = new_record("no-pid", host=here, pid=None, heartbeat_at=old)  # nothing to ask: the heartbeat decides
    fresh_elsewhere = new_record("fresh", host="another-host", pid=1)
    for record in (alive, elsewhere, unchecked, fresh_elsewhere):
        store.create_run(record)
    reopened = open_store(location)
    assert reopened.get_run(alive.id).status == "running"
    assert reopened.get_run(elsewhere.id).status == "crashed"
    assert reopened.get_run(unchecked.id).status == "crashed"
    assert reopened.get_run(fresh_elsewhere.id).status == "running"
    assert not store.claim_run(alive.id, "another-host", 7, 1.0), "a live run cannot be resumed"


def test_a_run_taken_over_cannot_be_written_by_its_old_owner(store: Store) -> None:
    started = process_start_time()
    record = new_record("taken", host="host-a", pid=11, pid_started_at=started)
    store.create_run(record)
    old = Owner("host-a", 11, started)
    store.log_batch(record.id, [series("loss", [0, 1], [1.0, 0.9])], heartbeat_at=time.time(), owner=old)
    # Seen from another host the run went silent: marked crashed, then resumed there.
    store.update_run(record.id, status="crashed")
    assert store.claim_run(record.id, "host-b", 22, 5.0)
    with pytest.raises(ClaimLostError, match="taken over") as caught:
        store.log_batch(record.id, [series("loss", [2, 3], [0.8, 0.7])], heartbeat_at=time.time(), owner=old)
    assert caught.value.fix and "host-b" in str(caught.value)
    with pytest.raises(ClaimLostError):
        store.log_batch(record.id, [], heartbeat_at=time.time(), owner=old)  # a heartbeat alone neither
    with pytest.raises(ClaimLostError):
        store.update_run(record.id, owner=old, status="finished", ended_at=time.time())
    got = store.get_run(record.id)
    assert got.status == "running" and got.host == "host-b" and got.pid == 22
    assert store.history(record.id, "loss").steps.tolist() == [0, 1], "not one point of the old owner"
    assert got.metrics["loss"]["count"] == 2
    new = Owner("host-b", 22, 5.0)
    store.log_batch(record.id, [series("loss", [2], [0.5])], owner=new)
    store.update_run(record.id, owner=new, status="finished", ended_at=time.time())
    assert store.get_run(record.id).status == "finished"
    assert store.history(record.id, "loss").steps.tolist() == [0, 1, 2]


def test_a_run_marked_crashed_but_claimed_by_nobody_is_taken_back_by_its_owner(store: Store) -> None:
    record = new_record("paused", host="host-a", pid=11, pid_started_at=None)
    store.create_run(record)
    store.update_run(record.id, status="crashed", ended_at=time.time())  # another host saw it silent
    store.log_batch(record.id, [series("loss", [0], [1.0])], heartbeat_at=time.time(),
                    owner=Owner("host-a", 11, None))
    got = store.get_run(record.id)
    assert got.status == "running" and got.ended_at is None and got.metrics["loss"]["count"] == 1


def test_a_reader_does_not_wait_for_a_writer_and_leaves_crash_marking_to_the_next_writer(
        store: Store, location: str) -> None:
    dead = new_record("dead", host=socket.gethostname(), pid=os.getpid(), pid_started_at=1.0)  # not this process
    store.create_run(dead)
    engine = raw_engine(location)
    holder = engine.connect()
    transaction = holder.begin()
    if engine.dialect.name == "sqlite":
        holder.exec_driver_sql("UPDATE store_meta SET value = value")  # takes SQLite's write lock
    holder.execute(sa.text("UPDATE runs SET notes = notes WHERE id = :id"), {"id": dead.id})  # and the row's
    release = threading.Timer(20, transaction.rollback)  # at worst a waiting reader is freed after 20 s
    release.start()
    try:
        started = time.monotonic()
        reader = open_store(location, read_only=True)
        # not recorded (the writer holds the lock), but shown as what the next writer records
        assert [(r.name, r.status) for r in reader.list_runs()] == [("dead", "crashed")]
        assert time.monotonic() - started < 10, "the reader waited for the writer"
    finally:
        release.cancel()
        if transaction.is_active:
            transaction.rollback()
        holder.close()
        engine.dispose()
    assert open_store(location).get_run(dead.id).status == "crashed"


# -- run references -------------------------------------------------------------------------------
@pytest.mark.parametrize("reference", ["", " ", "\t\n", "   "])
def test_an_empty_or_blank_reference_matches_no_run(store: Store, reference: str) -> None:
    for name in ("", " ", "named"):  # even runs whose name is blank are not found by a blank reference
        store.create_run(new_record(name))
    with pytest.raises(RunNotFoundError, match="cannot be empty") as caught:
        store.get_run(reference)
    assert caught.value.fix


def test_a_name_shared_by_several_runs_is_ambiguous_and_lists_them(store: Store) -> None:
    older, newer, other = new_record("twin"), new_record("twin"), new_record("single")
    newer.created_at = older.created_at + 1
    for record in (older, newer, other):
        store.create_run(record)
    with pytest.raises(RunNotFoundError, match="ambiguous.*2 runs are named 'twin'") as caught:
        store.get_run("twin")
    assert older.id[:12] in str(caught.value) and newer.id[:12] in str(caught.value)
    assert "first characters" in caught.value.fix
    assert store.get_run(older.id).id == older.id and store.get_run(newer.id[:10]).id == newer.id
    assert store.get_run("single").id == other.id


def test_a_name_that_is_also_another_runs_id_prefix_is_ambiguous(store: Store) -> None:
    target = new_record()
    store.create_run(target)
    named = new_record(target.id[:8])  # a run named like the first 8 characters of the other's id
    store.create_run(named)
    with pytest.raises(RunNotFoundError, match="ambiguous.*2 runs match") as caught:
        store.get_run(target.id[:8])
    assert target.id[:12] in str(caught.value) and named.id[:12] in str(caught.value)
    assert store.get_run(target.id).id == target.id and store.get_run(named.id).id == named.id


def test_a_full_id_wins_over_a_name_equal_to_it(store: Store) -> None:
    target = new_record()
    store.create_run(target)
    store.create_run(new_record(target.id))
    assert store.get_run(target.id).id == target.id


def test_an_ambiguous_reference_lists_at_most_five_runs_and_counts_the_rest(store: Store) -> None:
    for _ in range(7):
        store.create_run(new_record("many"))
    with pytest.raises(RunNotFoundError, match="7 runs are named 'many'.*and 2 more") as caught:
        store.get_run("many")
    assert str(caught.value).count("(many)") == 5


def test_a_reference_is_looked_up_only_in_the_projects_given(store: Store) -> None:
    mine, theirs = new_record("same"), new_record("same")
    theirs.project = "elsewhere"
    store.create_run(mine)
    store.create_run(theirs)
    assert store.get_run("same", projects=["contract"]).id == mine.id
    with pytest.raises(RunNotFoundError, match="no run"):
        store.get_run(theirs.id, projects=["contract"])


def test_delete_with_an_empty_reference_deletes_nothing(store: Store, location: str) -> None:
    from tests.conftest import run_cli

    record = new_record("keep", status="finished")
    store.create_run(record)
    for reference in ("", " "):
        done = run_cli("delete", reference, "--yes", "--store", location, timeout=120)
        assert done.returncode != 0 and "cannot be empty" in done.stdout + done.stderr
    assert store.get_run(record.id).id == record.id


# -- CI runs the contract on PostgreSQL --------------------------------------------------------------
@pytest.mark.parametrize("required,outcome,code", [("1", "1 error", 1), ("", "1 skipped", 0)])
def test_a_missing_postgresql_fails_the_tests_when_required(required: str, outcome: str, code: int) -> None:
    env = {**os.environ, "STRIATE_TEST_POSTGRES_ADMIN": "postgresql+psycopg://postgres@127.0.0.1:9/postgres",
           "STRIATE_REQUIRE_POSTGRES": required}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"{__file__}::test_a_run_cannot_be_claimed_twice[postgresql]"],
                          capture_output=True, text=True, env=env, timeout=300, cwd=Path(__file__).parents[2])
    assert done.returncode == code and outcome in done.stdout, done.stdout[-2000:] + done.stderr


# -- artifact files ---------------------------------------------------------------------------------------------
def test_artifact_files_are_stored_with_their_hash_and_read_back(store: Store, tmp_path: Path) -> None:
    import hashlib

    from striate.tracking.store.base import ArtifactMissingError

    record = new_record(status="finished")
    store.create_run(record)
    source = tmp_path / "w.bin"
    source.write_bytes(os.urandom(300_000))
    entry = store.put_artifact_file(record.id, "checkpoints/w.bin", source, "checkpoint")
    assert entry == {"path": "checkpoints/w.bin", "kind": "checkpoint", "size": 300_000,
                     "sha256": hashlib.sha256(source.read_bytes()).hexdigest()}
    assert store.get_run(record.id).artifacts == [entry]
    assert store.find_artifacts(entry["sha256"]) == [(record.id, "checkpoints/w.bin")]
    assert store.artifact_file(record.id, "checkpoints/w.bin").read_bytes() == source.read_bytes()

    source.write_bytes(b"newer bytes")  # the same path again: replaced, record and file
    newer = store.put_artifact_file(record.id, "checkpoints/w.bin", source, "checkpoint")
    assert store.get_run(record.id).artifacts == [newer] and newer["size"] == 11
    assert store.artifact_file(record.id, "checkpoints/w.bin").read_bytes() == b"newer bytes"

    with pytest.raises(ArtifactMissingError):
        store.artifact_file(record.id, "never-stored.bin")
    for hostile in ("../escaped.bin", "/tmp/escaped.bin", "a/../../escaped.bin", "a\\..\\escaped.bin", "%2e%2e/x"):
        with pytest.raises(StoreError, match="refusing artifact path"):
            store.put_artifact_file(record.id, hostile, source)
        with pytest.raises(StoreError, match="refusing artifact path"):
            store.artifact_file(record.id, hostile)
    assert not (tmp_path / "escaped.bin").exists() and not Path("/tmp/escaped.bin").exists()
    assert [a["path"] for a in store.get_run(record.id).artifacts] == ["checkpoints/w.bin"]
