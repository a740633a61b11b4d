"""Layer tables: output shape, parameters and multiply-adds of every layer, from one forward pass.

Multiply-adds (MACs) follow the convention of torchvision's published "GFLOPS" (computed
with a FLOP counter that counts only matrix multiplies and convolutions, one per
multiply-add): Conv2d (any groups, ConvTranspose too) and Linear count
``outputs x inputs-per-output``; biases, activations, pooling, BatchNorm, LRN,
dropout, concatenation and residual additions count zero. With that rule torchvision's
AlexNet, VGG-16 and GoogLeNet come out at 0.714, 15.470 and 1.498 G, as published.
Counting one operation per pooling-window element would add 0.1% (AlexNet), 0.04%
(VGG-16) and 0.8% (GoogLeNet); one per BatchNorm output another 0.2% (GoogLeNet).

Models can be inspected on the ``meta`` device (no memory, no arithmetic), which makes
even VGG-19 at 224x224 take milliseconds; ``models.inspect.summarize`` does that for a model
name. This module imports nothing from ``striate.models``, so layer specs can use it too.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

import torch
from torch import nn

from striate.errors import ModelError


@dataclass
class LayerRow:
    """One executed leaf module: where it sits, what it is, what it produces and costs."""

    name: str  # dotted module path, e.g. "features.0"
    type: str  # module class, e.g. "Conv2d"
    output_shape: tuple[int, ...] | None  # without the batch dimension
    parameters: int  # counted at the module's first call only, so the column sums to the total
    macs: int  # multiply-adds per image


@dataclass
class LayerTable:
    """Rows in execution order plus totals for one input shape."""

    input_shape: tuple[int, ...]
    rows: list[LayerRow] = field(default_factory=list)
    parameters: int = 0  # every parameter of the model, including modules not run (auxiliary heads)
    macs: int = 0
    output_shape: tuple[int, ...] | None = None

    def __iter__(self) -> Iterator[LayerRow]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {"input_shape": list(self.input_shape), "output_shape": _list(self.output_shape),
                "parameters": self.parameters, "macs": self.macs,
                "layers": [{**asdict(r), "output_shape": _list(r.output_shape)} for r in self.rows]}


def layer_macs(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> int:
    """Multiply-adds one call of ``module`` did for a batch of one (see the module docstring)."""
    if not isinstance(output, torch.Tensor) or not inputs or not isinstance(inputs[0], torch.Tensor):
        return 0
    batch = max(inputs[0].shape[0], 1) if inputs[0].dim() > 1 else 1
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        per_input = module.out_channels // module.groups * math.prod(module.kernel_size)
        return inputs[0].numel() // batch * per_input
    if isinstance(module, nn.modules.conv._ConvNd):
        per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
        return output.numel() // batch * per_output
    if isinstance(module, nn.Linear):
        return output.numel() // batch * module.in_features
    if isinstance(module, nn.Bilinear):
        return output.numel() // batch * module.in1_features * module.in2_features
    return 0


def layer_type(module: nn.Module) -> str:
    """The layer's kind as users know it: a speed-only subclass of a torch layer shows as that layer."""
    for cls in type(module).__mro__:
        if cls.__module__.startswith("torch.nn") and cls is not nn.Module:
            return cls.__name__
    return type(module).__name__


def layer_table(model: nn.Module, input_shape: tuple[int, ...]) -> LayerTable:
    """Run one image of ``input_shape`` (C, H, W) through ``model`` in eval mode and tabulate its leaf modules."""
    table = LayerTable(tuple(input_shape))
    seen: set[int] = set()
    names = {id(m): n for n, m in model.named_modules()}

    def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        params = 0 if id(module) in seen else sum(p.numel() for p in module.parameters())
        seen.add(id(module))
        shape = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else None
        table.rows.append(LayerRow(names[id(module)] or layer_type(module), layer_type(module), shape,
                                   params, layer_macs(module, inputs, output)))

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            out = model(torch.zeros(1, *input_shape, device=device))
    except RuntimeError as exc:
        shape = "x".join(map(str, input_shape))
        raise ModelError(f"the model cannot run on a {shape} input: {str(exc).splitlines()[0]}",
                         "give an input shape it was built for (its channels, at least its minimum size)") from None
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    if isinstance(out, torch.Tensor):
        table.output_shape = tuple(out.shape[1:])
    table.parameters = sum(p.numel() for p in model.parameters())
    table.macs = sum(r.macs for r in table.rows)
    return table


def _list(shape: tuple[int, ...] | None) -> list[int] | None:
    return None if shape is None else list(shape)
