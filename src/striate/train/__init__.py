"""The training engine: one loop that every entry point reuses.

``striate.train`` is both this package and the public training function: importing any module of
the package makes Python bind ``striate.train`` to the package, so the package itself is callable
and trains (``striate.train(config, run=..., callbacks=...)``), whatever was imported first.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _TrainPackage(types.ModuleType):
    def __call__(self, config: Any, **options: Any) -> Any:
        """Train ``config``: see :func:`striate.train.engine.train`."""
        from striate.train.engine import train

        return train(config, **options)


sys.modules[__name__].__class__ = _TrainPackage
