"""MLflow stores are foreign input: odd statuses, bad lines, huge values and crafted ids import right or fail."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from striate.errors import ConfigError
from striate.integrations.mlflow_import import _read_metric_file, import_runs
from striate.tracking.store import open_store
from striate.tracking.transfer import INCOMPLETE_MARKER
from tests.conftest import run_cli

FIXTURE = Path(__file__).parent / "mlflow_fixture"
EXPERIMENT = "698774380720895322"
RUN = "530c25b3c8ff4969ba2b5163cfb12efc"  # mlrun-1


@pytest.fixture
def mlruns(tmp_path: Path) -> Path:
    """A writable copy of the fixture's file store."""
    return Path(shutil.copytree(FIXTURE / "mlruns", tmp_path / "mlruns"))


def edit_meta(mlruns: Path, **changes: object) -> None:
    path = mlruns / EXPERIMENT / RUN / "meta.yaml"
    meta = yaml.safe_load(path.read_text())
    meta.update(changes)
    path.write_text(yaml.safe_dump(meta))


def one_error_line(done) -> str:  # type: ignore[no-untyped-def]
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    return done.stderr


@pytest.mark.parametrize(("status", "expected"), [("FINISHED", "finished"), ("failed", "failed"),
                                                  ("KILLED", "stopped"), ("RUNNING", "crashed"), ("3", "finished")])
def test_a_text_status_imports_as_what_it_says(tmp_path: Path, mlruns: Path, status: str, expected: str) -> None:
    edit_meta(mlruns, status=status)
    import_runs(str(mlruns), open_store(tmp_path / "s"))
    runs = {r.name: r for r in open_store(tmp_path / "s").list_runs()}
    assert runs["mlrun-1"].status == expected


def test_an_unknown_status_is_one_clear_error(tmp_path: Path, mlruns: Path) -> None:
    edit_meta(mlruns, status="banana")
    err = one_error_line(run_cli("import", "mlflow", str(mlruns), "--store", str(tmp_path / "s")))
    assert "has status 'banana', not an MLflow run status" in err and "meta.yaml" in err


def test_a_bad_metric_line_is_one_clear_error(tmp_path: Path, mlruns: Path) -> None:
    with (mlruns / EXPERIMENT / RUN / "metrics" / "loss").open("a") as fh:
        fh.write("yesterday 0.5 7\n")
    err = one_error_line(run_cli("import", "mlflow", str(mlruns), "--store", str(tmp_path / "s")))
    assert "metrics/loss line 6 is 'yesterday 0.5 7', not `timestamp value [step]`" in err


def test_a_401_digit_param_is_kept_as_text(tmp_path: Path, mlruns: Path) -> None:
    (mlruns / EXPERIMENT / RUN / "params" / "seed").write_text("9" * 401)
    (mlruns / EXPERIMENT / RUN / "params" / "eps").write_text("1e999")
    done = run_cli("import", "mlflow", str(mlruns), "--store", str(tmp_path / "s"), "--json")
    assert done.returncode == 0, done.stderr
    run = {r.name: r for r in open_store(tmp_path / "s").list_runs()}["mlrun-1"]
    assert run.config["seed"] == "9" * 401 and run.config["eps"] == "1e999" and run.config["lr"] == 0.01
    found = run_cli("runs", "--where", "params.lr > 0.001", "--json", "--store", str(tmp_path / "s"))
    assert found.returncode == 0 and len(json.loads(found.stdout)) == 3


def test_a_start_time_far_in_the_future_is_refused(tmp_path: Path, mlruns: Path) -> None:
    edit_meta(mlruns, start_time=10**23, end_time=10**23)  # created_at = 1e20 s
    err = one_error_line(run_cli("import", "mlflow", str(mlruns), "--store", str(tmp_path / "s")))
    assert "not a time between 1970 and tomorrow" in err
    listed = run_cli("runs", "--json", "--store", str(tmp_path / "s"))
    assert listed.returncode == 0


def test_a_run_id_with_a_quote_cannot_fake_the_duplicate_check(tmp_path: Path, mlruns: Path) -> None:
    store = open_store(tmp_path / "s")
    assert all(r["imported"] for r in import_runs(str(FIXTURE / "mlruns"), store))
    crafted = 'x" or name ~ "'  # once made `tags contains "mlflow:x" or name ~ ""`, which matches every run
    edit_meta(mlruns, run_id=crafted)
    rows = {r["mlflow_run_id"]: r for r in import_runs(str(mlruns), store)}
    assert rows[crafted]["imported"] is True
    assert sum(r["imported"] for r in rows.values()) == 1  # the two others are already here
    again = {r["mlflow_run_id"]: r for r in import_runs(str(mlruns), store)}
    assert not any(r["imported"] for r in again.values()) and again[crafted]["id"] == rows[crafted]["id"]


def test_a_quote_in_a_database_run_id_too(tmp_path: Path) -> None:
    db = Path(shutil.copy(FIXTURE / "mlflow.db", tmp_path / "mlflow.db"))
    store = open_store(tmp_path / "s")
    import_runs(str(FIXTURE / "mlflow.db"), store)
    with sqlite3.connect(db) as conn:
        victim = conn.execute("SELECT run_uuid FROM runs WHERE name = 'mlrun-1'").fetchone()[0]
        for table in ("runs", "metrics", "params", "tags", "latest_metrics"):
            try:
                conn.execute(f"UPDATE {table} SET run_uuid = ? WHERE run_uuid = ?", ('q" or id ~ "', victim))
            except sqlite3.OperationalError:
                pass
    rows = {r["mlflow_run_id"]: r["imported"] for r in import_runs(str(db), store)}
    assert rows['q" or id ~ "'] is True and sum(rows.values()) == 1


def test_a_half_imported_mlflow_run_is_redone(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s")
    import_runs(str(FIXTURE / "mlflow.db"), store)
    victim = {r.name: r for r in store.list_runs()}["mlrun-1"]
    store.update_run(victim.id, archived=True, status="crashed",
                     environment={**victim.environment, INCOMPLETE_MARKER: {"host": "elsewhere", "pid": 1}})
    rows = {r["name"]: r for r in import_runs(str(FIXTURE / "mlflow.db"), store)}
    assert rows["mlrun-1"]["imported"] is True and rows["mlrun-0"]["imported"] is False
    fresh = {r.name: r for r in store.list_runs()}["mlrun-1"]
    assert fresh.status == "finished" and not fresh.archived and len(store.list_runs()) == 3


lines = st.lists(st.one_of(
    st.tuples(st.integers(0, 2**41), st.floats(allow_nan=True), st.integers(-2**40, 2**40)).map(
        lambda t: f"{t[0]} {t[1]!r} {t[2]}"),
    st.text(alphabet=st.sampled_from(list("0123456789 .-e+nafix\t")), max_size=20)), max_size=8)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines)
def test_any_metric_file_gives_points_or_one_config_error(tmp_path: Path, content: list[str]) -> None:
    path = tmp_path / "metric"
    path.write_text("\n".join(content))
    try:
        points = _read_metric_file(path)
    except ConfigError as exc:
        assert "\n" not in str(exc) and "line" in str(exc)
        return
    assert all(isinstance(step, int) and isinstance(ms, int) and isinstance(v, float) for step, ms, v in points)


def test_export_tensorboard_to_an_unwritable_path_is_one_error_line(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    import_runs(str(FIXTURE / "mlflow.db"), open_store(tmp_path / "s"))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    err = one_error_line(run_cli("export-tensorboard", "mlrun-0", str(blocker / "tb"), "--store", str(tmp_path / "s")))
    assert "cannot write TensorBoard files to" in err


def test_export_tensorboard_keeps_a_hostile_run_name_inside_the_folder(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from striate.integrations.tensorboard import export_run

    store = open_store(tmp_path / "s")
    import_runs(str(FIXTURE / "mlflow.db"), store)
    run = {r.name: r for r in store.list_runs()}["mlrun-0"]
    store.update_run(run.id, name="../../escaped")
    export_run(store, run.id, tmp_path / "tb" / "inner")
    assert not list(tmp_path.glob("escaped*")) and not list((tmp_path / "tb").glob("escaped*"))
    assert [p.name for p in (tmp_path / "tb" / "inner").iterdir()] == [f".._.._escaped-{run.id[:8]}"]


def test_a_malformed_database_value_is_one_clear_error(tmp_path: Path) -> None:
    db = Path(shutil.copy(FIXTURE / "mlflow.db", tmp_path / "mlflow.db"))
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE runs SET start_time = 'noon' WHERE name = 'mlrun-1'")
    err = one_error_line(run_cli("import", "mlflow", str(db), "--store", str(tmp_path / "s")))
    assert "a run holds a malformed value" in err


meta_values = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=12),
                        st.lists(st.integers(), max_size=2), st.sampled_from(["FINISHED", "3", "RUNNING", 10**23]))


def test_any_meta_file_imports_or_gives_one_config_error(tmp_path: Path) -> None:
    """Property: whatever a run's meta.yaml holds, the import succeeds validly or fails with one ConfigError."""
    counter = iter(range(10**6))

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.dictionaries(st.sampled_from(["status", "start_time", "end_time", "run_id", "run_name",
                                            "lifecycle_stage"]), meta_values, min_size=1))
    def check(changes: dict[str, object]) -> None:
        n = next(counter)
        root = Path(shutil.copytree(FIXTURE / "mlruns", tmp_path / f"m{n}"))
        edit_meta(root, **changes)
        store = open_store(tmp_path / f"s{n}")
        try:
            import_runs(str(root), store)
        except ConfigError as exc:
            assert "\n" not in str(exc)
            return
        for run in store.list_runs():
            assert run.status != "running" and run.ended_at is not None and run.ended_at >= run.created_at
            assert INCOMPLETE_MARKER not in run.environment and not run.archived

    check()
