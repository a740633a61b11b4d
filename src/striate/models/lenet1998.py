"""LeNet-5 as published (LeCun, Bottou, Bengio, Haffner 1998, section II.B and appendix A).

Unlike the modern ``lenet5`` this keeps every detail of the paper:

- squashing f(a) = 1.7159 tanh(2a/3) after every layer up to F6;
- S2 and S4 are trainable subsampling layers: the sum of each 2x2 block times one
  trainable coefficient plus one trainable bias per map;
- C3 sees only the S2 maps listed in Table I (``C3_TABLE``); only the 60 connected
  5x5 kernels exist as parameters, so the count is the paper's;
- the output is 10 Euclidean RBF units whose centres are fixed +-1 7x12 bitmaps
  (a buffer, never trained); ``forward`` returns the negative squared distances, so
  softmax / cross-entropy rank the classes as the RBF penalties do;
- ``paper_loss`` is the paper's criterion, eq. (9);
- weights start uniform in +-2.4 / fan-in (appendix A).

60,000 trainable parameters for one input channel and ten classes.

Bitmaps: the paper drew its codes from a 7x12 rendering of the ASCII set but did not
publish them; ``_DIGIT_GLYPHS`` holds our own hand-drawn 7-wide, 12-tall digits 0-9.
Classes beyond ten get deterministic pseudo-random +-1 codes from SHA-256 (identical
on every machine and PyTorch version); fewer than ten classes use the first digits.

Input sizes: the default needs at least 32x32 (the paper centred 28x28 digits in a
32x32 field). ``small_input=True`` pads C1 by 2 so 28x28 images go in directly (minimum
28). Larger inputs leave C5 with a spatial map, which is averaged to one vector before
F6 (a no-op at the design size).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

# Table I: the S2 maps each C3 map combines.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),  # contiguous threes
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),  # contiguous fours
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),  # discontinuous fours
    (0, 1, 2, 3, 4, 5),  # all six
)

SQUASH_AMPLITUDE = 1.7159  # A: f(+-1) = +-1, so the +-1 targets sit where f has maximal curvature
SQUASH_SLOPE = 2.0 / 3.0  # S
PAPER_LOSS_J = 10.0  # eq. (9)'s constant j, which the paper leaves unspecified: our choice, see paper_loss
GLYPH_WIDTH, GLYPH_HEIGHT = 7, 12

_DIGIT_GLYPHS = (
    (".#####.", "#.....#", "#.....#", "#.....#", "#.....#", "#.....#",
     "#.....#", "#.....#", "#.....#", "#.....#", "#.....#", ".#####."),
    ("...#...", "..##...", ".#.#...", "...#...", "...#...", "...#...",
     "...#...", "...#...", "...#...", "...#...", "...#...", ".#####."),
    (".#####.", "#.....#", "......#", "......#", ".....#.", "....#..",
     "...#...", "..#....", ".#.....", "#......", "#......", "#######"),
    (".#####.", "#.....#", "......#", "......#", ".....#.", "..###..",
     ".....#.", "......#", "......#", "......#", "#.....#", ".#####."),
    (".....#.", "....##.", "...#.#.", "..#..#.", ".#...#.", "#....#.",
     "#######", ".....#.", ".....#.", ".....#.", ".....#.", ".....#."),
    ("#######", "#......", "#......", "#......", "######.", "......#",
     "......#", "......#", "......#", "......#", "#.....#", ".#####."),
    ("..####.", ".#.....", "#......", "#......", "######.", "#.....#",
     "#.....#", "#.....#", "#.....#", "#.....#", "#.....#", ".#####."),
    ("#######", "......#", "......#", ".....#.", ".....#.", "....#..",
     "....#..", "...#...", "...#...", "..#....", "..#....", "..#...."),
    (".#####.", "#.....#", "#.....#", "#.....#", ".#...#.", "..###..",
     ".#...#.", "#.....#", "#.....#", "#.....#", "#.....#", ".#####."),
    (".#####.", "#.....#", "#.....#", "#.....#", "#.....#", "#.....#",
     ".######", "......#", "......#", "......#", ".....#.", ".####.."),
)


def rbf_prototypes(num_classes: int) -> torch.Tensor:
    """The fixed +-1 RBF centres, num_classes x 84: digit bitmaps first, then hashed codes."""
    codes = []
    for k in range(num_classes):
        if k < len(_DIGIT_GLYPHS):
            bits = [ch == "#" for row in _DIGIT_GLYPHS[k] for ch in row]
        else:
            digest = hashlib.sha256(f"striate/lenet5-1998/prototype/{k}".encode()).digest()
            bits = [bool(digest[i // 8] >> (i % 8) & 1) for i in range(GLYPH_WIDTH * GLYPH_HEIGHT)]
        codes.append([1.0 if b else -1.0 for b in bits])
    return torch.tensor(codes)


def _uniform_fan_in_(tensor: torch.Tensor, fan_in: float | torch.Tensor) -> None:
    """Appendix A: uniform in +-2.4 / fan-in, where fan-in counts the unit's inputs."""
    with torch.no_grad():
        tensor.uniform_(-1.0, 1.0).mul_(2.4 / fan_in)


class Squash(nn.Module):
    """The paper's squashing function f(a) = 1.7159 tanh(2a/3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply f elementwise."""
        return SQUASH_AMPLITUDE * torch.tanh(SQUASH_SLOPE * x)


class Subsampling(nn.Module):
    """S2/S4: 2x2 sums times a trainable coefficient plus a trainable bias, per map."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels))
        self.bias = nn.Parameter(torch.empty(channels))
        _uniform_fan_in_(self.weight, 4)
        _uniform_fan_in_(self.bias, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Subsample by two (the squashing follows as its own module)."""
        summed = 4.0 * F.avg_pool2d(x, 2)
        return summed * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class PartialConv2d(nn.Module):
    """A convolution where output map j sees only the input maps ``table[j]``.

    ``weight`` holds one k x k kernel per connection (in table order), so unconnected
    kernels are not parameters at all; ``dense_weight`` scatters them into the usual
    out x in x k x k layout, zeros where there is no connection.
    """

    out_index: torch.Tensor  # output map of each connection
    in_index: torch.Tensor  # input map of each connection

    def __init__(self, in_channels: int, table: tuple[tuple[int, ...], ...], kernel_size: int) -> None:
        super().__init__()
        pairs = [(j, i) for j, inputs in enumerate(table) for i in sorted(inputs)]
        self.in_channels, self.out_channels, self.kernel_size = in_channels, len(table), kernel_size
        self.register_buffer("out_index", torch.tensor([j for j, _ in pairs]), persistent=False)
        self.register_buffer("in_index", torch.tensor([i for _, i in pairs]), persistent=False)
        self.weight = nn.Parameter(torch.empty(len(pairs), kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(len(table)))
        fan_in = torch.tensor([len(table[j]) * kernel_size**2 for j, _ in pairs], dtype=torch.float32)
        _uniform_fan_in_(self.weight, fan_in.view(-1, 1, 1))
        _uniform_fan_in_(self.bias, fan_in.new_tensor([len(t) * kernel_size**2 for t in table]))

    def connection_mask(self) -> torch.Tensor:
        """Boolean out x in matrix: True where output map j reads input map i."""
        mask = torch.zeros(self.out_channels, self.in_channels, dtype=torch.bool, device=self.out_index.device)
        mask[self.out_index, self.in_index] = True
        return mask

    def dense_weight(self) -> torch.Tensor:
        """The kernels as an out x in x k x k tensor (differentiable), zero where unconnected."""
        k = self.kernel_size
        dense = self.weight.new_zeros(self.out_channels, self.in_channels, k, k)
        return dense.index_put((self.out_index, self.in_index), self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve with the partially connected kernels."""
        return F.conv2d(x, self.dense_weight(), self.bias)


class EuclideanRBF(nn.Module):
    """Output units y_i = sum_j (x_j - w_ij)^2 with fixed centres w_i; returns -y (logits)."""

    prototypes: torch.Tensor

    def __init__(self, prototypes: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("prototypes", prototypes)

    def with_classes(self, num_classes: int) -> EuclideanRBF:
        """The output layer for ``num_classes`` classes: their fixed centres (nothing to train), same device/dtype."""
        return EuclideanRBF(rbf_prototypes(num_classes).to(self.prototypes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Negative squared Euclidean distance to every centre, N x num_classes."""
        return -(x.unsqueeze(1) - self.prototypes.unsqueeze(0)).pow(2).sum(-1)


class LeNet5Paper(nn.Module):
    """LeNet-5 exactly as in the 1998 paper (see the module docstring)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, small_input: bool = False) -> None:
        super().__init__()
        c1 = nn.Conv2d(in_channels, 6, kernel_size=5, padding=2 if small_input else 0)
        c5 = nn.Conv2d(16, 120, kernel_size=5)
        f6 = nn.Linear(120, 84)
        for layer in (c1, c5, f6):
            fan_in = layer.weight[0].numel()
            _uniform_fan_in_(layer.weight, fan_in)
            if layer.bias is not None:
                _uniform_fan_in_(layer.bias, fan_in)
        self.features = nn.Sequential(OrderedDict(
            c1=c1,  # N x 6 x 28 x 28
            f1=Squash(),
            s2=Subsampling(6),  # N x 6 x 14 x 14
            f2=Squash(),
            c3=PartialConv2d(6, C3_TABLE, kernel_size=5),  # N x 16 x 10 x 10
            f3=Squash(),
            s4=Subsampling(16),  # N x 16 x 5 x 5
            f4=Squash(),
            c5=c5,  # N x 120 x 1 x 1
            f5=Squash(),
        ))
        # Larger inputs leave C5 with a spatial map; averaging it is a no-op at 32x32.
        self.pool = nn.AdaptiveAvgPool2d(1)  # N x 120 x 1 x 1
        self.f6 = nn.Sequential(f6, Squash())  # N x 84
        self.rbf = EuclideanRBF(rbf_prototypes(num_classes))  # N x num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The flattened C5 activations, N x 120."""
        return torch.flatten(self.pool(self.features(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits: minus the RBF penalties, N x num_classes."""
        return self.rbf(self.f6(self.forward_features(x)))

    def paper_loss(self, output: torch.Tensor, target: torch.Tensor, j: float = PAPER_LOSS_J) -> torch.Tensor:
        """The paper's criterion, eq. (9), averaged over the batch.

        E = y_D + log(exp(-j) + sum_i exp(-y_i)), with y the RBF penalties (``output`` is -y)
        and D the target class. This is the cross-entropy of the logits extended by one
        constant "rubbish" logit -j: it pulls the correct penalty down, pushes the others
        up, and stops pushing a wrong class once its penalty is well above j. The paper
        gives no value for j; 10 means a class about 2.5 flipped pixels from the F6 code
        (each flip costs 4) no longer counts as competition.
        """
        rubbish = output.new_full((output.shape[0], 1), -float(j))
        return F.cross_entropy(torch.cat([output, rubbish], dim=1), target)


def lenet5_1998(*, num_classes: int = 10, in_channels: int = 1, small_input: bool = False) -> LeNet5Paper:
    """LeNet-5 as in the 1998 paper: 60,000 trainable parameters at 1 channel, 10 classes."""
    return LeNet5Paper(num_classes=num_classes, in_channels=in_channels, small_input=small_input)

