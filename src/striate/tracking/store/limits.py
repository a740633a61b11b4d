"""Checking text against the store's column widths (``schema.LIMITS``) where it enters a store.

SQLite ignores a column's width; PostgreSQL refuses what is wider. Checking at the door, with
one set of limits, keeps a run recorded locally sendable to a server later.
"""

from __future__ import annotations

from typing import Any, Iterable

from striate.errors import ConfigError
from striate.tracking.store.schema import LIMITS

_FIX = "shorten it: the store's columns hold at most {limit} characters (a PostgreSQL store refuses more)"


def length_problem(what: str, value: Any, limit: str) -> str | None:
    """A one-line problem when ``value`` is text longer than ``LIMITS[limit]``; None when it fits."""
    if isinstance(value, str) and len(value) > LIMITS[limit]:
        shown = value[:40] + "…"
        return f"{what} {shown!r} is {len(value)} characters long, over the store's {LIMITS[limit]}"
    return None


def check_length(what: str, value: Any, limit: str) -> None:
    """ConfigError when ``value`` is text longer than ``LIMITS[limit]``."""
    problem = length_problem(what, value, limit)
    if problem:
        raise ConfigError(problem, _FIX.format(limit=LIMITS[limit]))


def check_keys(what: str, keys: Iterable[Any]) -> None:
    """ConfigError for the first param or metric key longer than the key column."""
    for key in keys:
        check_length(what, key, "key")


def record_problem(record: Any) -> tuple[str, int] | None:
    """The first field of a run record that a store's columns cannot hold, with the limit; None when all fit."""
    from striate.tracking.store.sql import flatten_params

    checks = [("run id", record.id, "id"), ("reproduction_of", record.reproduction_of, "id"),
              ("name", record.name, "name"), ("project", record.project, "name"), ("model", record.model, "name"),
              ("host", record.host, "host")]
    config = record.config if isinstance(record.config, dict) else {}
    checks += [("config key", key, "key") for key in flatten_params(config)]
    checks += [("artifact path", a.get("path"), "artifact_path") for a in record.artifacts if isinstance(a, dict)]
    for what, value, limit in checks:
        problem = length_problem(what, value, limit)
        if problem:
            return problem, LIMITS[limit]
    return None


def check_record(record: Any) -> None:
    """ConfigError when a run record holds text its store's columns cannot hold."""
    found = record_problem(record)
    if found:
        raise ConfigError(found[0], _FIX.format(limit=found[1]))
