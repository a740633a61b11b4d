"""GoogLeNet / Inception v1 (Szegedy et al. 2014), as in the paper and as in torchvision.

``googlenet`` follows the paper: convolutions with bias and ReLU (no BatchNorm), LRN in
the stem, true 5x5 convolutions in the 5x5 branch, 3x3/2 max pools (ceil rounding, as
Caffe pooled), 7x7 average pool, dropout 0.4 before the classifier, and auxiliary heads
on 4a and 4d: 5x5/3 average pool, 1x1 conv 128, FC 1024, dropout 0.7, linear. The paper
gives no LRN constants or initialisation; we use those of BVLC's Caffe reproduction
(LRN n=5, alpha=1e-4, beta=0.75, k=1, which PyTorch's alpha/n form matches; Xavier
fan-in weights, conv biases 0.2). 6,998,552 parameters without the auxiliary heads and
13,378,280 with them, at 3 channels and 1000 classes.

``googlenet-bn`` is torchvision's model: convolutions without bias followed by
BatchNorm(eps=0.001), no LRN, a 3x3 kernel in the "5x5" branch (torchvision's known
deviation, vision issue #906), ceil-mode pools with a 2x2 last pool, dropout 0.2,
auxiliary heads with adaptive 4x4 average pooling. Parameter names and shapes match
torchvision, ``aux1.*``/``aux2.*`` included, so its ImageNet weight file loads with
``strict=True`` (pass ``transform_input=True`` to reproduce its input re-normalisation).
6,624,904 parameters without the auxiliary heads, 13,004,888 with them.

Auxiliary heads never change what ``forward`` returns: it is always the main logits.
``forward_with_aux`` returns ``(logits, [aux1, aux2])`` in training mode and
``(logits, [])`` in eval mode or when built with ``aux_logits=False``; the training
loop adds ``aux_loss_weight`` (0.3, the paper's) times each auxiliary loss.

Input sizes: the ImageNet variant accepts 31x31 (``googlenet``) and 15x15
(``googlenet-bn``) and up, but below about 64x64 its stride-32 stem leaves the last
inception stages a 1x1 map. ``small_input=True`` gives conv1 stride 1
and drops the first two pools, keeping every parameter tensor: a 28x28 image then meets
the inception stages at 28, 14 and 7 pixels, exactly as a 224x224 one does in the
ImageNet variant. It accepts 4x4 (``googlenet``) and 2x2 (``googlenet-bn``) and up.
Inputs away from the design size end in the same global average pool, and the auxiliary
heads fall back to adaptive pooling onto their 4x4 grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from striate.errors import ModelError

# Table 1: module -> (in, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj); output at 224 px in the comment.
INCEPTIONS: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32),  # N x 256 x 28 x 28
    "inception3b": (256, 128, 128, 192, 32, 96, 64),  # N x 480 x 28 x 28
    "inception4a": (480, 192, 96, 208, 16, 48, 64),  # N x 512 x 14 x 14
    "inception4b": (512, 160, 112, 224, 24, 64, 64),  # N x 512 x 14 x 14
    "inception4c": (512, 128, 128, 256, 24, 64, 64),  # N x 512 x 14 x 14
    "inception4d": (512, 112, 144, 288, 32, 64, 64),  # N x 528 x 14 x 14
    "inception4e": (528, 256, 160, 320, 32, 128, 128),  # N x 832 x 14 x 14
    "inception5a": (832, 256, 160, 320, 32, 128, 128),  # N x 832 x 7 x 7
    "inception5b": (832, 384, 192, 384, 48, 128, 128),  # N x 1024 x 7 x 7
}
AUX_LOSS_WEIGHT = 0.3  # the paper's weight for each auxiliary loss


@dataclass(frozen=True)
class Flavour:
    """What distinguishes the paper's GoogLeNet from torchvision's."""

    batch_norm: bool  # conv without bias + BatchNorm(eps=0.001), else conv with bias
    lrn: bool  # LRN after the first pool and after conv3
    wide_kernel: int  # kernel of the "5x5" branch
    last_pool_kernel: int  # the pool between 4e and 5a
    paper_aux_pool: bool  # 5x5/3 average pool in the aux heads, else adaptive 4x4


PAPER = Flavour(batch_norm=False, lrn=True, wide_kernel=5, last_pool_kernel=3, paper_aux_pool=True)
TORCHVISION = Flavour(batch_norm=True, lrn=False, wide_kernel=3, last_pool_kernel=2, paper_aux_pool=False)


class ConvBlock(nn.Module):
    """Conv + ReLU, with BatchNorm between them in the torchvision flavour."""

    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool, kernel_size: int, stride: int = 1,
                 padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=not batch_norm)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """relu(bn(conv(x)))."""
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    """Four parallel branches (1x1; 1x1-3x3; 1x1-5x5; 3x3 pool-1x1), concatenated."""

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                 pool_proj: int, flavour: Flavour) -> None:
        super().__init__()
        bn, k = flavour.batch_norm, flavour.wide_kernel
        self.branch1 = ConvBlock(in_channels, ch1x1, bn, kernel_size=1)
        self.branch2 = nn.Sequential(ConvBlock(in_channels, ch3x3red, bn, kernel_size=1),
                                     ConvBlock(ch3x3red, ch3x3, bn, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(ConvBlock(in_channels, ch5x5red, bn, kernel_size=1),
                                     ConvBlock(ch5x5red, ch5x5, bn, kernel_size=k, padding=k // 2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
                                     ConvBlock(in_channels, pool_proj, bn, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The four branch outputs stacked along channels."""
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """An auxiliary classifier: pool to 4x4, 1x1 conv 128, FC 1024 + ReLU, dropout, linear."""

    def __init__(self, in_channels: int, num_classes: int, flavour: Flavour, dropout: float = 0.7) -> None:
        super().__init__()
        self.paper_pool = flavour.paper_aux_pool
        self.conv = ConvBlock(in_channels, 128, flavour.batch_norm, kernel_size=1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Auxiliary logits from an intermediate map (N x 512|528 x 14 x 14 at 224 px)."""
        if self.paper_pool and min(x.shape[-2:]) >= 5:
            x = F.avg_pool2d(x, kernel_size=5, stride=3)  # N x C x 4 x 4 at 224 px
        # Other input sizes still meet FC1 with its 128 x 4 x 4 inputs; a no-op after the paper's pool at 224.
        x = F.adaptive_avg_pool2d(x, 4)  # N x C x 4 x 4
        x = self.conv(x)  # N x 128 x 4 x 4
        x = torch.flatten(x, 1)  # N x 2048
        x = F.relu(self.fc1(x), inplace=True)  # N x 1024
        return self.fc2(self.dropout(x))  # N x num_classes


def _lrn() -> nn.Module:
    return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)


class GoogLeNet(nn.Module):
    """GoogLeNet in the paper's or torchvision's flavour (see the module docstring)."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, *, flavour: Flavour = PAPER,
                 aux_logits: bool = True, small_input: bool = False, dropout: float = 0.4,
                 aux_dropout: float = 0.7, transform_input: bool = False) -> None:
        super().__init__()
        if transform_input and in_channels != 3:
            raise ModelError(f"transform_input re-normalises RGB input, but in_channels={in_channels}",
                             "use transform_input=True only with in_channels=3")
        bn = flavour.batch_norm
        self.aux_loss_weight = AUX_LOSS_WEIGHT
        self.transform_input = transform_input

        def pool(kernel: int = 3) -> nn.Module:
            return nn.MaxPool2d(kernel, stride=2, ceil_mode=True)

        self.conv1 = ConvBlock(in_channels, 64, bn, kernel_size=7, stride=1 if small_input else 2, padding=3)
        self.maxpool1 = nn.Identity() if small_input else pool()
        self.lrn1 = _lrn() if flavour.lrn else nn.Identity()
        self.conv2 = ConvBlock(64, 64, bn, kernel_size=1)
        self.conv3 = ConvBlock(64, 192, bn, kernel_size=3, padding=1)
        self.lrn2 = _lrn() if flavour.lrn else nn.Identity()
        self.maxpool2 = nn.Identity() if small_input else pool()
        self.inception3a = Inception(*INCEPTIONS["inception3a"], flavour=flavour)
        self.inception3b = Inception(*INCEPTIONS["inception3b"], flavour=flavour)
        self.inception4a = Inception(*INCEPTIONS["inception4a"], flavour=flavour)
        self.inception4b = Inception(*INCEPTIONS["inception4b"], flavour=flavour)
        self.inception4c = Inception(*INCEPTIONS["inception4c"], flavour=flavour)
        self.inception4d = Inception(*INCEPTIONS["inception4d"], flavour=flavour)
        self.inception4e = Inception(*INCEPTIONS["inception4e"], flavour=flavour)
        self.inception5a = Inception(*INCEPTIONS["inception5a"], flavour=flavour)
        self.inception5b = Inception(*INCEPTIONS["inception5b"], flavour=flavour)
        self.maxpool3 = pool()
        self.maxpool4 = pool(flavour.last_pool_kernel)
        self.aux1: Optional[InceptionAux] = None
        self.aux2: Optional[InceptionAux] = None
        if aux_logits:
            self.aux1 = InceptionAux(512, num_classes, flavour, aux_dropout)
            self.aux2 = InceptionAux(528, num_classes, flavour, aux_dropout)
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # the paper's 7x7 average pool at 224 px
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes)
        self._init_weights(flavour)

    def _init_weights(self, flavour: Flavour) -> None:
        for m in self.modules():
            if not isinstance(m, (nn.Conv2d, nn.Linear)):
                continue
            if flavour.batch_norm:  # torchvision's: weights only, Linear biases keep PyTorch's default
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
                continue
            # BVLC's Caffe "xavier": uniform with variance 1 / fan-in
            bound = math.sqrt(3.0 / m.weight[0].numel())
            nn.init.uniform_(m.weight, -bound, bound)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0.2 if isinstance(m, nn.Conv2d) else 0.0)

    def _normalize_input(self, x: torch.Tensor) -> torch.Tensor:
        if not self.transform_input:
            return x
        # torchvision's weights expect (x - 0.5) / 0.5 per channel; inputs arrive ImageNet-normalised.
        std = x.new_tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        mean = x.new_tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        return x * (std / 0.5) + (mean - 0.5) / 0.5

    def _trunk(self, x: torch.Tensor, aux_outputs: Optional[list[torch.Tensor]]) -> torch.Tensor:
        # Shapes for a 224 x 224 input in the ImageNet variant.
        x = self._normalize_input(x)
        x = self.conv1(x)  # N x 64 x 112 x 112
        x = self.maxpool1(x)  # N x 64 x 56 x 56
        x = self.lrn1(x)
        x = self.conv2(x)  # N x 64 x 56 x 56
        x = self.conv3(x)  # N x 192 x 56 x 56
        x = self.lrn2(x)
        x = self.maxpool2(x)  # N x 192 x 28 x 28
        x = self.inception3a(x)  # N x 256 x 28 x 28
        x = self.inception3b(x)  # N x 480 x 28 x 28
        x = self.maxpool3(x)  # N x 480 x 14 x 14
        x = self.inception4a(x)  # N x 512 x 14 x 14
        if aux_outputs is not None and self.aux1 is not None:
            aux_outputs.append(self.aux1(x))  # N x num_classes
        x = self.inception4b(x)  # N x 512 x 14 x 14
        x = self.inception4c(x)  # N x 512 x 14 x 14
        x = self.inception4d(x)  # N x 528 x 14 x 14
        if aux_outputs is not None and self.aux2 is not None:
            aux_outputs.append(self.aux2(x))  # N x num_classes
        x = self.inception4e(x)  # N x 832 x 14 x 14
        x = self.maxpool4(x)  # N x 832 x 7 x 7
        x = self.inception5a(x)  # N x 832 x 7 x 7
        x = self.inception5b(x)  # N x 1024 x 7 x 7
        return torch.flatten(self.avgpool(x), 1)  # N x 1024

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The globally pooled inception-5b features, N x 1024."""
        return self._trunk(x, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Main class logits, N x num_classes, in every mode (auxiliary heads are not run)."""
        return self.fc(self.dropout(self.forward_features(x)))

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Main logits and auxiliary logits: two in training mode with aux heads, else none."""
        aux_outputs: list[torch.Tensor] = []
        features = self._trunk(x, aux_outputs if self.training else None)
        return self.fc(self.dropout(features)), aux_outputs


# Shared facts: ImageNet reference setting (parameters count the auxiliary heads, built by default).


def googlenet(*, num_classes: int = 10, in_channels: int = 1, aux_logits: bool = True, small_input: bool = False,
              dropout: float = 0.4, aux_dropout: float = 0.7) -> GoogLeNet:
    """The paper's GoogLeNet: 6,998,552 parameters without aux heads at 3 channels, 1000 classes."""
    return GoogLeNet(num_classes, in_channels, flavour=PAPER, aux_logits=aux_logits, small_input=small_input,
                     dropout=dropout, aux_dropout=aux_dropout)


def googlenet_bn(*, num_classes: int = 10, in_channels: int = 1, aux_logits: bool = True, small_input: bool = False,
                 dropout: float = 0.2, aux_dropout: float = 0.7, transform_input: bool = False) -> GoogLeNet:
    """torchvision-compatible GoogLeNet: 6,624,904 parameters without aux heads at 3 channels, 1000 classes."""
    return GoogLeNet(num_classes, in_channels, flavour=TORCHVISION, aux_logits=aux_logits, small_input=small_input,
                     dropout=dropout, aux_dropout=aux_dropout, transform_input=transform_input)
