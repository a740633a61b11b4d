"""Build a CNN from a YAML/JSON layer spec, shape-checked for the input it will see.

A spec is a mapping with ``layers`` (a list) and optional ``name``, ``summary`` and
``input_size`` (the side of the square input it is designed for, default 32). Each
layer is a string (``relu``, ``flatten``), a one-key mapping ``{type: options}`` or
``{type: value}`` (shorthand for its main option: ``conv: 32``, ``dropout: 0.3``), or
a mapping with a ``type`` key. Input channels and features are inferred; ``out:
classes`` is the class count. A spec that never says ``classes`` gets a ``head``
(flatten + linear to the classes) appended. ``linear`` flattens a feature map itself.
``pool`` with ``output: N`` is adaptive (global pooling with ``output: 1``);
``inception: [[branch layers], ...]`` concatenates its branches on channels;
``residual: {body: [...], projection: auto}`` adds its input (or a strided 1x1
projection of it) to the body's output. See examples/my_cnn.yaml. Modules are named
by their 1-based position in the spec (``3``, ``5.b2.1``), so errors, the layer
table and the diagram's tooltips all point at the same layer.
"""

from __future__ import annotations

import difflib
import json
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from striate.errors import ModelError
from striate.models._layer_table import layer_table
from striate.models._spec_blocks import Inception, Residual, ScaledTanh, SpecNet
from striate.models.registry import Layer, ModelInfo, count_parameters
from striate.models.registry import is_spec_path as is_spec_path  # re-exported: defined once, in the registry

SPEC_KEYS = ("name", "summary", "input_size", "layers")
REQUIRED = object()
ACTIVATIONS: dict[str, Any] = {
    "relu": nn.ReLU, "relu6": nn.ReLU6, "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "gelu": nn.GELU,
    "silu": nn.SiLU, "mish": nn.Mish, "hardswish": nn.Hardswish, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus, "identity": nn.Identity, "scaled_tanh": None,  # built below: LeCun 1998's squashing
}
# Each layer type: its options with defaults (REQUIRED: must be given) and the option a bare value sets.
LAYERS: dict[str, tuple[dict[str, Any], str | None]] = {
    "conv": ({"out": REQUIRED, "kernel": 3, "stride": 1, "padding": 0, "dilation": 1, "groups": 1, "bias": True},
             "out"),
    "pool": ({"kind": "max", "kernel": 2, "stride": None, "padding": 0, "ceil_mode": False, "output": None},
             "kernel"),
    "maxpool": ({"kernel": 2, "stride": None, "padding": 0, "ceil_mode": False, "output": None}, "kernel"),
    "avgpool": ({"kernel": 2, "stride": None, "padding": 0, "ceil_mode": False, "output": None}, "kernel"),
    "batchnorm": ({"eps": 1e-5, "momentum": 0.1}, None),
    "lrn": ({"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}, "size"),  # AlexNet's constants
    "dropout": ({"p": 0.5}, "p"),
    "flatten": ({}, None),
    "linear": ({"out": REQUIRED, "in": None, "bias": True}, "out"),
    "activation": ({"fn": REQUIRED, "slope": 0.01}, "fn"),
    "inception": ({"branches": REQUIRED}, "branches"),
    "residual": ({"body": REQUIRED, "projection": None}, "body"),
}
Shape = tuple[int, ...]


# -- loading ----------------------------------------------------------------------------------------

def load_spec(path: str | Path) -> dict[str, Any]:
    """Read and check a layer-spec file; the returned dict can be stored with a run and rebuilt."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model spec file {str(path)!r} does not exist", "check the path (relative to this folder)")
    from striate import safe_yaml
    from striate.errors import ConfigError

    try:
        if path.suffix.lower() == ".json":
            with open(path, "rb") as fh:
                raw = fh.read(safe_yaml.MAX_BYTES + 1)
            if len(raw) > safe_yaml.MAX_BYTES:
                raise ModelError(f"model spec {path} is over the {safe_yaml.MAX_BYTES:,}-byte limit",
                                 "check that it is the file you meant")
            data = json.loads(raw)
        else:  # sizes, aliases and depth capped: a spec is a file someone may have sent you
            data = safe_yaml.load_path(path, "model spec")
    except ValueError as exc:
        raise ModelError(f"cannot parse model spec {path}: {str(exc).splitlines()[0]}",
                         "fix the file's YAML/JSON syntax") from None
    except ConfigError as exc:
        syntax = "not valid YAML" in exc.problem
        raise ModelError(f"cannot parse model spec {path}: {exc.problem}",
                         "fix the file's YAML/JSON syntax" if syntax else exc.fix) from None
    if isinstance(data, list):
        data = {"layers": data}
    check_spec(data, source=path.name)
    return {"name": path.stem, **data}


def check_spec(spec: Any, source: str = "spec") -> None:
    """Validate a spec's top level; the layers are checked when built (they need the input shape)."""
    if not isinstance(spec, dict) or "layers" not in spec:
        raise ModelError(f"{source}: a model spec needs a `layers:` list", "see examples/my_cnn.yaml")
    for key in spec:
        if key not in SPEC_KEYS:
            raise ModelError(f"{source}: unknown top-level key {key!r}", _choose(key, SPEC_KEYS))
    if not isinstance(spec["layers"], list) or not spec["layers"]:
        raise ModelError(f"{source}: `layers` must be a non-empty list", "list the layers, one `- type: ...` each")
    size = spec.get("input_size", 32)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ModelError(f"{source}: input_size must be a positive integer, got {size!r}", "e.g. input_size: 32")


def spec_info(path: str) -> ModelInfo:
    """The registry entry for a spec file: builder, design input size, and the smallest size it accepts."""
    spec = load_spec(path)
    size = spec.get("input_size", 32)

    def builder(*, num_classes: int = 10, in_channels: int = 1, input_size: int | None = None) -> SpecNet:
        return build_model(spec, num_classes=num_classes, in_channels=in_channels, input_size=input_size)

    return ModelInfo(path, builder, size, min_input_size(spec), spec.get("summary") or f"layer spec {Path(path).name}",
                     **_facts(spec, size))


def _facts(spec: dict[str, Any], size: int) -> dict[str, Any]:
    """The record's counts and layer names, from the spec built on the meta device at 1 (else 3) channels."""
    for channels in (1, 3):
        try:
            with torch.device("meta"):
                net = build_model(spec, num_classes=10, in_channels=channels)
            table = layer_table(net, (channels, size, size))
            break
        except ModelError:
            continue
    else:
        return {}  # building fails at the design size: the engine reports why when it builds
    first = next(((name, m) for name, m in net.named_modules() if isinstance(m, nn.Conv2d)), None)
    first_conv = None
    if first is not None:
        row = next((r for r in table if r.name == first[0]), None)
        side = row.output_shape[-1] if row is not None and row.output_shape else None
        first_conv = Layer(first[0], tuple(first[1].weight.shape), output_size=side)
    key = [k for k, m in net._modules.items() if not isinstance(m, nn.Flatten)][-1]
    last = net._modules[key]
    classifier = Layer(key, tuple(last.weight.shape)) if isinstance(last, nn.Linear) else None
    return {"reference_channels": channels, "reference_classes": 10, "parameters": count_parameters(net),
            "macs": table.macs, "first_conv": first_conv, "classifier": classifier}


def min_input_size(spec: dict[str, Any]) -> int:
    """The smallest square side the spec's network accepts (linear sizes fixed at its input_size)."""
    size = spec.get("input_size", 32)
    design = _Planner(spec, 10)
    try:
        in_channels = 1
        design.plan(spec["layers"], (in_channels, size, size), ())
    except ModelError:
        in_channels = 3  # a grouped first conv may need RGB input; fail with the 1-channel error otherwise
        try:
            design = _Planner(spec, 10)
            design.plan(spec["layers"], (in_channels, size, size), ())
        except ModelError:
            _Planner(spec, 10).plan(spec["layers"], (1, size, size), ())
    for side in range(1, size + 1):
        probe = _Planner(spec, 10, fixed=design.in_features)
        try:
            probe.plan(spec["layers"], (in_channels, side, side), ())
            return side
        except ModelError:
            continue
    return size


def build_model(spec: dict[str, Any], *, num_classes: int = 10, in_channels: int = 1,
                input_size: int | None = None) -> SpecNet:
    """Build the spec's network for ``in_channels`` x ``input_size``² inputs and ``num_classes`` outputs."""
    check_spec(spec, spec.get("name", "spec") if isinstance(spec, dict) else "spec")
    side = input_size or spec.get("input_size", 32)
    planner = _Planner(spec, num_classes)
    modules, shape = planner.plan(spec["layers"], (in_channels, side, side), ())
    modules = _finish(modules, shape, num_classes, planner.uses_classes, planner.prefix)
    return SpecNet(modules, spec, side)


def _finish(modules: OrderedDict[str, nn.Module], shape: Shape, num_classes: int, uses_classes: bool,
            prefix: str) -> OrderedDict[str, nn.Module]:
    """Make the network end in ``num_classes`` values: flatten a 1x1 map, or append the automatic head."""
    if shape == (num_classes,):
        return modules
    if len(shape) == 3 and shape[0] == num_classes and shape[1:] == (1, 1):
        modules["flatten"] = nn.Flatten()
        return modules
    if uses_classes:
        raise ModelError(f"{prefix}the network ends in {_fmt(shape)} values but must end in num_classes="
                         f"{num_classes}", "end with `linear: classes` (or a conv to `classes` on a 1x1 map)")
    if len(shape) == 3:
        modules["head_flatten"] = nn.Flatten()
    modules["head"] = nn.Linear(math.prod(shape), num_classes)
    return modules


# -- planning: shape inference and module construction ----------------------------------------------

@dataclass
class _Planner:
    spec: dict[str, Any]
    num_classes: int
    fixed: dict[tuple[int, ...], int] = field(default_factory=dict)  # in_features a probe must match
    in_features: dict[tuple[int, ...], int] = field(default_factory=dict)
    uses_classes: bool = False
    flat_from: Shape | None = None

    @property
    def prefix(self) -> str:
        return f"{self.spec.get('name', 'spec')}: "

    def plan(self, layers: Any, shape: Shape, path: tuple[int, ...],
             where: str = "") -> tuple[OrderedDict[str, nn.Module], Shape]:
        """Modules for ``layers`` applied to ``shape`` (no batch dimension), and the output shape."""
        if not isinstance(layers, list) or not layers:
            raise ModelError(f"{self.prefix}{where or 'layers'}: expected a non-empty list of layers",
                             "write one `- type: options` line per layer")
        modules: OrderedDict[str, nn.Module] = OrderedDict()
        for i, raw in enumerate(layers, start=1):
            kind, opts = _parse(raw, f"{self.prefix}{where}layer {i}")
            label = f"{self.prefix}{where}layer {i} ({kind})"
            if kind == "linear" and len(shape) == 3:
                modules[f"{i}_flatten"] = nn.Flatten()
            before = shape
            module, shape = self._layer(kind, opts, shape, (*path, i), label, where + f"layer {i} ({kind}) › ")
            modules[str(i)] = module
            # Remember the map a vector was flattened from, so a linear's error can show "32x7x7=1568".
            if kind == "flatten" and len(before) == 3:
                self.flat_from = before
            elif kind not in ("dropout", "batchnorm", "activation"):
                self.flat_from = None
        return modules, shape

    def _out(self, value: Any, label: str) -> int:
        if value == "classes":
            self.uses_classes = True
            return self.num_classes
        return _positive(value, "out", label)

    def _layer(self, kind: str, o: dict[str, Any], shape: Shape, path: tuple[int, ...], label: str,
               inner: str) -> tuple[nn.Module, Shape]:
        if kind in ("conv", "pool", "maxpool", "avgpool", "lrn", "inception", "residual") and len(shape) != 3:
            raise ModelError(f"{label}: needs a CxHxW feature map but receives {_fmt(shape)} features",
                             "move it before the flatten/linear layers")
        if kind == "conv":
            c, h, w = shape
            out, groups = self._out(o["out"], label), _positive(o["groups"], "groups", label)
            if c % groups or out % groups:
                raise ModelError(f"{label}: groups={groups} must divide both its {c} input and {out} output channels",
                                 "change groups or out")
            k, s, d = _pair(o["kernel"], "kernel", label), _pair(o["stride"], "stride", label), _pair(
                o["dilation"], "dilation", label)
            if o["padding"] == "same":
                if s != (1, 1):
                    raise ModelError(f"{label}: padding 'same' needs stride 1", "give padding as a number")
                p: Any = "same"
                hw = (h, w)
            else:
                p = _pair(o["padding"], "padding", label, minimum=0)
                hw = _conv_out((h, w), k, s, p, d, label, shape)
            conv = nn.Conv2d(c, out, k, s, p, d, groups=groups, bias=_flag(o["bias"], "bias", label))
            return conv, (out, *hw)
        if kind in ("pool", "maxpool", "avgpool"):
            pool_kind = o.get("kind", kind[:3])
            if pool_kind not in ("max", "avg"):
                raise ModelError(f"{label}: kind must be max or avg, got {pool_kind!r}",
                                 _choose(pool_kind, ("max", "avg")))
            if o["output"] is not None:
                size = _pair(o["output"], "output", label)
                pool: nn.Module = nn.AdaptiveMaxPool2d(size) if pool_kind == "max" else nn.AdaptiveAvgPool2d(size)
                return pool, (shape[0], *size)
            k = _pair(o["kernel"], "kernel", label)
            s = k if o["stride"] is None else _pair(o["stride"], "stride", label)
            p = _pair(o["padding"], "padding", label, minimum=0)
            if p[0] * 2 > k[0] or p[1] * 2 > k[1]:
                raise ModelError(f"{label}: padding {p} is more than half the kernel {k}", "lower the padding")
            hw = _conv_out(shape[1:], k, s, p, (1, 1), label, shape, ceil=_flag(o["ceil_mode"], "ceil_mode", label))
            cls = nn.MaxPool2d if pool_kind == "max" else nn.AvgPool2d
            return cls(k, s, p, ceil_mode=_flag(o["ceil_mode"], "ceil_mode", label)), (shape[0], *hw)
        if kind == "batchnorm":
            bn = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
            return bn(shape[0], eps=_number(o["eps"], "eps", label),
                      # momentum: null is PyTorch's cumulative average
                      momentum=None if o["momentum"] is None else _number(o["momentum"], "momentum", label)), shape
        if kind == "lrn":
            return nn.LocalResponseNorm(_positive(o["size"], "size", label), _number(o["alpha"], "alpha", label),
                                        _number(o["beta"], "beta", label), _number(o["k"], "k", label)), shape
        if kind == "dropout":
            p_drop = o["p"]
            if not isinstance(p_drop, (int, float)) or not 0 <= p_drop < 1:
                raise ModelError(f"{label}: p must be a probability in [0, 1), got {p_drop!r}", "e.g. dropout: 0.5")
            return nn.Dropout(float(p_drop)), shape
        if kind == "flatten":
            return nn.Flatten(), (math.prod(shape),)
        if kind == "linear":
            features = math.prod(shape)
            expected = o["in"] if o["in"] is not None else self.fixed.get(path)
            if expected is not None and expected != features:
                source = shape if len(shape) == 3 else self.flat_from or shape
                got = _fmt(source) + (f"={features}" if len(source) > 1 else "")
                raise ModelError(f"{label}: expects {expected} inputs but receives {got}",
                                 f"set `in: {features}` or remove `in` to infer it, or change the layers before it")
            self.in_features[path] = features
            out = self._out(o["out"], label)
            return nn.Linear(features, out, bias=_flag(o["bias"], "bias", label)), (out,)
        if kind == "activation":
            fn = o["fn"]
            if fn not in ACTIVATIONS:
                raise ModelError(f"{label}: unknown activation {fn!r}", _choose(str(fn), ACTIVATIONS))
            if fn == "scaled_tanh":
                return ScaledTanh(), shape
            if fn == "leaky_relu":
                return nn.LeakyReLU(_number(o["slope"], "slope", label)), shape
            return ACTIVATIONS[fn](), shape
        if kind == "inception":
            return self._inception(o["branches"], shape, path, label, inner)
        return self._residual(o, shape, path, label, inner)

    def _inception(self, branches: Any, shape: Shape, path: tuple[int, ...], label: str,
                   inner: str) -> tuple[nn.Module, Shape]:
        if not isinstance(branches, list) or len(branches) < 2:
            raise ModelError(f"{label}: `branches` must list at least two layer lists",
                             "write branches: [[layers of branch 1], [layers of branch 2], ...]")
        built: OrderedDict[str, nn.Module] = OrderedDict()
        outs = []
        for b, layers in enumerate(branches, start=1):
            mods, out = self.plan(layers, shape, (*path, b), f"{inner}branch {b} › ")
            if len(out) != 3:
                raise ModelError(f"{label}: branch {b} ends in {_fmt(out)} features, not a feature map",
                                 "branches may not flatten")
            built[f"b{b}"] = nn.Sequential(mods)
            outs.append(out)
        if len({o[1:] for o in outs}) > 1:
            sizes = ", ".join(f"branch {b}: {_fmt(o)}" for b, o in enumerate(outs, start=1))
            raise ModelError(f"{label}: branch outputs differ in height/width ({sizes}), so they cannot be "
                             "concatenated", "give each branch padding (e.g. padding: same) and stride 1")
        return Inception(built), (sum(o[0] for o in outs), *outs[0][1:])

    def _residual(self, o: dict[str, Any], shape: Shape, path: tuple[int, ...], label: str,
                  inner: str) -> tuple[nn.Module, Shape]:
        body_mods, out = self.plan(o["body"], shape, (*path, 1), f"{inner}body › ")
        proj = o["projection"]
        projection: nn.Module | None = None
        if proj in (None, "none", False):
            if out != shape:
                raise ModelError(f"{label}: the body turns {_fmt(shape)} into {_fmt(out)}, so the input cannot be "
                                 "added to it", "add `projection: auto` or make the body keep the shape")
        elif proj == "auto":
            if len(out) != 3:
                raise ModelError(f"{label}: the body must end in a feature map", "do not flatten inside the body")
            stride = []
            for side_in, side_out in zip(shape[1:], out[1:]):
                s = next((s for s in range(1, side_in + 1) if (side_in - 1) // s + 1 == side_out), None)
                if s is None:
                    raise ModelError(f"{label}: no 1x1 strided projection maps {_fmt(shape)} to {_fmt(out)}",
                                     "give the projection as a layer list")
                stride.append(s)
            with_bn = any(_parse(x, label)[0] == "batchnorm" for x in o["body"])
            layers: list[nn.Module] = [nn.Conv2d(shape[0], out[0], 1, (stride[0], stride[1]), bias=not with_bn)]
            projection = nn.Sequential(*layers, *([nn.BatchNorm2d(out[0])] if with_bn else []))
        else:
            proj_mods, proj_out = self.plan(proj, shape, (*path, 2), f"{inner}projection › ")
            if proj_out != out:
                raise ModelError(f"{label}: the projection gives {_fmt(proj_out)} but the body gives {_fmt(out)}",
                                 "make both end in the same shape")
            projection = nn.Sequential(proj_mods)
        return Residual(nn.Sequential(body_mods), projection), out


# -- small helpers ----------------------------------------------------------------------------------

def _number(value: Any, name: str, label: str) -> float:
    """A real number option (eps, momentum, alpha, slope ...); a ModelError naming the layer otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ModelError(f"{label}: {name} must be a number, got {value!r}", f"e.g. {name}: 0.1")
    return float(value)


def _flag(value: Any, name: str, label: str) -> bool:
    """A yes/no option: YAML true/false only (the string "no" would otherwise read as true)."""
    if not isinstance(value, bool):
        raise ModelError(f"{label}: {name} must be true or false, got {value!r}", f"write {name}: false")
    return value


def _parse(raw: Any, where: str) -> tuple[str, dict[str, Any]]:
    """A layer entry as (type, options with defaults filled); unknown types and keys get close matches."""
    if isinstance(raw, str):
        kind, given = raw, {}
    elif isinstance(raw, dict) and "type" in raw:
        kind, given = raw["type"], {k: v for k, v in raw.items() if k != "type"}
    elif isinstance(raw, dict) and len(raw) == 1:
        kind, value = next(iter(raw.items()))
        given = {} if value is None else value if isinstance(value, dict) else {"<value>": value}
    else:
        raise ModelError(f"{where}: cannot read {raw!r} as a layer",
                         "write `- relu`, `- conv: {out: 32, kernel: 3}` or `- {type: conv, out: 32}`")
    if not isinstance(kind, str):
        raise ModelError(f"{where}: the layer type must be a name, got {kind!r}",
                         "write e.g. `- {type: conv, out: 32}`")
    if kind in ACTIVATIONS:
        kind, given = "activation", {"fn": kind, **given}
    if kind not in LAYERS:
        raise ModelError(f"{where}: unknown layer type {kind!r}", _choose(str(kind), [*LAYERS, *ACTIVATIONS]))
    defaults, main = LAYERS[kind]
    if "<value>" in given:
        if main is None:
            raise ModelError(f"{where} ({kind}): takes no value", f"write `- {kind}`")
        given = {main: given.pop("<value>")}
    for key in given:
        if key not in defaults:
            raise ModelError(f"{where} ({kind}): unknown option {key!r}", _choose(key, defaults))
    opts = {**defaults, **given}
    missing = [k for k, v in opts.items() if v is REQUIRED]
    if missing:
        raise ModelError(f"{where} ({kind}): missing option {missing[0]!r}", f"add `{missing[0]}: ...`")
    return kind, opts


def _choose(word: str, options: Any) -> str:
    close = difflib.get_close_matches(word, list(options), n=3)
    return f"did you mean {', '.join(close)}?" if close else f"use one of: {', '.join(options)}"


def _positive(value: Any, name: str, label: str, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ModelError(f"{label}: {name} must be an integer >= {minimum}, got {value!r}", f"e.g. {name}: 3")
    return value


def _pair(value: Any, name: str, label: str, minimum: int = 1) -> tuple[int, int]:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return _positive(value[0], name, label, minimum), _positive(value[1], name, label, minimum)
    v = _positive(value, name, label, minimum)
    return v, v


def _conv_out(hw: Shape, k: tuple[int, int], s: tuple[int, int], p: tuple[int, int], d: tuple[int, int],
              label: str, shape: Shape, ceil: bool = False) -> tuple[int, int]:
    out = []
    for size, kk, ss, pp, dd in zip(hw, k, s, p, d):
        span = size + 2 * pp - dd * (kk - 1) - 1
        n = (-(-span // ss) if ceil else span // ss) + 1
        if ceil and (n - 1) * ss >= size + pp:  # PyTorch drops a last window that starts in the padding
            n -= 1
        if span < 0 or n < 1:
            raise ModelError(f"{label}: its {kk}x{kk} window (padding {pp}) does not fit the {_fmt(shape)} input",
                             "use a smaller kernel or stride, more padding, fewer pooling layers before it, "
                             "or a larger input_size")
        out.append(n)
    return out[0], out[1]


def _fmt(shape: Shape) -> str:
    return "x".join(str(s) for s in shape)
