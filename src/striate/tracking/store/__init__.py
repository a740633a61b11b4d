"""Tracking stores: one interface, several backends."""

from __future__ import annotations

import os
from pathlib import Path

from striate.tracking.store.base import MetricSeries, RunRecord, Store

DEFAULT_STORE = "striate-runs"


def default_store_location() -> str:
    """``$STRIATE_STORE`` or ``./striate-runs``."""
    return os.environ.get("STRIATE_STORE") or DEFAULT_STORE


def open_store(location: str | os.PathLike[str] | None = None) -> Store:
    """Open the store at ``location`` (a folder for the embedded SQLite store)."""
    from striate.tracking.store.sql import SqlStore

    return SqlStore.open_folder(Path(location or default_store_location()))


__all__ = ["DEFAULT_STORE", "MetricSeries", "RunRecord", "Store", "default_store_location", "open_store"]
