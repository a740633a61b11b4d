"""Environment drift: how the packages of a recorded run differ from the ones installed now."""

from __future__ import annotations

from typing import Any


def package_drift(recorded: dict[str, str], current: dict[str, str]) -> dict[str, list[Any]]:
    """{package: [recorded version or None, current version or None]} for every difference."""
    names = sorted(set(recorded) | set(current))
    return {n: [recorded.get(n), current.get(n)] for n in names if recorded.get(n) != current.get(n)}


def describe(drift: dict[str, list[Any]], limit: int = 12) -> str:
    """One line: 'torch 2.13.0 -> 2.14.1, numpy missing -> 2.4.6, ... (+N more)'."""
    parts = [f"{name} {old or 'absent'} -> {new or 'absent'}" for name, (old, new) in list(drift.items())[:limit]]
    more = len(drift) - limit
    return ", ".join(parts) + (f" (+{more} more)" if more > 0 else "")
