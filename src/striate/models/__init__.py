"""CNN architectures, built by name: ``striate.models.create("lenet5", num_classes=10)``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# The architectures, imported explicitly: each registers its builder and record on import.
from striate.models import alexnet, googlenet, lenet, lenet1998, vgg  # noqa: F401
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
from striate.models.registry import build as _build
from striate.models.registry import registered as _registered
from striate.models.spec import spec_info

if TYPE_CHECKING:
    from torch import nn


def info(name: str) -> ModelInfo:
    """The record for ``name`` (a registered model or a layer-spec file); a ModelError naming close matches."""
    return spec_info(name) if is_spec_path(name) else _registered(name)


def create(name: str, *, num_classes: int = 10, in_channels: int = 1, **options: Any) -> nn.Module:
    """Build model ``name`` (registered, or a layer-spec file) for ``num_classes`` classes, ``in_channels`` channels."""
    return _build(info(name), num_classes=num_classes, in_channels=in_channels, **options)


__all__ = ["SPEC_SUFFIXES", "Layer", "ModelInfo", "count_parameters", "create", "info", "info_of", "is_spec_path",
           "names", "register_model", "reset_classifier"]
