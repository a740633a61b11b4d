"""Reading runs back: ``striate.Api(store).runs()`` and ``.run(id).history(key)``."""

from __future__ import annotations

import os
from typing import Any

from striate.tracking.store import MetricSeries, RunRecord, Store, open_store


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
