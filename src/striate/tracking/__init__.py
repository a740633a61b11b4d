"""Experiment tracking: the run client, the read API and the stores.

The names below are imported on first use (module ``__getattr__``): the read-only commands import
``striate.tracking.store`` and must not pay for the run client's capture and thread machinery
(``striate.tracking.run``), issue 11.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from striate.tracking.api import Api, RunView
    from striate.tracking.run import Run, active_run, init, log

__all__ = ["Api", "Run", "RunView", "active_run", "init", "log"]

_HOMES = {"Api": "striate.tracking.api", "RunView": "striate.tracking.api", "Run": "striate.tracking.run",
          "active_run": "striate.tracking.run", "init": "striate.tracking.run", "log": "striate.tracking.run"}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'striate.tracking' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
