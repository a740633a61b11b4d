"""striate: build, train, track and reproduce CNNs for image classification.

``import striate`` stays light: torch is imported only by the modules that train.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Api", "Run", "__version__", "errors", "init", "log", "train"]

if TYPE_CHECKING:
    from striate.tracking import Api, Run, init, log
    from striate.train.engine import train


def __getattr__(name: str) -> Any:
    if name in ("Api", "Run", "init", "log"):
        import striate.tracking as tracking

        return getattr(tracking, name)
    if name == "train":
        import striate.train as train  # the package is callable: striate.train(config) trains

        return train
    if name == "errors":
        import striate.errors as errors

        return errors
    raise AttributeError(f"module 'striate' has no attribute {name!r}")
