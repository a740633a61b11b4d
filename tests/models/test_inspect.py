"""Layer tables (shapes, parameters, multiply-adds) and architecture diagrams."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import torch
from torch import nn

from striate import models
from striate.errors import ModelError
from striate.models.diagram import diagram
from striate.models.inspect import layer_macs, layer_table, summarize
from striate.models.spec import build_model


def conv(out: int, k: int, s: int = 1, p: int = 0, bn: bool = False) -> list:
    """conv (+ BatchNorm eps 1e-3 without conv bias, as torchvision's BasicConv2d) + ReLU, as spec layers."""
    if bn:
        return [{"conv": {"out": out, "kernel": k, "stride": s, "padding": p, "bias": False}},
                {"batchnorm": {"eps": 0.001}}, "relu"]
    return [{"conv": {"out": out, "kernel": k, "stride": s, "padding": p}}, "relu"]


def inception(c1: int, r3: int, c3: int, r5: int, c5: int, pool: int) -> dict:
    pool_branch = [{"maxpool": {"kernel": 3, "stride": 1, "padding": 1, "ceil_mode": True}}, *conv(pool, 1, bn=True)]
    return {"inception": [conv(c1, 1, bn=True), conv(r3, 1, bn=True) + conv(c3, 3, 1, 1, bn=True),
                          conv(r5, 1, bn=True) + conv(c5, 3, 1, 1, bn=True), pool_branch]}


def maxpool(k: int, s: int, ceil: bool = False) -> dict:
    return {"maxpool": {"kernel": k, "stride": s, "ceil_mode": ceil}}


# torchvision's AlexNet, VGG-16 and GoogLeNet (eval mode, no aux heads) written as layer specs.
CLASSIFIER = [{"linear": 4096}, "relu", "dropout", {"linear": 4096}, "relu", "dropout", {"linear": "classes"}]
VGG16 = [*conv(64, 3, p=1), *conv(64, 3, p=1), "maxpool", *conv(128, 3, p=1), *conv(128, 3, p=1), "maxpool",
         *(conv(256, 3, p=1) * 3), "maxpool", *(conv(512, 3, p=1) * 3), "maxpool", *(conv(512, 3, p=1) * 3), "maxpool",
         {"avgpool": {"output": 7}}, *CLASSIFIER]
ALEXNET = [*conv(64, 11, 4, 2), maxpool(3, 2), *conv(192, 5, 1, 2), maxpool(3, 2), *conv(384, 3, 1, 1),
           *conv(256, 3, 1, 1), *conv(256, 3, 1, 1), maxpool(3, 2), {"avgpool": {"output": 6}}, "dropout", *CLASSIFIER]
GOOGLENET = [*conv(64, 7, 2, 3, bn=True), maxpool(3, 2, True), *conv(64, 1, bn=True), *conv(192, 3, 1, 1, bn=True),
             maxpool(3, 2, True), inception(64, 96, 128, 16, 32, 32), inception(128, 128, 192, 32, 96, 64),
             maxpool(3, 2, True), inception(192, 96, 208, 16, 48, 64), inception(160, 112, 224, 24, 64, 64),
             inception(128, 128, 256, 24, 64, 64), inception(112, 144, 288, 32, 64, 64),
             inception(256, 160, 320, 32, 128, 128), maxpool(2, 2, True), inception(256, 160, 320, 32, 128, 128),
             inception(384, 192, 384, 48, 128, 128), {"avgpool": {"output": 1}}, {"dropout": 0.2},
             {"linear": "classes"}]
TORCHVISION = {  # published parameters and GFLOPS (multiply-adds) at 3x224x224, 1000 classes
    "alexnet": (ALEXNET, 61_100_840, 0.714),
    "vgg16": (VGG16, 138_357_544, 15.47),
    "googlenet": (GOOGLENET, 6_624_904, 1.498),
}


def test_lenet5_macs_by_hand():
    # C1: 6 maps of 28x28, each output 1*5*5 products; C3: 16x10x10 outputs x 6*5*5; C5: 120 x 16*5*5;
    # F6: 84 x 120; output: 10 x 84. Pooling and ReLU count zero.
    by_hand = 6 * 28 * 28 * 25 + 16 * 10 * 10 * 150 + 120 * 400 + 84 * 120 + 10 * 84
    assert by_hand == 416_520
    table = layer_table(models.create("lenet5"), (1, 32, 32))
    assert table.macs == by_hand and table.parameters == 61_706 and table.output_shape == (10,)
    convs = [r for r in table if r.type == "Conv2d"]
    assert [r.output_shape for r in convs] == [(6, 28, 28), (16, 10, 10), (120, 1, 1)]
    assert [r.macs for r in convs] == [117_600, 240_000, 48_000] and [r.parameters for r in convs] == [156, 2416, 48120]
    assert sum(r.parameters for r in table) == 61_706


def test_grouped_conv_and_linear_on_3d_input():
    grouped = nn.Conv2d(4, 8, 3, padding=1, groups=2)
    out = grouped(torch.zeros(2, 4, 8, 8))
    assert layer_macs(grouped, (torch.zeros(2, 4, 8, 8),), out) == 8 * 8 * 8 * (2 * 9)
    linear = nn.Linear(5, 3)
    x = torch.zeros(2, 7, 5)
    assert layer_macs(linear, (x,), linear(x)) == 7 * 3 * 5
    assert layer_macs(nn.MaxPool2d(2), (torch.zeros(1, 1, 4, 4),), torch.zeros(1, 1, 2, 2)) == 0


def test_a_module_called_twice_counts_its_parameters_once():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.fc(x.flatten(1)))

    table = layer_table(Twice(), (1, 2, 2))
    assert [r.parameters for r in table] == [20, 0] and table.macs == 32 and table.parameters == 20


def test_meta_device_gives_the_same_table_as_real_tensors():
    real = layer_table(models.create("lenet5"), (1, 32, 32))
    meta = summarize("lenet5", (1, 32, 32))
    assert meta.to_dict() == real.to_dict()


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_torchvision_architectures_as_specs_match_published_figures(name):
    layers, params, gflops = TORCHVISION[name]
    with torch.device("meta"):
        model = build_model({"name": name, "layers": layers}, num_classes=1000, in_channels=3, input_size=224)
    table = layer_table(model, (3, 224, 224))
    assert table.parameters == params
    assert table.macs / 1e9 == pytest.approx(gflops, rel=0.01)


@pytest.mark.parametrize("name,gflops", [("alexnet", 0.714), ("vgg16", 15.47), ("googlenet-bn", 1.498)])
def test_registered_models_match_torchvision_gflops(name, gflops):
    if name not in models.names():
        pytest.skip(f"{name} is not registered")
    table = summarize(name, (3, 224, 224), num_classes=1000)
    assert table.macs / 1e9 == pytest.approx(gflops, rel=0.01)


# -- diagrams ---------------------------------------------------------------------------------------

def svg_texts(svg: str) -> list[str]:
    root = ET.fromstring(svg)  # also proves the document is well-formed XML
    return [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]


def test_inception_branches_are_drawn_side_by_side_and_merge():
    model = build_model({"name": "inc", "input_size": 16, "layers": [*conv(8, 3, p=1), inception(4, 4, 8, 2, 4, 4),
                                                           {"pool": {"kind": "avg", "output": 1}}, "flatten",
                                                           {"linear": "classes"}]}, in_channels=3)
    d = diagram(model, (3, 16, 16), "inc")
    boxes = {n.label: n for n in d.nodes}
    assert "concat" in boxes and boxes["concat"].shape == (20, 16, 16)
    first_row = [n for n in d.nodes if n.row == boxes["concat"].row - 2]
    assert len(first_row) == 4 and len({n.x for n in first_row}) == 4  # four branches, four columns
    assert "conv 3x3 · BN · ReLU" in [n.label for n in d.nodes]  # BatchNorm and ReLU fold into the conv
    assert [n.label for n in d.nodes][-2:] == ["avgpool to 1x1 · flatten", "linear"]
    texts = svg_texts(d.to_svg())
    assert "concat" in texts and "20×16×16" in texts and "inc" in texts


def test_residual_shortcut_is_routed_around_the_body():
    body = [*conv(4, 3, p=1), {"conv": {"out": 4, "padding": 1}}]
    model = build_model({"name": "res", "input_size": 8, "layers": [*conv(4, 3, p=1), {"residual": body}, "relu"]})
    d = diagram(model, (1, 8, 8))
    add = next(n for n in d.nodes if n.label.startswith("add"))
    assert add.label.startswith("add · ReLU") and len(add.preds) == 2
    assert max(len(e) for e in d.edges) == 6  # the shortcut takes a lane beside the body
    assert max(x for e in d.edges for x, _ in e) < d.width


def test_untraceable_models_are_drawn_as_a_chain():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.fc = nn.Linear(2 * 6 * 6, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.conv(x)
            if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                x = x * 2
            return self.fc(x.flatten(1))

    d = diagram(Branchy(), (1, 8, 8))
    assert [n.label for n in d.nodes] == ["input", "conv 3x3", "linear"]


def test_a_wrong_input_shape_is_a_model_error():
    with pytest.raises(ModelError, match=r"cannot run on a 1x64x64 input"):
        diagram(build_model({"layers": ["flatten", {"linear": "classes"}]}), (1, 64, 64))
    with pytest.raises(ModelError, match=r"cannot run on a 3x32x32 input"):
        layer_table(models.create("lenet5"), (3, 32, 32))


def test_save_svg_and_png(tmp_path):
    d = diagram(models.create("lenet5"), (1, 32, 32), "lenet5")
    svg = d.save(tmp_path / "lenet.svg")
    assert any(text.startswith("maxpool 2x2/2") for text in svg_texts(svg.read_text()))
    with pytest.raises(ModelError, match=r"name the file .svg or .png"):
        d.save(tmp_path / "lenet.jpg")
    pytest.importorskip("matplotlib")
    png = d.save(tmp_path / "lenet.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
