"""AlexNet in two forms: torchvision's one-GPU layout and the 2012 paper's two-tower net.

``alexnet`` is torchvision's model (Krizhevsky's "one weird trick" single-GPU variant):
64/192/384/256/256 filters, AdaptiveAvgPool2d(6), classifier Dropout-Linear-ReLU-
Dropout-Linear-ReLU-Linear. Parameter names and shapes match torchvision
(``features.{0,3,6,8,10}``, ``classifier.{1,4,6}``), so its weight files load as they
are. 61,100,840 parameters at 3 channels, 1000 classes.

``alexnet-2012`` is the paper's net (Krizhevsky, Sutskever, Hinton 2012): 96/256/384/
384/256 filters; conv2, conv4 and conv5 only see the maps on their own GPU, which is
``groups=2``; conv3 and the FC layers see both towers. ReLU, then local response
normalisation after conv1 and conv2, overlapping 3x3/2 max pooling, dropout 0.5 on the
outputs of FC6 and FC7, 227x227 input (the paper says 224, but 55x55 after an unpadded
11x11/4 conv needs 227). Weights start N(0, 0.01), biases 1 in conv2/4/5 and the hidden
FC layers, 0 elsewhere, as in the paper. 60,965,224 parameters at 3 channels, 1000 classes.

LRN: the paper divides by (k + alpha * sum a^2)^beta; PyTorch's LocalResponseNorm uses
alpha / n, so the paper's alpha = 1e-4 with n = 5 is passed as 5e-4.

Input sizes: ``alexnet`` needs at least 63x63, ``alexnet-2012`` at least 67x67 (the
stride-4 conv1 and three pools). ``small_input=True`` gives conv1 stride 1 and "same"
padding (5), keeping every parameter tensor; it then needs only 15x15, so 28x28 and
32x32 images work. Both forms end in AdaptiveAvgPool2d(6), a no-op at the design size.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 2.0  # the paper's n, alpha, beta, k


class ConvSpec(NamedTuple):
    """One conv stage: the conv, then ReLU, then optionally LRN and a 3x3/2 max pool."""

    out_channels: int
    kernel_size: int
    stride: int
    padding: int
    groups: int = 1
    lrn: bool = False
    pool: bool = False


# Shapes in the comments are for the design input (224 torchvision, 227 paper).
TORCHVISION_CONVS = (
    ConvSpec(64, 11, 4, 2, pool=True),  # N x 64 x 55 x 55 -> pool N x 64 x 27 x 27
    ConvSpec(192, 5, 1, 2, pool=True),  # N x 192 x 27 x 27 -> pool N x 192 x 13 x 13
    ConvSpec(384, 3, 1, 1),  # N x 384 x 13 x 13
    ConvSpec(256, 3, 1, 1),  # N x 256 x 13 x 13
    ConvSpec(256, 3, 1, 1, pool=True),  # N x 256 x 13 x 13 -> pool N x 256 x 6 x 6
)
PAPER_CONVS = (
    ConvSpec(96, 11, 4, 0, lrn=True, pool=True),  # N x 96 x 55 x 55 -> pool N x 96 x 27 x 27
    ConvSpec(256, 5, 1, 2, groups=2, lrn=True, pool=True),  # N x 256 x 27 x 27 -> pool N x 256 x 13 x 13
    ConvSpec(384, 3, 1, 1),  # N x 384 x 13 x 13, both towers
    ConvSpec(384, 3, 1, 1, groups=2),  # N x 384 x 13 x 13
    ConvSpec(256, 3, 1, 1, groups=2, pool=True),  # N x 256 x 13 x 13 -> pool N x 256 x 6 x 6
)


def make_features(convs: tuple[ConvSpec, ...], in_channels: int, small_input: bool) -> nn.Sequential:
    """The convolutional trunk described by ``convs``; small_input makes conv1 stride 1, 'same' padding."""
    layers: list[nn.Module] = []
    for index, spec in enumerate(convs):
        stride, padding = spec.stride, spec.padding
        if small_input and index == 0:
            stride, padding = 1, spec.kernel_size // 2
        layers += [nn.Conv2d(in_channels, spec.out_channels, spec.kernel_size, stride, padding, groups=spec.groups),
                   nn.ReLU(inplace=True)]
        if spec.lrn:
            # PyTorch divides alpha by the window size; the paper does not.
            layers.append(nn.LocalResponseNorm(LRN_SIZE, alpha=LRN_ALPHA * LRN_SIZE, beta=LRN_BETA, k=LRN_K))
        if spec.pool:
            layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
        in_channels = spec.out_channels
    return nn.Sequential(*layers)


class AlexNet(nn.Module):
    """AlexNet: torchvision's one-GPU layout, or the paper's two towers with ``paper=True``."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, *, paper: bool = False,
                 dropout: float = 0.5, small_input: bool = False) -> None:
        super().__init__()
        convs = PAPER_CONVS if paper else TORCHVISION_CONVS
        self.features = make_features(convs, in_channels, small_input)  # N x 256 x 6 x 6
        self.avgpool = nn.AdaptiveAvgPool2d(6)  # N x 256 x 6 x 6: other input sizes end on the same grid
        if paper:
            # The paper drops hidden units' outputs, so dropout follows FC6 and FC7.
            self.classifier = nn.Sequential(
                nn.Linear(256 * 6 * 6, 4096),  # FC6: N x 4096
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
                nn.Linear(4096, 4096),  # FC7: N x 4096
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
                nn.Linear(4096, num_classes),  # FC8: N x num_classes
            )
            self._init_like_the_paper()
        else:
            self.classifier = nn.Sequential(
                nn.Dropout(dropout),
                nn.Linear(256 * 6 * 6, 4096),  # N x 4096
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
                nn.Linear(4096, 4096),  # N x 4096
                nn.ReLU(inplace=True),
                nn.Linear(4096, num_classes),  # N x num_classes
            )

    def _init_like_the_paper(self) -> None:
        # Section 5: N(0, 0.01) weights; bias 1 in conv2, conv4, conv5 and the hidden FC layers
        # "accelerates the early stages of learning by providing the ReLUs with positive inputs".
        layers = [m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        for index, layer in enumerate(layers):
            nn.init.normal_(layer.weight, 0.0, 0.01)
            if layer.bias is not None:
                nn.init.constant_(layer.bias, 1.0 if index in (1, 3, 4, 5, 6) else 0.0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The flattened pooled conv features, N x 9216."""
        return torch.flatten(self.avgpool(self.features(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, N x num_classes."""
        return self.classifier(self.forward_features(x))


def alexnet(*, num_classes: int = 10, in_channels: int = 1, dropout: float = 0.5,
            small_input: bool = False) -> AlexNet:
    """torchvision-compatible AlexNet: 61,100,840 parameters at 3 channels, 1000 classes."""
    return AlexNet(num_classes, in_channels, paper=False, dropout=dropout, small_input=small_input)


def alexnet_2012(*, num_classes: int = 10, in_channels: int = 1, dropout: float = 0.5,
                 small_input: bool = False) -> AlexNet:
    """The paper's two-tower AlexNet: 60,965,224 parameters at 3 channels, 1000 classes."""
    return AlexNet(num_classes, in_channels, paper=True, dropout=dropout, small_input=small_input)
