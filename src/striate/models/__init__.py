"""CNN architectures, built by name: ``striate.models.create("lenet5", num_classes=10)``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from striate.models.records import RECORDS
from striate.models.registry import (
    SPEC_SUFFIXES,
    Layer,
    ModelInfo,
    count_parameters,
    info_of,
    is_spec_path,
    names,
    register_model,
    reset_classifier,
)
from striate.models.registry import add as _add
from striate.models.registry import build as _build
from striate.models.registry import registered as _registered

# The built-in records: torch-free; each architecture module is imported when its first model is built.
for _record in RECORDS:
    _add(_record)

if TYPE_CHECKING:
    from torch import nn


def info(name: str) -> ModelInfo:
    """The record for ``name`` (a registered model or a layer-spec file); a ModelError naming close matches."""
    if is_spec_path(name):
        from striate.models.spec import spec_info  # torch: only for spec files

        return spec_info(name)
    return _registered(name)


def create(name: str, *, num_classes: int = 10, in_channels: int = 1, **options: Any) -> nn.Module:
    """Build model ``name`` (registered, or a layer-spec file) for ``num_classes`` classes, ``in_channels`` channels."""
    return _build(info(name), num_classes=num_classes, in_channels=in_channels, **options)


__all__ = ["SPEC_SUFFIXES", "Layer", "ModelInfo", "count_parameters", "create", "info", "info_of", "is_spec_path",
           "names", "register_model", "reset_classifier"]
