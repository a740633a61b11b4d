"""Layer specs: YAML/JSON -> nn.Module, shape-checked, with errors that name the layer and the shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from striate import models
from striate.errors import ModelError
from striate.models.spec import build_model, load_spec, min_input_size

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "my_cnn.yaml"

# LeNet-5 in its modern form, written as a spec: the same 61,706 parameters as the registered lenet5.
LENET = {"name": "lenet", "layers": [
    {"conv": {"out": 6, "kernel": 5}}, "relu", "maxpool",
    {"conv": {"out": 16, "kernel": 5}}, "relu", {"pool": {"kind": "max", "kernel": 2}},
    {"conv": {"out": 120, "kernel": 5}}, "relu", "flatten",
    {"linear": 84}, "relu", {"linear": "classes"}]}


def write(tmp_path: Path, spec: object, name: str = "net.yaml") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(spec) if name.endswith(".json") else yaml.safe_dump(spec))
    return path


def build(layers: list, size: int = 32, channels: int = 1, classes: int = 10) -> nn.Module:
    return build_model({"name": "t", "input_size": size, "layers": layers}, num_classes=classes,
                       in_channels=channels)


def test_lenet_spec_matches_the_registered_lenet5():
    model = build_model(LENET, num_classes=10, in_channels=1)
    assert models.count_parameters(model) == 61_706 == models.count_parameters(models.create("lenet5"))
    assert model(torch.randn(3, 1, 32, 32)).shape == (3, 10)


def test_the_example_builds_trains_and_reports_its_sizes():
    entry = models.info(str(EXAMPLE))
    assert entry.input_size == 32 and entry.min_input_size <= 28  # global pooling: Fashion-MNIST needs no padding
    model = models.create(str(EXAMPLE), num_classes=7, in_channels=3)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model(torch.randn(2, 3, 28, 28)).shape == (2, 7)


def test_modules_are_named_by_spec_position():
    model = models.create(str(EXAMPLE))
    names = dict(model.named_modules())
    assert isinstance(names["1"], nn.Conv2d) and isinstance(names["5.b2.3"], nn.Conv2d)
    assert isinstance(names["6.body.1"], nn.Conv2d) and names["6.body.1"].stride == (2, 2)
    assert names["6.projection.0"].kernel_size == (1, 1) and names["6.projection.0"].stride == (2, 2)
    assert isinstance(names["10_flatten"], nn.Flatten) and names["10"].in_features == 128


def test_registry_accepts_json_and_yaml_paths(tmp_path):
    for suffix in ("json", "yml", "yaml"):
        path = write(tmp_path, {**LENET, "input_size": 32}, f"lenet.{suffix}")
        assert models.info(str(path)).min_input_size == 32  # flatten + fixed linear: exactly 32 (or 33..35)
        assert models.count_parameters(models.create(str(path))) == 61_706


def test_load_spec_returns_plain_data_that_rebuilds_the_same_network(tmp_path):
    spec = load_spec(write(tmp_path, LENET["layers"], "bare_list.yaml"))  # a bare list of layers is a spec too
    assert spec["name"] == "bare_list" and json.loads(json.dumps(spec)) == spec
    assert models.count_parameters(build_model(spec)) == 61_706


def test_layer_forms_and_inferred_sizes():
    model = build([{"type": "conv", "out": 8, "kernel": [3, 5], "padding": "same"}, {"batchnorm": {"eps": 1e-3}},
                   {"activation": {"fn": "leaky_relu", "slope": 0.2}}, "gelu", {"lrn": 3},
                   {"avgpool": {"kernel": 3, "stride": 2, "ceil_mode": True}}, {"dropout": 0.25},
                   {"linear": {"out": 20}}, {"batchnorm": None}, "scaled_tanh", {"linear": "classes"}], size=15)
    assert model[0].kernel_size == (3, 5) and model[3].__class__ is nn.GELU
    assert model[5].ceil_mode and model[8].in_features == 8 * 7 * 7  # ceil((15-3)/2)+1 = 7
    assert isinstance(model[9], nn.BatchNorm1d)
    assert model(torch.randn(2, 1, 15, 15)).shape == (2, 10)


def test_a_spec_without_classes_gets_a_linear_head():
    model = build([{"conv": 4}, "relu", {"pool": {"kind": "avg", "output": 2}}], classes=5)
    assert list(dict(model.named_children()))[-2:] == ["head_flatten", "head"]
    assert model.head.in_features == 16 and model(torch.randn(1, 1, 32, 32)).shape == (1, 5)


def test_a_conv_to_classes_on_a_1x1_map_is_flattened():
    model = build([{"conv": 8}, {"pool": {"kind": "avg", "output": 1}}, {"conv": {"out": "classes", "kernel": 1}}])
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_reset_classifier_and_forward_features(tmp_path):
    model = models.create(str(write(tmp_path, LENET)))
    assert model.forward_features(torch.randn(2, 1, 32, 32)).shape == (2, 84)
    models.reset_classifier(model, 3)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3)
    pooled = models.create(str(write(tmp_path, {"layers": [{"conv": 4}, {"pool": {"output": 1}}, "flatten"]})))
    with pytest.raises(ModelError, match="no classifier layer"):  # the automatic head is a linear layer...
        models.reset_classifier(models.create(str(write(tmp_path, {"layers": [
            {"conv": {"out": "classes", "kernel": 1}}, {"pool": {"output": 1}}]}))), 3)  # ...a conv head is not
    models.reset_classifier(pooled, 5)
    assert pooled(torch.randn(2, 1, 32, 32)).shape == (2, 5)


def test_spec_record_names_its_layers_and_counts(tmp_path):
    entry = models.info(str(write(tmp_path, LENET, "NET.YML")))
    assert entry.parameters == 61_706 and entry.macs == models.info("lenet5").macs
    assert (entry.first_conv.name, entry.first_conv.shape, entry.first_conv.output_size) == ("1", (6, 1, 5, 5), 28)
    assert (entry.classifier.name, entry.classifier.shape) == ("12", (10, 84))
    model = models.create(entry.name, num_classes=4, in_channels=3)
    assert (models.info_of(model).name, models.info_of(model).classifier) == (entry.name, entry.classifier)
    assert model.get_submodule(entry.classifier.name).weight.shape == (4, 84)
    assert models.count_parameters(model) == entry.count_parameters(3, 4)


def test_input_size_option_rebuilds_linear_sizes():
    model = models.create(str(EXAMPLE), input_size=64)
    assert model(torch.randn(1, 1, 64, 64)).shape == (1, 10)
    fixed = build_model(LENET, input_size=36)
    assert fixed[-3].in_features == 120 * 2 * 2


def test_min_input_size_of_fixed_and_pooled_networks():
    assert min_input_size({**LENET, "input_size": 32}) == 32
    assert min_input_size({"layers": [{"conv": {"out": 4, "kernel": 5}}, {"pool": {"output": 1}}, "flatten"]}) == 5


# -- errors name the layer, the shapes and the fix -------------------------------------------------

@pytest.mark.parametrize("layers,message", [
    ([{"conv": 8}, "flatten", {"linear": {"in": 512, "out": 10}}],
     r"layer 3 \(linear\): expects 512 inputs but receives 8x30x30=7200 — fix: set `in: 7200`"),
    ([{"conv": {"out": 8, "kernel": 5}}, "maxpool", "maxpool", "maxpool", "maxpool", {"conv": {"out": 8, "kernel": 3}}],
     r"layer 6 \(conv\): its 3x3 window \(padding 0\) does not fit the 8x1x1 input — fix: use a smaller kernel"),
    (["flatten", {"conv": 8}], r"layer 2 \(conv\): needs a CxHxW feature map but receives 1024 features"),
    ([{"cnov": 8}], r"layer 1: unknown layer type 'cnov' — fix: did you mean conv"),
    ([{"conv": {"out": 8, "kernal": 3}}], r"layer 1 \(conv\): unknown option 'kernal' — fix: did you mean kernel"),
    ([{"conv": {"kernel": 3}}], r"layer 1 \(conv\): missing option 'out'"),
    ([{"conv": {"out": 6, "groups": 4}}], r"layer 1 \(conv\): groups=4 must divide both its 1 input and 6 output"),
    ([{"activation": "rleu"}], r"layer 1 \(activation\): unknown activation 'rleu' — fix: did you mean relu"),
    ([{"dropout": 1.5}], r"layer 1 \(dropout\): p must be a probability"),
    ([{"pool": {"kind": "mean"}}], r"layer 1 \(pool\): kind must be max or avg"),
    ([{"flatten": 3}], r"layer 1 \(flatten\): takes no value"),
    ([{"linear": {"out": "classes"}}, {"linear": 4}], r"the network ends in 4 values but must end in num_classes=10"),
    ([[1, 2]], r"layer 1: cannot read \[1, 2\] as a layer"),
    ([{"conv": 8}, {"batchnorm": {"eps": "abc"}}], r"layer 2 \(batchnorm\): eps must be a number, got 'abc'"),
    ([{"lrn": {"alpha": "x"}}], r"layer 1 \(lrn\): alpha must be a number"),
    ([{"leaky_relu": {"slope": "steep"}}], r"layer 1 \(activation\): slope must be a number"),
    ([{"conv": {"out": 8, "bias": "no"}}], r"layer 1 \(conv\): bias must be true or false, got 'no'"),
    ([{"maxpool": {"ceil_mode": "yes"}}], r"layer 1 \(maxpool\): ceil_mode must be true or false"),
    ([{"type": ["conv"], "out": 8}], r"layer 1: the layer type must be a name"),
])
def test_bad_specs_name_the_layer_and_the_shapes(layers, message):
    with pytest.raises(ModelError, match=message):
        build(layers)


def test_errors_inside_blocks_give_the_path_to_the_layer():
    inception = {"inception": [[{"conv": {"out": 4, "kernel": 1}}],
                               [{"conv": {"out": 4, "kernel": 3}}]]}
    with pytest.raises(ModelError, match=r"layer 2 \(inception\): branch outputs differ in height/width "
                                         r"\(branch 1: 4x16x16, branch 2: 4x14x14\)"):
        build([{"conv": 8}, inception], size=18)
    nested = {"inception": [[{"conv": 4}], [{"conv": {"out": 4, "kernal": 1}}]]}
    with pytest.raises(ModelError, match=r"layer 1 \(inception\) › branch 2 › layer 1 \(conv\): unknown option"):
        build([nested])
    residual = {"residual": [{"conv": {"out": 16, "padding": 1}}]}
    with pytest.raises(ModelError, match=r"layer 1 \(residual\): the body turns 1x8x8 into 16x8x8.*"
                                         r"fix: add `projection: auto`"):
        build([residual], size=8)
    projected = {"residual": {"body": [{"conv": {"out": 16, "padding": 1, "stride": 2}}],
                              "projection": [{"conv": {"out": 8, "kernel": 1}}]}}
    with pytest.raises(ModelError, match=r"the projection gives 8x8x8 but the body gives 16x4x4"):
        build([projected], size=8)


def test_file_level_errors(tmp_path):
    with pytest.raises(ModelError, match=r"model spec file .*missing.yaml' does not exist"):
        models.info(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("layers: [conv: {out: 3\n")
    with pytest.raises(ModelError, match=r"cannot parse model spec .*fix the file's YAML/JSON syntax"):
        load_spec(bad)
    with pytest.raises(ModelError, match=r"net.yaml: unknown top-level key 'layer' — fix: did you mean layers"):
        load_spec(write(tmp_path, {"layers": ["relu"], "layer": []}))
    with pytest.raises(ModelError, match=r"needs a `layers:` list"):
        load_spec(write(tmp_path, {"input_size": 3}))
    with pytest.raises(ModelError, match=r"input_size must be a positive integer"):
        load_spec(write(tmp_path, {"input_size": "big", "layers": ["relu"]}))
    with pytest.raises(ModelError, match=r"^net: layer 2 \(linear\): expects 5 inputs"):
        models.create(str(write(tmp_path, {"layers": ["flatten", {"linear": {"in": 5, "out": 3}}]})))


def test_batchnorm_momentum_null_is_the_cumulative_average():
    model = build([{"conv": 8}, {"batchnorm": {"momentum": None}}])
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and norms[0].momentum is None


def test_yaml_alias_bombs_and_recursive_aliases_are_refused_quickly(tmp_path):
    import time

    bomb = tmp_path / "bomb.yaml"
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
              f"*a{i - 1}, *a{i - 1}]" for i in range(1, 9)]
    lines += ["layers: *a8"]
    bomb.write_text("\n".join(lines))
    started = time.perf_counter()
    with pytest.raises(ModelError, match=r"cannot parse model spec .*bomb.yaml.*alias"):
        load_spec(bomb)
    assert time.perf_counter() - started < 5
    recursive = tmp_path / "loop.yaml"
    recursive.write_text("layers: &l [conv, *l]\n")
    with pytest.raises(ModelError, match="cannot parse model spec"):
        load_spec(recursive)


def test_a_diagram_that_cannot_be_written_is_one_error(tmp_path):
    from tests.conftest import run_cli

    done = run_cli("models", "show", "lenet5", "--diagram", "/proc/striate-test.svg")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "cannot write the diagram to /proc/striate-test.svg" in done.stderr
