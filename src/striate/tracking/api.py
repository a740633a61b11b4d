"""Reading runs back: ``striate.Api(store).runs()`` and ``.run(id).history(key)``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from striate.errors import ConfigError
from striate.tracking.store import MetricSeries, RunRecord, Store, open_store
from striate.tracking.store.base import file_sha256


class RunView:
    """A recorded run, read from a store."""

    def __init__(self, store: Store, record: RunRecord) -> None:
        self._store = store
        self.record = record

    def __getattr__(self, name: str) -> Any:
        return getattr(self.record, name)

    def history(self, key: str, max_points: int | None = None) -> MetricSeries:
        """Steps, times and values of metric ``key``; at most ``max_points`` (extremes kept) when given."""
        return self._store.history(self.record.id, key, max_points=max_points)

    def __repr__(self) -> str:
        return f"<RunView {self.record.id[:8]} {self.record.name!r} {self.record.status}>"


class Api:
    """Read access to a store."""

    def __init__(self, store: str | os.PathLike[str] | Store | None = None) -> None:
        self.store = store if isinstance(store, Store) else open_store(store)

    def runs(self, where: str | None = None, sort: str | None = None, project: str | None = None,
             limit: int | None = None, include_archived: bool = False) -> list[RunView]:
        """Runs matching the filter ``where`` (see striate.tracking.query), ordered by ``sort`` (newest first)."""
        ids = self.store.search_runs(where=where, sort=sort, project=project, limit=limit,
                                     include_archived=include_archived)
        return [RunView(self.store, r) for r in self.store.get_runs(ids)]

    def run(self, run_id: str) -> RunView:
        """One run by id, unique id prefix or name."""
        return RunView(self.store, self.store.get_run(run_id))


def find_file(store: Store, path: str | os.PathLike[str]) -> tuple[str, list[dict[str, Any]]]:
    """The file's SHA-256 and every run it came from: as one of the run's artifacts, or as an export of
    the run (ONNX/TorchScript files, recorded in the run's summary by `striate export`)."""
    digest = file_sha256(Path(path))
    found: list[dict[str, Any]] = []
    for run_id, artifact in store.find_artifacts(digest):
        record = store.get_run(run_id)
        found.append({"id": record.id, "name": record.name, "status": record.status, "artifact": artifact})
    for record in store.list_runs():
        for entry in record.summary.get("exports") or []:
            if isinstance(entry, dict) and entry.get("sha256") == digest:
                found.append({"id": record.id, "name": record.name, "status": record.status,
                              "artifact": f"export: {entry.get('file')} ({entry.get('format')})"})
    return digest, found


def metric_history(store: Store, record: RunRecord, key: str, max_points: int | None = None) -> MetricSeries:
    """Steps, times and values of the run's metric ``key``; a ConfigError naming the closest key when the run
    has no such metric (an unknown key is a typo, not an empty history)."""
    if key not in record.metrics:
        import difflib

        keys = sorted(record.metrics)
        close = difflib.get_close_matches(key, keys, n=1, cutoff=0.4)
        if not keys:
            raise ConfigError(f"run {record.id[:8]} has no metrics", "pick a run that logged metrics")
        hint = f"did you mean {close[0]!r}? " if close else ""
        shown = ", ".join(keys[:12]) + (f" and {len(keys) - 12} more" if len(keys) > 12 else "")
        raise ConfigError(f"run {record.id[:8]} has no metric {key!r}", f"{hint}its metrics: {shown}")
    return store.history(record.id, key, max_points=max_points)
