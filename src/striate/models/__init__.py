"""CNN architectures, built by name: ``striate.models.create("lenet5", num_classes=10)``."""

from striate.models.registry import (
    SPEC_SUFFIXES,
    ModelInfo,
    count_parameters,
    create,
    info,
    names,
    register_model,
)

__all__ = ["SPEC_SUFFIXES", "ModelInfo", "count_parameters", "create", "info", "names", "register_model"]
