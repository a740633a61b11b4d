"""Item 5 of issue 10: what a local (SQLite) store accepts must fit the PostgreSQL columns too.

One set of limits (tracking/store/schema.py) is checked where text enters: ``striate.init``,
``run.log``, ``log_artifact``, imports, and before a spooled run is sent; ``striate sync``
reports a run that cannot be sent and goes on with the others.
"""

import time
import uuid

import numpy as np
import pytest

import striate
from striate.errors import ConfigError, StriateError
from striate.tracking.spool import sync_all
from striate.tracking.store import MetricSeries, RunRecord, open_store
from striate.tracking.store.schema import LIMITS
from striate.tracking.transfer import validate_record
from tests.conftest import run_cli


def _init(tmp_path, **kw):
    return striate.init(store=tmp_path / "s", system_metrics=False, capture_environment=False,
                        capture_console=False, **kw)


@pytest.mark.parametrize("field,limit", [("name", "name"), ("project", "name"), ("model", "name")])
def test_init_refuses_text_over_the_column_width(tmp_path, field, limit):
    with pytest.raises(ConfigError, match=f"{field}.*{LIMITS[limit]}"):
        _init(tmp_path, **{field: "x" * (LIMITS[limit] + 1)})
    run = _init(tmp_path, **{field: "x" * LIMITS[limit]})  # exactly the limit is fine
    run.finish()


def test_init_refuses_a_config_key_over_the_key_width(tmp_path):
    with pytest.raises(ConfigError, match="config key"):
        _init(tmp_path, config={"k" * (LIMITS["key"] + 1): 1})
    # nesting adds up: each key is short, the flattened one is not
    with pytest.raises(ConfigError, match="config key"):
        _init(tmp_path, config={"a" * 200: {"b" * 200: 1}})


def test_log_refuses_a_metric_key_over_the_key_width(tmp_path):
    run = _init(tmp_path)
    with pytest.raises(ConfigError, match="metric key"):
        run.log({"m" * (LIMITS["key"] + 1): 1.0})
    run.log({"m" * LIMITS["key"]: 1.0})
    run.finish()
    assert list(open_store(tmp_path / "s").get_run(run.id).metrics) == ["m" * LIMITS["key"]]


def test_log_artifact_refuses_a_path_over_the_path_width(tmp_path):
    run = _init(tmp_path)
    source = tmp_path / "f.txt"
    source.write_text("x")
    long_name = "/".join(["d" * 100] * 10) + "/f.txt"  # 1015 characters, each part a valid file name
    with pytest.raises(ConfigError, match="artifact path"):
        run.log_artifact(source, name=long_name)
    run.finish()


def _record(**kw):
    now = time.time()
    data = {"id": uuid.uuid4().hex, "name": "r", "project": "default", "status": "finished",
            "created_at": now - 10, "ended_at": now - 5, "heartbeat_at": now - 5}
    return {**data, **kw}


@pytest.mark.parametrize("bad", [
    {"id": "a" * (LIMITS["id"] + 1)},
    {"reproduction_of": "b" * (LIMITS["id"] + 1)},
    {"name": "n" * (LIMITS["name"] + 1)},
    {"host": "h" * (LIMITS["host"] + 1)},
    {"config": {"k" * (LIMITS["key"] + 1): 1}},
])
def test_imports_use_the_same_limits(bad):
    with pytest.raises(ConfigError):
        validate_record(_record(**bad), "archive", "fix it")


def _spool_with_one_bad_run(tmp_path):
    spool = open_store(tmp_path / "spool")
    now = time.time()
    good = []
    # a run whose metric key is too long for the server: nothing of it may arrive
    long_key = RunRecord(id=uuid.uuid4().hex, name="long-key", project="default", status="finished",
                         created_at=now - 5, ended_at=now - 4, heartbeat_at=now - 4)
    spool.create_run(long_key)
    spool.log_batch(long_key.id, [MetricSeries("k" * 301, np.arange(2), np.full(2, now), np.ones(2))])
    for i, name in enumerate(["good-1", "bad", "good-2"]):
        run_id = uuid.uuid4().hex
        # written straight into the spool, as an older striate (with no checks at the door) would have
        record = RunRecord(id=run_id, name=name if name != "bad" else "b" * 250, project="default",
                           status="finished", created_at=now + i, ended_at=now + i + 1, heartbeat_at=now + i + 1)
        spool.create_run(record)
        if name != "bad":
            good.append(run_id)
    return good


def test_sync_reports_a_bad_run_and_sends_the_others(tmp_path, postgres_url):
    good = _spool_with_one_bad_run(tmp_path)
    rows = sync_all(postgres_url, tmp_path / "spool")
    failed = sorted((r for r in rows if r.get("error")), key=lambda r: r["name"])
    assert len(failed) == 2 and "250" in failed[0]["error"] and "metric key" in failed[1]["error"]
    remote = open_store(postgres_url)
    assert sorted(r.id for r in remote.list_runs()) == sorted(good)


def test_sync_command_exits_non_zero_naming_the_failed_run(tmp_path, postgres_url):
    good = _spool_with_one_bad_run(tmp_path)
    done = run_cli("sync", "--to", postgres_url, "--spool", str(tmp_path / "spool"))
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert "Traceback" not in out
    assert "could not sync" in out and "250" in out and "synced 2 run(s)" in out
    assert len(open_store(postgres_url).list_runs()) == len(good)


def test_limits_match_the_columns():
    from striate.tracking.store.schema import artifacts, metric_summary, params, runs

    assert runs.c.id.type.length == LIMITS["id"]
    assert runs.c.name.type.length == runs.c.project.type.length == runs.c.model.type.length == LIMITS["name"]
    assert runs.c.host.type.length == LIMITS["host"]
    assert params.c.key.type.length == metric_summary.c.key.type.length == LIMITS["key"]
    assert artifacts.c.path.type.length == LIMITS["artifact_path"]
    assert issubclass(ConfigError, StriateError)


@pytest.mark.parametrize("kw", [{"name": "a\x00b"}, {"project": "p\x00"}, {"notes": "n\x00"},
                                {"config": {"k\x00": 1}}, {"name": "\ud800"}])
def test_init_refuses_text_no_server_can_hold(tmp_path, kw):
    with pytest.raises(ConfigError, match="NUL|surrogate"):
        _init(tmp_path, **kw)


def test_log_refuses_a_metric_key_with_a_nul(tmp_path):
    run = _init(tmp_path)
    with pytest.raises(ConfigError, match="NUL"):
        run.log({"a\x00": 1.0})
    run.finish()
