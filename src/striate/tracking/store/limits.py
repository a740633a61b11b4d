"""Checking text against the store's column widths (``schema.LIMITS``) where it enters a store.

SQLite ignores a column's width and takes a NUL character; PostgreSQL refuses both. Checking at
the door, with one set of limits, keeps a run recorded locally sendable to a server later.
"""

from __future__ import annotations

from typing import Any, Iterable

from striate.errors import ConfigError
from striate.tracking.store.schema import LIMITS, flatten_params

_TEXT_FIX = "remove the NUL character or the lone surrogate"


def text_problem(what: str, value: Any, limit: str | None) -> tuple[str, str] | None:
    """(problem, fix) when ``value`` is text longer than ``LIMITS[limit]`` (None: any length) or text no
    store can hold (a NUL character, which PostgreSQL refuses; a lone surrogate, not UTF-8); None when it fits."""
    if not isinstance(value, str):
        return None
    if limit is not None and len(value) > LIMITS[limit]:
        return (f"{what} {value[:40] + '…'!r} is {len(value)} characters long, over the store's {LIMITS[limit]}",
                f"shorten it: the store's columns hold at most {LIMITS[limit]} characters "
                "(a PostgreSQL store refuses more)")
    if "\x00" in value:
        return f"{what} {value[:40]!r} contains a NUL character, which a PostgreSQL store cannot hold", _TEXT_FIX
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"{what} {value[:40]!r} is not valid Unicode text (it holds a lone surrogate)", _TEXT_FIX
    return None


def check_length(what: str, value: Any, limit: str | None) -> None:
    """ConfigError when ``value`` is text longer than ``LIMITS[limit]`` or text no store can hold."""
    found = text_problem(what, value, limit)
    if found:
        raise ConfigError(*found)


def check_keys(what: str, keys: Iterable[Any]) -> None:
    """ConfigError for the first param or metric key longer than the key column (or holding a NUL)."""
    for key in keys:
        check_length(what, key, "key")


def check_tags(tags: Iterable[Any]) -> None:
    """ConfigError for a tag that is not text, is blank, holds a control character or is too long."""
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip():
            raise ConfigError("a tag is empty", "give tags with at least one visible character")
        if any(ch < " " or ch == "\x7f" for ch in tag):
            raise ConfigError(f"the tag {tag[:40]!r} holds a control character (a newline, a tab, ...)",
                              "give tags of visible characters and spaces")
        check_length("tag", tag, "key")


def record_problem(record: Any) -> tuple[str, str] | None:
    """(problem, fix) for the first field of a run record that a store cannot hold; None when all fit."""

    checks: list[tuple[str, Any, str | None]] = [
        ("run id", record.id, "id"), ("reproduction_of", record.reproduction_of, "id"),
        ("name", record.name, "name"), ("project", record.project, "name"), ("model", record.model, "name"),
        ("host", record.host, "host"), ("notes", record.notes, None), ("error", record.error, None)]
    config = record.config if isinstance(record.config, dict) else {}
    checks += [("config key", key, "key") for key in flatten_params(config)]
    checks += [("artifact path", a.get("path"), "artifact_path") for a in record.artifacts if isinstance(a, dict)]
    for what, value, limit in checks:
        found = text_problem(what, value, limit)
        if found:
            return found
    return None


def check_record(record: Any) -> None:
    """ConfigError when a run record holds text its store's columns cannot hold."""
    found = record_problem(record)
    if found:
        raise ConfigError(*found)
