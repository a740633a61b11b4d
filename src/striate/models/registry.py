"""The model registry: every architecture registers a builder under a name, with one record of its facts.

A record (``ModelInfo``) holds what is known about an architecture without building it:
design and minimum input sizes, reference parameter and multiply-add counts, the first
convolution and the classifier layers. Weight loading (train/pretrained.py), the classifier
reset below, ``striate models`` and the tests all read it. The architecture modules are
imported explicitly by ``striate.models`` (its ``__init__``); this module imports none.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from striate.errors import ModelError

if TYPE_CHECKING:
    from torch import nn

SPEC_SUFFIXES = (".yaml", ".yml", ".json")  # a model name ending so is a layer-spec file (models/spec.py)
INFO_ATTRIBUTE = "model_info"  # the attribute ``create`` sets on every model it builds (as timm's pretrained_cfg)


def is_spec_path(name: object) -> bool:
    """True when ``name`` is a layer-spec file name (.yaml, .yml, .json, any case) rather than a registered model."""
    return isinstance(name, str) and name.lower().endswith(SPEC_SUFFIXES)


@dataclass(frozen=True)
class Layer:
    """A layer a record names: its module path and its first tensor's shape at the reference channels/classes."""

    name: str  # module path, e.g. "features.0" (``model.get_submodule(name)``)
    shape: tuple[int, ...]  # conv: out x in x kh x kw; classifier: classes x in_features
    trainable: bool = True  # False for LeNet-1998's fixed RBF centres (a buffer, not a parameter)
    output_size: int | None = None  # first conv: the side of its output map at the design input size

    @property
    def weight_key(self) -> str:
        """The state_dict key of the layer's weight (``features.0.weight``)."""
        return f"{self.name}.{'weight' if self.trainable else 'prototypes'}"


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one architecture, declared once beside its builder."""

    name: str
    builder: Callable[..., nn.Module] | str  # the builder, or "module:function" imported when first needed
    input_size: int  # the side, in pixels, of the square input the architecture was designed for
    min_input_size: int  # the smallest side the network accepts
    summary: str
    small_input_min_size: int | None = None  # the smallest side with the small-input variant (small_input=True)
    reference_channels: int = 1  # the setting the reference counts below are for (3 / 1000 for ImageNet nets)
    reference_classes: int = 10
    parameters: int | None = None  # trainable parameters at the reference setting, default options
    macs: int | None = None  # multiply-adds per image at input_size, reference setting (torchvision's convention)
    first_conv: Layer | None = None
    classifier: Layer | None = None  # the output layer fine-tuning replaces
    aux_classifiers: tuple[Layer, ...] = ()  # output layers of auxiliary heads, absent when built without them
    classifier_init: Callable[[nn.Module], None] | str | None = None  # initialises a new head ("module:function")
    paper: str | None = None

    def make_builder(self) -> Callable[..., nn.Module]:
        """The builder function (imported now when the record names it as ``"module:function"``)."""
        return _resolve(self.builder)

    def init_classifier(self) -> Callable[[nn.Module], None] | None:
        """The architecture's initialisation for a new classifier layer, or None for PyTorch's default."""
        return None if self.classifier_init is None else _resolve(self.classifier_init)

    def min_size(self, options: dict[str, Any] | None = None) -> int:
        """The smallest input side for a model built with ``options``."""
        if options and options.get("small_input") and self.small_input_min_size is not None:
            return self.small_input_min_size
        return self.min_input_size

    @property
    def classifiers(self) -> tuple[Layer, ...]:
        """The main classifier, then the auxiliary ones."""
        return ((self.classifier,) if self.classifier else ()) + self.aux_classifiers

    def count_parameters(self, channels: int, classes: int) -> int | None:
        """Trainable parameters for ``channels`` inputs and ``classes`` outputs, from the record alone."""
        if self.parameters is None or self.first_conv is None:
            return None
        per_channel = math.prod(self.first_conv.shape) // self.first_conv.shape[1]
        per_class = sum(math.prod(c.shape[1:]) + 1 for c in self.classifiers if c.trainable)  # weights + bias
        return (self.parameters + per_channel * (channels - self.reference_channels)
                + per_class * (classes - self.reference_classes))

    def count_macs(self, channels: int, classes: int) -> int | None:
        """Multiply-adds per image at the design size for ``channels`` / ``classes``, from the record alone."""
        if self.macs is None or self.first_conv is None or self.first_conv.output_size is None:
            return None
        per_channel = math.prod(self.first_conv.shape) // self.first_conv.shape[1] * self.first_conv.output_size ** 2
        # Only the main classifier runs at inference; the RBF output is not a multiply-add layer.
        per_class = self.classifier.shape[1] if self.classifier and self.classifier.trainable else 0
        return (self.macs + per_channel * (channels - self.reference_channels)
                + per_class * (classes - self.reference_classes))


def _resolve(target: Callable[..., Any] | str) -> Callable[..., Any]:
    if callable(target):
        return target
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)  # type: ignore[no-any-return]


_REGISTRY: dict[str, ModelInfo] = {}


def add(entry: ModelInfo) -> None:
    """Register a record whose builder may be named lazily (``"module:function"``); names are unique."""
    existing = _REGISTRY.get(entry.name)
    if existing is not None and existing.builder != entry.builder:
        raise ModelError(f"model name {entry.name!r} is registered twice", "give the new model another name")
    _REGISTRY[entry.name] = entry


def register_model(name: str, *, input_size: int, min_input_size: int, summary: str,
                   **facts: Any) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``builder(num_classes=..., in_channels=..., **options)`` under ``name`` with its record.

    ``facts`` are ``ModelInfo``'s other fields (parameters, first_conv, classifier, ...);
    ``small_input_min_size`` declares that the builder accepts ``small_input=True``.
    """

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        add(ModelInfo(name, builder, input_size, min_input_size, summary, **facts))
        return builder

    return decorate


def names() -> list[str]:
    """The names of all registered models, sorted."""
    return sorted(_REGISTRY)


def registered(name: str) -> ModelInfo:
    """The record of registered model ``name``; a ModelError naming close matches when unknown."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), _REGISTRY, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"choose one of: {', '.join(sorted(_REGISTRY))}"
        raise ModelError(f"unknown model {name!r}", f"{hint} (`striate models` lists them)") from None


def build(entry: ModelInfo, *, num_classes: int = 10, in_channels: int = 1, **options: Any) -> nn.Module:
    """Build ``entry``'s model after checking the options against its builder's signature; tag it with ``entry``."""
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ModelError(f"num_classes must be a positive integer, got {num_classes!r}", "pass e.g. num_classes=10")
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ModelError(f"in_channels must be a positive integer, got {in_channels!r}",
                         "pass 1 for greyscale, 3 for RGB")
    builder = entry.make_builder()
    signature = inspect.signature(builder)
    try:
        signature.bind(num_classes=num_classes, in_channels=in_channels, **options)
    except TypeError as exc:
        valid = [p for p in signature.parameters if p not in ("num_classes", "in_channels")]
        bad = [o for o in options if o not in signature.parameters]
        what = f"invalid option{'s' if len(bad) > 1 else ''} {', '.join(bad)}" if bad else f"invalid options ({exc})"
        raise ModelError(f"{what} for model {entry.name!r}",
                         f"valid options: {', '.join(valid)}" if valid else "this model takes no options") from None
    # Only a mismatch with the signature is the caller's mistake; a TypeError raised inside the builder
    # (a bad option value, a bug) propagates as it is.
    model = builder(num_classes=num_classes, in_channels=in_channels, **options)
    setattr(model, INFO_ATTRIBUTE, entry)
    return model


def info_of(model: nn.Module) -> ModelInfo:
    """The record ``striate.models.create`` attached to ``model``; a ModelError for a model built otherwise."""
    entry = getattr(model, INFO_ATTRIBUTE, None)
    if not isinstance(entry, ModelInfo):
        raise ModelError(f"this {type(model).__name__} was not built by striate.models.create, so its layer "
                         "names are unknown", "build it with striate.models.create(name, ...), or pass the "
                         "record: info=striate.models.info(name)")
    return entry


def reset_classifier(model: nn.Module, num_classes: int, info: ModelInfo | None = None) -> nn.Module:
    """Replace ``model``'s output layer(s) named by its record for ``num_classes`` classes (fine-tuning).

    The new layers keep the old ones' device and dtype and get the architecture's own
    initialisation (``classifier_init``); auxiliary heads the model was built without are skipped.
    """
    from torch import nn

    entry = info or info_of(model)
    if entry.classifier is None:
        raise ModelError(f"model {entry.name!r} has no classifier layer to replace",
                         "end the network in a linear layer (`linear: classes` in a spec)")
    for layer in entry.classifiers:
        try:
            old = model.get_submodule(layer.name)
        except AttributeError:
            if layer is entry.classifier:
                raise ModelError(f"model {entry.name!r} has no layer {layer.name!r}", "report this model") from None
            continue  # an auxiliary head the model was built without
        if isinstance(old, nn.Linear):
            new: nn.Module = nn.Linear(old.in_features, num_classes, bias=old.bias is not None,
                                       device=old.weight.device, dtype=old.weight.dtype)
            init = entry.init_classifier()
            if init is not None:
                init(new)
        elif callable(resize := getattr(old, "with_classes", None)):
            new = resize(num_classes)  # a head with its own rule (LeNet-1998's fixed RBF centres)
        else:
            raise ModelError(f"cannot resize {entry.name}'s classifier {layer.name} ({type(old).__name__})",
                             "report this model")
        model.set_submodule(layer.name, new)
    return model


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """The number of (trainable) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
