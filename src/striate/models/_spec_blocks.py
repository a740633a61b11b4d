"""The modules a layer spec builds: the network itself, inception and residual blocks, LeCun's tanh."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from striate.errors import ModelError


class ScaledTanh(nn.Module):
    """LeCun's squashing function f(a) = 1.7159 tanh(2a/3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the squashing elementwise."""
        return 1.7159 * torch.tanh(x * (2.0 / 3.0))


class Inception(nn.Module):
    """Parallel branches on the same input, concatenated along channels."""

    def __init__(self, branches: OrderedDict[str, nn.Module]) -> None:
        super().__init__()
        for key, branch in branches.items():  # direct children, so names read "5.b2.1"
            self.add_module(key, branch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N x sum(branch channels) x H x W."""
        return torch.cat([branch(x) for branch in self.children()], 1)


class Residual(nn.Module):
    """``body(x) + shortcut(x)``; the shortcut is the identity or a projection."""

    def __init__(self, body: nn.Module, projection: nn.Module | None) -> None:
        super().__init__()
        self.body = body
        self.projection = projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape as the body's output."""
        return self.body(x) + (x if self.projection is None else self.projection(x))


class SpecNet(nn.Sequential):
    """A network built from a layer spec; ``spec`` keeps the source it came from."""

    def __init__(self, layers: OrderedDict[str, nn.Module], spec: dict[str, Any], input_size: int) -> None:
        super().__init__(layers)
        self.spec = spec
        self.input_size = input_size

    def _classifier_key(self) -> str:
        key = [k for k, m in self._modules.items() if not isinstance(m, nn.Flatten)][-1]
        if not isinstance(self._modules[key], nn.Linear):
            raise ModelError("this spec network does not end in a linear layer", "end the spec with `linear: classes`")
        return key

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The input of the final linear layer, flattened."""
        key = self._classifier_key()
        for name, module in self._modules.items():
            if name == key:
                return torch.flatten(x, 1)
            x = module(x)  # type: ignore[misc]
        return x
