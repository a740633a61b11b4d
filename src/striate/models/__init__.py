"""CNN architectures, built by name: ``striate.models.create("lenet5", num_classes=10)``."""

from striate.models.registry import ModelInfo, count_parameters, create, info, names, register_model

__all__ = ["ModelInfo", "count_parameters", "create", "info", "names", "register_model"]
