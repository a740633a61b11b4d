"""The model registry: every architecture registers a builder under a name.

Model modules in this package are discovered and imported on first use, so
adding an architecture means adding one module that calls ``register_model``.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from striate.errors import ModelError

if TYPE_CHECKING:
    from torch import nn

# Modules that hold tooling, not architectures: not imported by discovery.
_INFRA_MODULES = {"registry", "spec", "inspect", "diagram", "export"}


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one architecture."""

    name: str
    builder: Callable[..., nn.Module]
    input_size: int  # the side, in pixels, of the square input the architecture was designed for
    min_input_size: int  # the smallest side the network accepts
    summary: str
    small_input_min_size: int | None = None  # the smallest side with the small-input variant (small_input=True)

    def min_size(self, options: dict[str, Any] | None = None) -> int:
        """The smallest input side for a model built with ``options``."""
        if options and options.get("small_input") and self.small_input_min_size is not None:
            return self.small_input_min_size
        return self.min_input_size


_REGISTRY: dict[str, ModelInfo] = {}
SPEC_SUFFIXES = (".yaml", ".yml", ".json")  # a model name ending so is a layer-spec file (models/spec.py)
_discovered = False


def register_model(
    name: str, *, input_size: int, min_input_size: int, summary: str, small_input_min_size: int | None = None
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``builder(num_classes=..., in_channels=..., **options)`` under ``name``.

    ``small_input_min_size`` declares that the builder accepts ``small_input=True`` (a stem for
    small images) and the smallest side it then takes.
    """

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            raise ModelError(f"model name {name!r} is registered twice", "give the new model another name")
        _REGISTRY[name] = ModelInfo(name, builder, input_size, min_input_size, summary, small_input_min_size)
        return builder

    return decorate


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    import striate.models as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in _INFRA_MODULES and not module.name.startswith("_"):
            importlib.import_module(f"striate.models.{module.name}")
    _discovered = True


def names() -> list[str]:
    """The names of all registered models, sorted."""
    _discover()
    return sorted(_REGISTRY)


def info(name: str) -> ModelInfo:
    """The registry entry for ``name`` (or a layer-spec file path); a ModelError naming close matches when unknown."""
    if isinstance(name, str) and name.lower().endswith(SPEC_SUFFIXES):
        from striate.models.spec import spec_info  # imported on use: it needs torch

        return spec_info(name)
    _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"choose one of: {', '.join(sorted(_REGISTRY))}"
        raise ModelError(f"unknown model {name!r}", f"{hint} (`striate models` lists them)") from None


def create(name: str, *, num_classes: int = 10, in_channels: int = 1, **options: Any) -> nn.Module:
    """Build model ``name`` (registered, or a layer-spec file) for ``num_classes`` classes, ``in_channels`` channels."""
    entry = info(name)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ModelError(f"num_classes must be a positive integer, got {num_classes!r}", "pass e.g. num_classes=10")
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ModelError(f"in_channels must be a positive integer, got {in_channels!r}",
                         "pass 1 for greyscale, 3 for RGB")
    try:
        return entry.builder(num_classes=num_classes, in_channels=in_channels, **options)
    except TypeError as exc:
        raise ModelError(f"invalid option for model {name!r}: {exc}", "check the model's options") from None


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """The number of (trainable) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
