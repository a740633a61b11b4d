"""The torchvision-compatible models have torchvision's state_dict: same keys, order and shapes.

The expected tables are written out here as data, from torchvision's published model
definitions (torchvision is not a dependency), so a weight file saved by torchvision
loads with ``strict=True``. Models are built on the meta device: shapes only, no memory.
"""

from __future__ import annotations

import math

import pytest
import torch

from striate import models

BN_BUFFERS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def conv(prefix: str, out_ch: int, in_ch: int, k: int, bias: bool = True) -> list[tuple[str, tuple[int, ...]]]:
    """Keys of a plain Conv2d."""
    rows = [(f"{prefix}.weight", (out_ch, in_ch, k, k))]
    return rows + [(f"{prefix}.bias", (out_ch,))] if bias else rows


def linear(prefix: str, out_f: int, in_f: int) -> list[tuple[str, tuple[int, ...]]]:
    """Keys of a Linear layer."""
    return [(f"{prefix}.weight", (out_f, in_f)), (f"{prefix}.bias", (out_f,))]


def batch_norm(prefix: str, ch: int) -> list[tuple[str, tuple[int, ...]]]:
    """Keys of a BatchNorm2d (parameters and buffers)."""
    return [(f"{prefix}.{b}", () if b == "num_batches_tracked" else (ch,)) for b in BN_BUFFERS]


def basic_conv(prefix: str, out_ch: int, in_ch: int, k: int) -> list[tuple[str, tuple[int, ...]]]:
    """Keys of torchvision's googlenet BasicConv2d: conv without bias, then BatchNorm."""
    return conv(f"{prefix}.conv", out_ch, in_ch, k, bias=False) + batch_norm(f"{prefix}.bn", out_ch)


ALEXNET = [
    ("features.0.weight", (64, 3, 11, 11)), ("features.0.bias", (64,)),
    ("features.3.weight", (192, 64, 5, 5)), ("features.3.bias", (192,)),
    ("features.6.weight", (384, 192, 3, 3)), ("features.6.bias", (384,)),
    ("features.8.weight", (256, 384, 3, 3)), ("features.8.bias", (256,)),
    ("features.10.weight", (256, 256, 3, 3)), ("features.10.bias", (256,)),
    ("classifier.1.weight", (4096, 9216)), ("classifier.1.bias", (4096,)),
    ("classifier.4.weight", (4096, 4096)), ("classifier.4.bias", (4096,)),
    ("classifier.6.weight", (1000, 4096)), ("classifier.6.bias", (1000,)),
]

# (features index, out, in) of VGG-16's 13 convs, and (conv index, bn index, out, in) with BatchNorm.
VGG16_CONVS = [(0, 64, 3), (2, 64, 64), (5, 128, 64), (7, 128, 128), (10, 256, 128), (12, 256, 256),
               (14, 256, 256), (17, 512, 256), (19, 512, 512), (21, 512, 512), (24, 512, 512), (26, 512, 512),
               (28, 512, 512)]
VGG16_BN_CONVS = [(0, 1, 64, 3), (3, 4, 64, 64), (7, 8, 128, 64), (10, 11, 128, 128), (14, 15, 256, 128),
                  (17, 18, 256, 256), (20, 21, 256, 256), (24, 25, 512, 256), (27, 28, 512, 512),
                  (30, 31, 512, 512), (34, 35, 512, 512), (37, 38, 512, 512), (40, 41, 512, 512)]
VGG_CLASSIFIER = linear("classifier.0", 4096, 25088) + linear("classifier.3", 4096, 4096) + \
    linear("classifier.6", 1000, 4096)
VGG16 = [row for i, o, c in VGG16_CONVS for row in conv(f"features.{i}", o, c, 3)] + VGG_CLASSIFIER
VGG16_BN = [row for i, b, o, c in VGG16_BN_CONVS
            for row in conv(f"features.{i}", o, c, 3) + batch_norm(f"features.{b}", o)] + VGG_CLASSIFIER

# (BasicConv2d prefix, out, in, kernel) in torchvision's module order; the "5x5" branch is 3x3 there.
GOOGLENET_BN_CONVS = [
    ("conv1", 64, 3, 7), ("conv2", 64, 64, 1), ("conv3", 192, 64, 3),
    ("inception3a.branch1", 64, 192, 1), ("inception3a.branch2.0", 96, 192, 1), ("inception3a.branch2.1", 128, 96, 3),
    ("inception3a.branch3.0", 16, 192, 1), ("inception3a.branch3.1", 32, 16, 3), ("inception3a.branch4.1", 32, 192, 1),
    ("inception3b.branch1", 128, 256, 1), ("inception3b.branch2.0", 128, 256, 1),
    ("inception3b.branch2.1", 192, 128, 3), ("inception3b.branch3.0", 32, 256, 1),
    ("inception3b.branch3.1", 96, 32, 3), ("inception3b.branch4.1", 64, 256, 1),
    ("inception4a.branch1", 192, 480, 1), ("inception4a.branch2.0", 96, 480, 1), ("inception4a.branch2.1", 208, 96, 3),
    ("inception4a.branch3.0", 16, 480, 1), ("inception4a.branch3.1", 48, 16, 3), ("inception4a.branch4.1", 64, 480, 1),
    ("inception4b.branch1", 160, 512, 1), ("inception4b.branch2.0", 112, 512, 1),
    ("inception4b.branch2.1", 224, 112, 3), ("inception4b.branch3.0", 24, 512, 1),
    ("inception4b.branch3.1", 64, 24, 3), ("inception4b.branch4.1", 64, 512, 1),
    ("inception4c.branch1", 128, 512, 1), ("inception4c.branch2.0", 128, 512, 1),
    ("inception4c.branch2.1", 256, 128, 3), ("inception4c.branch3.0", 24, 512, 1),
    ("inception4c.branch3.1", 64, 24, 3), ("inception4c.branch4.1", 64, 512, 1),
    ("inception4d.branch1", 112, 512, 1), ("inception4d.branch2.0", 144, 512, 1),
    ("inception4d.branch2.1", 288, 144, 3), ("inception4d.branch3.0", 32, 512, 1),
    ("inception4d.branch3.1", 64, 32, 3), ("inception4d.branch4.1", 64, 512, 1),
    ("inception4e.branch1", 256, 528, 1), ("inception4e.branch2.0", 160, 528, 1),
    ("inception4e.branch2.1", 320, 160, 3), ("inception4e.branch3.0", 32, 528, 1),
    ("inception4e.branch3.1", 128, 32, 3), ("inception4e.branch4.1", 128, 528, 1),
    ("inception5a.branch1", 256, 832, 1), ("inception5a.branch2.0", 160, 832, 1),
    ("inception5a.branch2.1", 320, 160, 3), ("inception5a.branch3.0", 32, 832, 1),
    ("inception5a.branch3.1", 128, 32, 3), ("inception5a.branch4.1", 128, 832, 1),
    ("inception5b.branch1", 384, 832, 1), ("inception5b.branch2.0", 192, 832, 1),
    ("inception5b.branch2.1", 384, 192, 3), ("inception5b.branch3.0", 48, 832, 1),
    ("inception5b.branch3.1", 128, 48, 3), ("inception5b.branch4.1", 128, 832, 1),
]
GOOGLENET_BN_AUX = [row for name, in_ch in (("aux1", 512), ("aux2", 528))
                    for row in basic_conv(f"{name}.conv", 128, in_ch, 1) + linear(f"{name}.fc1", 1024, 2048)
                    + linear(f"{name}.fc2", 1000, 1024)]
GOOGLENET_BN_TRUNK = [row for spec in GOOGLENET_BN_CONVS for row in basic_conv(*spec)]
GOOGLENET_BN = GOOGLENET_BN_TRUNK + GOOGLENET_BN_AUX + linear("fc", 1000, 1024)
GOOGLENET_BN_NO_AUX = GOOGLENET_BN_TRUNK + linear("fc", 1000, 1024)

LAYOUTS = {
    "alexnet": (ALEXNET, {}),
    "vgg16": (VGG16, {}),
    "vgg16-bn": (VGG16_BN, {}),
    "googlenet-bn": (GOOGLENET_BN, {}),
    "googlenet-bn/no-aux": (GOOGLENET_BN_NO_AUX, {"aux_logits": False}),
}


def layout(name: str, **options: object) -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) of every state_dict entry of ``name`` at 3 channels, 1000 classes."""
    with torch.device("meta"):
        model = models.create(name, num_classes=1000, in_channels=3, **options)
    return [(key, tuple(t.shape)) for key, t in model.state_dict().items()]


@pytest.mark.parametrize("case", sorted(LAYOUTS))
def test_state_dict_matches_torchvision(case):
    expected, options = LAYOUTS[case]
    assert layout(case.split("/")[0], **options) == expected


@pytest.mark.parametrize("name", ["alexnet", "vgg16", "vgg16-bn", "googlenet-bn"])
def test_small_input_variant_keeps_every_parameter_tensor(name):
    assert layout(name, small_input=True) == layout(name)


def parameters_in(table: list[tuple[str, tuple[int, ...]]]) -> int:
    """Trainable parameters of a key table (BatchNorm running statistics are buffers)."""
    return sum(math.prod(shape) for key, shape in table if key.rsplit(".", 1)[1] in ("weight", "bias"))


@pytest.mark.parametrize("name,table,expected", [("vgg16", VGG16, 138_357_544), ("vgg16-bn", VGG16_BN, 138_365_992),
                                                 ("alexnet", ALEXNET, 61_100_840),
                                                 ("googlenet-bn", GOOGLENET_BN, 13_004_888)])
def test_parameter_counts_follow_from_the_tables(name, table, expected):
    # torchvision's published count, the key table's sum and the built model agree.
    with torch.device("meta"):
        model = models.create(name, num_classes=1000, in_channels=3)
    assert parameters_in(table) == models.count_parameters(model) == expected


def test_vgg_bn_adds_exactly_the_batch_norm_parameters():
    # 13 BatchNorms with weight and bias add 2 x (2x64 + 2x128 + 3x256 + 6x512) = 8,448 parameters.
    bn_params = sum(2 * o for _, _, o, _ in VGG16_BN_CONVS)
    assert bn_params == 8_448 == parameters_in(VGG16_BN) - parameters_in(VGG16)


def test_torchvision_weight_file_loads_strictly():
    # Round trip through a state_dict with exactly the expected keys, as torchvision's file has.
    model = models.create("googlenet-bn", num_classes=1000, in_channels=3)
    state = {key: torch.full(shape, 0.5) if shape else torch.tensor(7) for key, shape in GOOGLENET_BN}
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(model.aux2.fc1.weight, torch.full((1024, 2048), 0.5))
