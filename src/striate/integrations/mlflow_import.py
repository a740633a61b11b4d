"""Bringing MLflow runs into striate: params, metrics (every point) and tags.

Reads MLflow's own storage directly — a database (``sqlite:///mlflow.db``, a ``.db`` file, or any
SQLAlchemy URL) or a file store folder (``mlruns/``) — so MLflow itself need not be installed.
Importing is idempotent: each imported run carries the tag ``mlflow:<run id>`` and is skipped
the next time.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import sqlalchemy as sa

from striate import safe_yaml
from striate.errors import ConfigError
from striate.tracking.store import MetricSeries, RunRecord, Store
from striate.tracking.transfer import (
    begin_import,
    discard_incomplete,
    finish_import,
    import_incomplete,
    validate_record,
)

_STATUS = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "stopped", "RUNNING": "crashed",
           "SCHEDULED": "crashed"}
_FILE_STATUS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}


@dataclass
class MlflowRun:
    """One MLflow run as read from its storage."""

    run_id: str
    name: str
    experiment: str
    status: str
    start_ms: int
    end_ms: int | None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, list[tuple[int, int, float]]] = field(default_factory=dict)  # key -> (step, ms, value)


def read_runs(source: str) -> Iterator[MlflowRun]:
    """MLflow runs (active ones) from a database URL, a .db file or an mlruns folder."""
    path = Path(source.removeprefix("file://"))
    if "://" not in source or source.startswith("file://"):
        if path.is_dir():
            yield from sorted(_read_file_store(path), key=lambda run: run.start_ms)
            return
        if path.is_file():
            yield from _read_database(f"sqlite:///{path.resolve()}")
            return
        raise ConfigError(f"no MLflow store at {source}",
                          "pass an mlruns folder, an mlflow.db file or a database URL like sqlite:///mlflow.db")
    yield from _read_database(source)


def _read_database(url: str) -> Iterator[MlflowRun]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            if not {"runs", "metrics", "params", "tags", "experiments"} <= tables:
                raise ConfigError(f"{url} is not an MLflow tracking database", "point at MLflow's backend store")
            query = sa.text("SELECT experiment_id, name FROM experiments")
            experiments: dict[Any, Any] = dict(conn.execute(query).all())
            rows = conn.execute(sa.text(
                "SELECT run_uuid, name, status, start_time, end_time, experiment_id FROM runs "
                "WHERE lifecycle_stage = 'active' ORDER BY start_time")).all()
            for r in rows:
                run = MlflowRun(r.run_uuid, r.name or r.run_uuid[:8], experiments.get(r.experiment_id, "default"),
                                r.status, int(r.start_time or 0), r.end_time)
                ident = {"id": r.run_uuid}
                params_sql = sa.text("SELECT key, value FROM params WHERE run_uuid = :id")
                tags_sql = sa.text("SELECT key, value FROM tags WHERE run_uuid = :id")
                run.params = dict(conn.execute(params_sql, ident).all())
                run.tags = dict(conn.execute(tags_sql, ident).all())
                for m in conn.execute(sa.text("SELECT key, value, timestamp, step, is_nan FROM metrics "
                                              "WHERE run_uuid = :id ORDER BY key, timestamp, step"), ident):
                    value = float("nan") if m.is_nan else float(m.value)
                    run.metrics.setdefault(m.key, []).append((int(m.step), int(m.timestamp), value))
                yield run
    except sa.exc.SQLAlchemyError as exc:
        raise ConfigError(f"cannot read the MLflow database {url}: {exc.__class__.__name__}",
                          "check the URL and that the database is reachable") from None
    except (TypeError, ValueError, OverflowError) as exc:  # a value of the wrong type in a column
        raise ConfigError(f"cannot import the MLflow database {url}: a run holds a malformed value ({exc})",
                          "repair or delete that run in MLflow, then import again") from None
    finally:
        engine.dispose()


def _read_file_store(root: Path) -> Iterator[MlflowRun]:
    experiment_dirs = [d for d in sorted(root.iterdir()) if (d / "meta.yaml").is_file()]
    if not experiment_dirs:
        raise ConfigError(f"{root} holds no MLflow experiments", "point at the mlruns folder itself")
    for exp_dir in experiment_dirs:
        exp_meta = _read_meta(exp_dir / "meta.yaml")
        if exp_meta.get("lifecycle_stage", "active") != "active":
            continue
        for run_dir in sorted(d for d in exp_dir.iterdir() if (d / "meta.yaml").is_file()):
            meta_path = run_dir / "meta.yaml"
            meta = _read_meta(meta_path)
            if meta.get("lifecycle_stage", "active") != "active":
                continue
            run = MlflowRun(str(meta.get("run_id") or run_dir.name), str(meta.get("run_name") or run_dir.name[:8]),
                            str(exp_meta.get("name", "default")), _file_status(meta.get("status", 3), meta_path),
                            _ms(meta.get("start_time") or 0, "start_time", meta_path),
                            None if meta.get("end_time") is None else _ms(meta["end_time"], "end_time", meta_path))
            run.params = _read_values(run_dir / "params")
            run.tags = _read_values(run_dir / "tags")
            for metric_file in sorted(_files(run_dir / "metrics")):
                run.metrics[metric_file.relative_to(run_dir / "metrics").as_posix()] = _read_metric_file(metric_file)
            yield run


def _unreadable(path: Path, problem: str) -> ConfigError:
    return ConfigError(f"cannot import the MLflow file store: {path} {problem}",
                       "repair or delete that file (or its run) in the mlruns folder, then import again")


def _read_meta(path: Path) -> dict[str, Any]:
    meta = safe_yaml.load_path(path, "MLflow file")
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise _unreadable(path, f"holds a {type(meta).__name__}, not a mapping")
    return meta


def _file_status(value: Any, path: Path) -> str:
    """The file store writes a status code (3 = FINISHED); some tools write the name ("FINISHED")."""
    if isinstance(value, str) and value.strip().upper() in _STATUS:
        return value.strip().upper()
    if isinstance(value, int) and not isinstance(value, bool) and value in _FILE_STATUS:
        return _FILE_STATUS[value]
    if isinstance(value, str) and value.strip().isdigit() and int(value) in _FILE_STATUS:
        return _FILE_STATUS[int(value)]
    raise _unreadable(path, f"has status {value!r}, not an MLflow run status "
                            f"({', '.join(_STATUS)} or a code {min(_FILE_STATUS)}-{max(_FILE_STATUS)})")


def _ms(value: Any, what: str, path: Path) -> int:
    """A millisecond timestamp from a meta file (a number, maybe written as text)."""
    try:
        if isinstance(value, bool):
            raise ValueError
        ms = int(value) if not isinstance(value, float) else int(value) if math.isfinite(value) else None
    except (TypeError, ValueError, OverflowError):
        ms = None
    if ms is None:
        raise _unreadable(path, f"has {what} {str(value)[:40]!r}, not a time in milliseconds")
    return ms


def _read_metric_file(path: Path) -> list[tuple[int, int, float]]:
    """Points of one metric file: lines of ``timestamp value [step]``."""
    points = []
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) not in (2, 3):
                raise ValueError
            points.append((int(parts[2]) if len(parts) > 2 else 0, int(parts[0]), float(parts[1])))
        except ValueError:
            raise _unreadable(path, f"line {number} is {line[:60]!r}, not `timestamp value [step]`") from None
    return points


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _unreadable(path, "is not UTF-8 text") from None
    except OSError as exc:
        raise _unreadable(path, f"cannot be read ({exc.strerror})") from None


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []


def _read_values(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): _read_text(p) for p in _files(folder)}


_INT64 = 2**63


def _typed(value: str) -> Any:
    """MLflow stores params as strings; numbers become numbers again so filters like params.lr > 0.01 work.

    Only numbers that survive the trip: an integer beyond 64 bits, or a float that is not finite, stays text.
    """
    try:
        number = int(value)
        return number if -_INT64 <= number < _INT64 else value
    except ValueError:
        pass
    try:
        real = float(value)
        return real if math.isfinite(real) else value
    except ValueError:
        pass
    return {"true": True, "false": False, "True": True, "False": False}.get(value, value)


def import_runs(source: str, store: Store, project: str | None = None) -> list[dict[str, Any]]:
    """Copy MLflow runs into ``store``; return one row per run (imported or skipped as already there)."""
    known = _imported_mlflow_runs(store)
    results = []
    for mlrun in read_runs(source):
        marker = f"mlflow:{mlrun.run_id}"
        existing = known.get(mlrun.run_id)
        if existing is not None and import_incomplete(existing):
            discard_incomplete(store, existing)  # an import killed half-way: do it again
            existing = None
        if existing is not None:
            results.append({"mlflow_run_id": mlrun.run_id, "id": existing.id, "name": mlrun.name, "imported": False})
            continue
        user_tags = [f"{k}={v}" for k, v in sorted(mlrun.tags.items()) if not k.startswith("mlflow.")]
        system_tags = {k: v for k, v in mlrun.tags.items() if k.startswith("mlflow.")}
        start = mlrun.start_ms / 1000 if mlrun.start_ms else time.time()
        end = int(mlrun.end_ms) / 1000 if mlrun.end_ms else start
        status = _STATUS.get(str(mlrun.status).upper())
        if status is None:
            raise ConfigError(f"MLflow run {mlrun.run_id[:40]!r} in {source} has status {str(mlrun.status)[:40]!r}, "
                              f"not one of {', '.join(_STATUS)}", "fix or delete that run in MLflow, then import again")
        record = validate_record({
            "id": uuid.uuid4().hex, "name": mlrun.name, "project": project or mlrun.experiment,
            "status": status, "created_at": start, "ended_at": end, "heartbeat_at": end,
            "config": {k: _typed(v) for k, v in sorted(mlrun.params.items())}, "tags": [*user_tags, marker],
            "environment": {"imported_from": "mlflow", "mlflow_run_id": mlrun.run_id, "mlflow_tags": system_tags}},
            f"MLflow run {mlrun.run_id[:40]!r} in {source} cannot be imported",
            "fix or delete that run in MLflow, then import again")
        series = []
        for key, points in sorted(mlrun.metrics.items()):
            if points:
                steps, stamps, values = zip(*points)
                times = np.asarray(stamps, np.float64) / 1000
                if not np.isfinite(times).all():
                    raise ConfigError(f"MLflow run {mlrun.run_id[:40]!r}: metric {key!r} has a timestamp that is "
                                      "not a finite number", "fix or delete that run in MLflow, then import again")
                series.append(MetricSeries(key, _int64(steps, key, mlrun.run_id), times,
                                           np.asarray(values, np.float64)))
        begin_import(store, record)  # hidden until its points are in: a killed import leaves no half run
        try:
            store.log_batch(record.id, series)
            finish_import(store, record)
        except BaseException:
            store.delete_run(record.id)
            raise
        known[mlrun.run_id] = record
        results.append({"mlflow_run_id": mlrun.run_id, "id": record.id, "name": mlrun.name, "imported": True})
    return results


def _int64(steps: tuple[int, ...], key: str, run_id: str) -> np.ndarray:
    try:
        return np.asarray(steps, np.int64)
    except OverflowError:
        raise ConfigError(f"MLflow run {run_id[:40]!r}: metric {key!r} has a step beyond 64 bits",
                          "fix or delete that run in MLflow, then import again") from None


def _imported_mlflow_runs(store: Store) -> dict[str, RunRecord]:
    """MLflow run id -> the striate run imported from it, compared exactly (no query string is built from it)."""
    found: dict[str, RunRecord] = {}
    for record in store.list_runs():
        env = record.environment if isinstance(record.environment, dict) else {}
        mlflow_id = env.get("mlflow_run_id")
        if env.get("imported_from") == "mlflow" and isinstance(mlflow_id, str) and f"mlflow:{mlflow_id}" in record.tags:
            found.setdefault(mlflow_id, record)
    return found
