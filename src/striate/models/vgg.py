"""VGG (Simonyan & Zisserman 2014), configurations A, B, D, E, with and without BatchNorm.

torchvision-compatible: the same ``features.N`` / ``classifier.{0,3,6}`` parameter names
and shapes, AdaptiveAvgPool2d(7) and a 25088-4096-4096-classes classifier with dropout,
so torchvision's weight files load as they are. At 3 channels and 1000 classes:
vgg11 132,863,336, vgg13 133,047,848, vgg16 138,357,544, vgg19 143,667,240 parameters;
with BatchNorm 132,868,840, 133,053,736, 138,365,992, 143,678,248.

Input sizes: five 2x2 max pools need at least 32x32. ``small_input=True`` drops the last
pool (the last entry of ``features``, so every parameter keeps its name and shape) and
then needs only 16x16, leaving 28x28 images a 1x1 map instead of nothing. The adaptive
pool brings any final map to 7x7 (a no-op at 224x224).
"""

from __future__ import annotations

from typing import Union

import torch
from torch import nn

# Conv widths per stage, "M" = 2x2 max pool. Spatial size after each pool at 224 px: 112, 56, 28, 14, 7.
CFGS: dict[str, list[Union[int, str]]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],  # vgg11
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],  # vgg13
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],  # vgg16
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],  # vgg19
}


def make_layers(cfg: list[Union[int, str]], in_channels: int, batch_norm: bool, small_input: bool) -> nn.Sequential:
    """The conv trunk for one configuration: 3x3 pad-1 convs (+BN) + ReLU, and 2x2 max pools."""
    if small_input:
        cfg = cfg[:-1]  # the final pool; dropping it shifts no parameter index
    layers: list[nn.Module] = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        width = int(v)
        layers.append(nn.Conv2d(in_channels, width, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(width))
        layers.append(nn.ReLU(inplace=True))
        in_channels = width
    return nn.Sequential(*layers)


def init_linear(layer: nn.Module) -> None:
    """torchvision's VGG linear initialisation: N(0, 0.01) weights, zero bias (also for a reset classifier)."""
    assert isinstance(layer, nn.Linear)
    nn.init.normal_(layer.weight, 0.0, 0.01)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class VGG(nn.Module):
    """A VGG network: conv trunk, 7x7 adaptive average pool, three-layer classifier."""

    def __init__(self, features: nn.Sequential, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = features  # N x 512 x 7 x 7 at 224 px
        self.avgpool = nn.AdaptiveAvgPool2d(7)  # N x 512 x 7 x 7
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),  # N x 4096
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),  # N x 4096
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes),  # N x num_classes
        )
        # torchvision's initialisation, so a model trained here and one trained there start alike.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                init_linear(m)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The flattened pooled conv features, N x 25088."""
        return torch.flatten(self.avgpool(self.features(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, N x num_classes."""
        return self.classifier(self.forward_features(x))


def _vgg(cfg: str, batch_norm: bool, num_classes: int, in_channels: int, dropout: float, small_input: bool) -> VGG:
    return VGG(make_layers(CFGS[cfg], in_channels, batch_norm, small_input), num_classes, dropout)


def vgg11(*, num_classes: int = 10, in_channels: int = 1, dropout: float = 0.5, small_input: bool = False) -> VGG:
    """VGG-11: 132,863,336 parameters at 3 channels, 1000 classes."""
    return _vgg("A", False, num_classes, in_channels, dropout, small_input)


def vgg11_bn(*, num_classes: int = 10, in_channels: int = 1, dropout: float = 0.5, small_input: bool = False) -> VGG:
    """VGG-11 with BatchNorm: 132,868,840 parameters at 3 channels, 1000 classes."""
    return _vgg("A", True, num_classes, in_channels, dropout, small_input)


def vgg13(*, num_classes: int = 10, in_channels: int = 1, dropout: float = 0.5, small_input: bool = False) -> VGG:
    """VGG-13: 133,047,848 parameters at 3 channels, 1000 classes."""
    return _vgg("B", False, num_classes, in_channels, dropout, small_input)


def vgg13_bn(*, num_classes: int = 10, in_channels: int = 1, dropout: float = 0.5, small_input: bool = False) -> VGG:
    """VGG-13 with BatchNorm: 133,053,736 parameters at 3 channels, 1000 classes."""
    return _vgg("B", True, num_classes, in_channels, dropout, small_input)


def vgg16(*, num_classes: int = 10, in_channels: int = 1, dropout: float = 0.5, small_input: bool = False) -> VGG:
    """VGG-16: 138,357,544 parameters at 3 channels, 1000 classes."""
    return _vgg("D", False, num_classes, in_channels, dropout, small_input)


def vgg16_bn(*, num_classes: int = 10, in_channels: int = 1, dropout: float = 0.5, small_input: bool = False) -> VGG:
    """VGG-16 with BatchNorm: 138,365,992 parameters at 3 channels, 1000 classes."""
    return _vgg("D", True, num_classes, in_channels, dropout, small_input)


def vgg19(*, num_classes: int = 10, in_channels: int = 1, dropout: float = 0.5, small_input: bool = False) -> VGG:
    """VGG-19: 143,667,240 parameters at 3 channels, 1000 classes."""
    return _vgg("E", False, num_classes, in_channels, dropout, small_input)


def vgg19_bn(*, num_classes: int = 10, in_channels: int = 1, dropout: float = 0.5, small_input: bool = False) -> VGG:
    """VGG-19 with BatchNorm: 143,678,248 parameters at 3 channels, 1000 classes."""
    return _vgg("E", True, num_classes, in_channels, dropout, small_input)
