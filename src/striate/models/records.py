"""The built-in architectures' records: what is known about each without importing torch or building it.

One ``ModelInfo`` per registered name: design and minimum input sizes, reference parameter and
multiply-add counts, the first convolution and the classifier layers. The builder is named by
``"module:function"`` and imported only when a model is built, so ``striate models`` lists every
architecture with its counts in a fraction of torch's import time. tests/models/test_records.py
holds every record to a real build, so a count here cannot drift from its architecture module.
A new architecture: its module (pure architecture and builder) plus one record here.
"""

from __future__ import annotations

from typing import Any

from striate.models.registry import Layer, ModelInfo

_LENET_PAPER = "LeCun, Bottou, Bengio, Haffner 1998"
_IMAGENET: dict[str, Any] = {"reference_channels": 3, "reference_classes": 1000}
_ALEXNET: dict[str, Any] = {**_IMAGENET, "classifier": Layer("classifier.6", (1000, 4096)),
                            "paper": "Krizhevsky, Sutskever, Hinton 2012"}
_GOOGLENET: dict[str, Any] = {
    **_IMAGENET, "first_conv": Layer("conv1.conv", (64, 3, 7, 7), output_size=112),
    "classifier": Layer("fc", (1000, 1024)), "paper": "Szegedy et al. 2014",
    "aux_classifiers": (Layer("aux1.fc2", (1000, 1024)), Layer("aux2.fc2", (1000, 1024)))}
# What every VGG shares: ImageNet reference setting, layer names and the head's initialisation.
_VGG: dict[str, Any] = {
    **_IMAGENET, "input_size": 224, "min_input_size": 32, "small_input_min_size": 16,
    "first_conv": Layer("features.0", (64, 3, 3, 3), output_size=224),
    "classifier": Layer("classifier.6", (1000, 4096)), "classifier_init": "striate.models.vgg:init_linear",
    "paper": "Simonyan & Zisserman 2014"}


def _vgg(depth: int, config: str, bn: bool, parameters: int, macs: int) -> ModelInfo:
    name = f"vgg{depth}" + ("-bn" if bn else "")
    summary = f"VGG-{depth} (config {config}){' with BatchNorm' if bn else ''}, torchvision-compatible"
    return ModelInfo(name, f"striate.models.vgg:{name.replace('-', '_')}", summary=summary,
                     parameters=parameters, macs=macs, **_VGG)


RECORDS: tuple[ModelInfo, ...] = (
    ModelInfo("lenet5", "striate.models.lenet:lenet5", input_size=32, min_input_size=32,
              summary="LeNet-5, modern form (ReLU, max pool)", parameters=61_706, macs=416_520,
              first_conv=Layer("features.0", (6, 1, 5, 5), output_size=28),
              classifier=Layer("classifier.2", (10, 84)), paper=_LENET_PAPER),
    ModelInfo("lenet5-1998", "striate.models.lenet1998:lenet5_1998", input_size=32, min_input_size=32,
              small_input_min_size=28,
              summary="LeNet-5 as published in 1998 (C3 table, trainable subsampling, RBF output)",
              parameters=60_000, macs=175_680, first_conv=Layer("features.c1", (6, 1, 5, 5), output_size=28),
              classifier=Layer("rbf", (10, 84), trainable=False), paper=_LENET_PAPER),
    ModelInfo("alexnet", "striate.models.alexnet:alexnet", input_size=224, min_input_size=63,
              small_input_min_size=15, summary="AlexNet, torchvision's one-GPU layout (64/192/384/256/256)",
              parameters=61_100_840, macs=714_188_480,
              first_conv=Layer("features.0", (64, 3, 11, 11), output_size=55), **_ALEXNET),
    ModelInfo("alexnet-2012", "striate.models.alexnet:alexnet_2012", input_size=227, min_input_size=67,
              small_input_min_size=15,
              summary="AlexNet as in the 2012 paper: two towers (groups=2), LRN, 96/256/384/384/256",
              parameters=60_965_224, macs=724_406_816,
              first_conv=Layer("features.0", (96, 3, 11, 11), output_size=55), **_ALEXNET),
    ModelInfo("googlenet", "striate.models.googlenet:googlenet", input_size=224, min_input_size=31,
              small_input_min_size=4, summary="GoogLeNet as in the 2014 paper: true 5x5, LRN, no BatchNorm, aux heads",
              parameters=13_378_280, macs=1_582_671_872, **_GOOGLENET),
    ModelInfo("googlenet-bn", "striate.models.googlenet:googlenet_bn", input_size=224, min_input_size=15,
              small_input_min_size=2, summary="GoogLeNet, torchvision-compatible (BatchNorm, 3x3 in the 5x5 branch)",
              parameters=13_004_888, macs=1_498_376_192, **_GOOGLENET),
    _vgg(11, "A", False, 132_863_336, 7_609_090_048),
    _vgg(11, "A", True, 132_868_840, 7_609_090_048),
    _vgg(13, "B", False, 133_047_848, 11_308_466_176),
    _vgg(13, "B", True, 133_053_736, 11_308_466_176),
    _vgg(16, "D", False, 138_357_544, 15_470_264_320),
    _vgg(16, "D", True, 138_365_992, 15_470_264_320),
    _vgg(19, "E", False, 143_667_240, 19_632_062_464),
    _vgg(19, "E", True, 143_678_248, 19_632_062_464),
)
