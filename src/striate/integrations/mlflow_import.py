"""Bringing MLflow runs into striate: params, metrics (every point) and tags.

Reads MLflow's own storage directly — a database (``sqlite:///mlflow.db``, a ``.db`` file, or any
SQLAlchemy URL) or a file store folder (``mlruns/``) — so MLflow itself need not be installed.
Importing is idempotent: each imported run carries the tag ``mlflow:<run id>`` and is skipped
the next time.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import sqlalchemy as sa
import yaml

from striate.errors import ConfigError
from striate.tracking.store import MetricSeries, RunRecord, Store

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
    finally:
        engine.dispose()


def _read_file_store(root: Path) -> Iterator[MlflowRun]:
    experiment_dirs = [d for d in sorted(root.iterdir()) if (d / "meta.yaml").is_file()]
    if not experiment_dirs:
        raise ConfigError(f"{root} holds no MLflow experiments", "point at the mlruns folder itself")
    for exp_dir in experiment_dirs:
        exp_meta = yaml.safe_load((exp_dir / "meta.yaml").read_text()) or {}
        if exp_meta.get("lifecycle_stage", "active") != "active":
            continue
        for run_dir in sorted(d for d in exp_dir.iterdir() if (d / "meta.yaml").is_file()):
            meta = yaml.safe_load((run_dir / "meta.yaml").read_text()) or {}
            if meta.get("lifecycle_stage", "active") != "active":
                continue
            status = _FILE_STATUS.get(int(meta.get("status", 3)), "FINISHED")
            run = MlflowRun(str(meta.get("run_id") or run_dir.name), str(meta.get("run_name") or run_dir.name[:8]),
                            str(exp_meta.get("name", "default")), status, int(meta.get("start_time") or 0),
                            meta.get("end_time"))
            run.params = _read_values(run_dir / "params")
            run.tags = _read_values(run_dir / "tags")
            for metric_file in sorted(_files(run_dir / "metrics")):
                points = []
                for line in metric_file.read_text().splitlines():
                    parts = line.split()
                    if len(parts) >= 2:
                        points.append((int(parts[2]) if len(parts) > 2 else 0, int(parts[0]), float(parts[1])))
                run.metrics[str(metric_file.relative_to(run_dir / "metrics"))] = points
            yield run


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []


def _read_values(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in _files(folder)}


def _typed(value: str) -> Any:
    """MLflow stores params as strings; numbers become numbers again so filters like params.lr > 0.01 work."""
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    return {"true": True, "false": False, "True": True, "False": False}.get(value, value)


def import_runs(source: str, store: Store, project: str | None = None) -> list[dict[str, Any]]:
    """Copy MLflow runs into ``store``; return one row per run (imported or skipped as already there)."""
    results = []
    for mlrun in read_runs(source):
        marker = f"mlflow:{mlrun.run_id}"
        existing = store.search_runs(where=f'tags contains "{marker}"', include_archived=True)
        if existing:
            results.append({"mlflow_run_id": mlrun.run_id, "id": existing[0], "name": mlrun.name, "imported": False})
            continue
        user_tags = [f"{k}={v}" for k, v in sorted(mlrun.tags.items()) if not k.startswith("mlflow.")]
        system_tags = {k: v for k, v in mlrun.tags.items() if k.startswith("mlflow.")}
        start = mlrun.start_ms / 1000 if mlrun.start_ms else time.time()
        end = int(mlrun.end_ms) / 1000 if mlrun.end_ms else start
        run_id = uuid.uuid4().hex
        store.create_run(RunRecord(
            id=run_id, name=mlrun.name, project=project or mlrun.experiment,
            status=_STATUS.get(mlrun.status, "finished"), created_at=start, ended_at=end, heartbeat_at=end,
            config={k: _typed(v) for k, v in sorted(mlrun.params.items())}, tags=[*user_tags, marker],
            environment={"imported_from": "mlflow", "mlflow_run_id": mlrun.run_id, "mlflow_tags": system_tags}))
        series = []
        for key, points in sorted(mlrun.metrics.items()):
            if points:
                steps, stamps, values = zip(*points)
                series.append(MetricSeries(key, np.asarray(steps, np.int64), np.asarray(stamps, np.float64) / 1000,
                                           np.asarray(values, np.float64)))
        store.log_batch(run_id, series)
        results.append({"mlflow_run_id": mlrun.run_id, "id": run_id, "name": mlrun.name, "imported": True})
    return results
