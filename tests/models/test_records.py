"""Every registered model's record (ModelInfo) against a real build, and what reads the records.

Models are built on the meta device (shapes only: no memory, no arithmetic) unless values matter.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from striate import models
from striate.errors import ConfigError, ModelError
from striate.models.inspect import layer_table
from striate.train.pretrained import load_pretrained

NAMES = models.names()


def meta_model(name: str, channels: int, classes: int, **options: object) -> nn.Module:
    """``name`` built on the meta device."""
    with torch.device("meta"):
        return models.create(name, num_classes=classes, in_channels=channels, **options)


def meta_forward(model: nn.Module, channels: int, size: int, batch: int = 1) -> torch.Size:
    """The output shape for a batch of ``size`` x ``size`` inputs."""
    with torch.no_grad():
        return model(torch.empty(batch, channels, size, size, device="meta")).shape


def reference(name: str) -> tuple[models.ModelInfo, nn.Module]:
    """The record and the model built at the record's reference channels and classes."""
    entry = models.info(name)
    return entry, meta_model(name, entry.reference_channels, entry.reference_classes)


# --- the records' facts hold -----------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_reference_counts_match_a_real_build(name):
    entry, model = reference(name)
    assert models.count_parameters(model) == entry.parameters
    assert layer_table(model, (entry.reference_channels, entry.input_size, entry.input_size)).macs == entry.macs


@pytest.mark.parametrize("channels,classes", [(1, 10), (3, 7), (2, 1000)])
@pytest.mark.parametrize("name", NAMES)
def test_counts_for_other_channels_and_classes_follow_from_the_record(name, channels, classes):
    entry = models.info(name)
    model = meta_model(name, channels, classes)
    assert entry.count_parameters(channels, classes) == models.count_parameters(model)
    assert entry.count_macs(channels, classes) == layer_table(model, (channels, entry.input_size,
                                                                      entry.input_size)).macs


@pytest.mark.parametrize("small_input", [False, True], ids=["default", "small"])
@pytest.mark.parametrize("name", NAMES)
def test_min_input_size_works_and_one_pixel_less_fails(name, small_input):
    entry = models.info(name)
    if small_input and entry.small_input_min_size is None:
        with pytest.raises(ModelError, match="invalid option small_input"):
            models.create(name, small_input=True)
        return
    options = {"small_input": True} if small_input else {}
    smallest = entry.min_size(options)
    model = meta_model(name, 1, 10, **options).eval()
    assert meta_forward(model, 1, smallest) == (1, 10)
    with pytest.raises(RuntimeError):
        meta_forward(model, 1, smallest - 1)


@pytest.mark.parametrize("name", NAMES)
def test_first_conv_and_classifiers_exist_with_their_shapes(name):
    entry, model = reference(name)
    state = model.state_dict()
    conv = model.get_submodule(entry.first_conv.name)
    assert isinstance(conv, nn.Conv2d) and state[entry.first_conv.weight_key].shape == entry.first_conv.shape
    # The first convolution in module order, and its output side at the design size is the declared one.
    assert next(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)) == entry.first_conv.name
    rows = layer_table(model, (entry.reference_channels, entry.input_size, entry.input_size))
    assert next(r.output_shape for r in rows if r.name == entry.first_conv.name)[-1] == entry.first_conv.output_size
    for layer in entry.classifiers:
        assert state[layer.weight_key].shape == layer.shape, layer.name
        assert isinstance(model.get_submodule(layer.name), nn.Linear) == layer.trainable
    assert entry.classifier.shape[0] == entry.reference_classes
    # The classifier is the layer whose output the model returns as its logits.
    outputs = []
    model.get_submodule(entry.classifier.name).register_forward_hook(lambda m, i, o: outputs.append(o))
    with torch.no_grad():
        logits = model.eval()(torch.empty(1, entry.reference_channels, entry.input_size, entry.input_size,
                                          device="meta"))
    assert len(outputs) == 1 and outputs[0] is logits


def test_records_are_the_published_figures():
    # torchvision's documented counts and GFLOPS, the papers' LeNet budgets (docs: cnn-references).
    published = {"alexnet": (61_100_840, 0.714), "vgg11": (132_863_336, 7.609), "vgg13": (133_047_848, 11.308),
                 "vgg16": (138_357_544, 15.47), "vgg19": (143_667_240, 19.632), "vgg11-bn": (132_868_840, 7.609),
                 "vgg16-bn": (138_365_992, 15.47), "googlenet-bn": (13_004_888, 1.498)}
    for name, (parameters, gmacs) in published.items():
        entry = models.info(name)
        assert entry.parameters == parameters and round(entry.macs / 1e9, 3) == round(gmacs, 3), name
    assert models.info("lenet5-1998").parameters == 60_000 and models.info("lenet5").parameters == 61_706


# --- one classifier reset, driven by the record ----------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_reset_classifier(name):
    entry, model = reference(name)
    models.reset_classifier(model, 7)
    size = entry.input_size
    assert meta_forward(model.eval(), entry.reference_channels, size, batch=2) == (2, 7)
    for layer in entry.classifiers:
        assert model.state_dict()[layer.weight_key].shape == (7, *layer.shape[1:])
    if entry.aux_classifiers:
        _, aux = model.train().forward_with_aux(torch.empty(2, entry.reference_channels, size, size, device="meta"))
        assert [a.shape for a in aux] == [(2, 7), (2, 7)]


def test_reset_classifier_keeps_device_dtype_and_skips_absent_aux_heads():
    model = models.create("googlenet-bn", aux_logits=False, small_input=True).to(torch.float64)
    models.reset_classifier(model, 3)
    assert model.fc.weight.dtype == torch.float64 and model.fc.out_features == 3 and model.aux1 is None
    assert model(torch.randn(1, 1, 8, 8, dtype=torch.float64)).shape == (1, 3)
    paper = models.create("lenet5-1998").to(torch.float64)
    models.reset_classifier(paper, 26)
    assert paper.rbf.prototypes.shape == (26, 84) and paper.rbf.prototypes.dtype == torch.float64


def test_reset_classifier_uses_the_architectures_init():
    from striate.models.vgg import init_linear

    assert models.info("vgg16").init_classifier() is init_linear
    calls = []
    entry = dataclasses.replace(models.info("lenet5"), classifier_init=calls.append)
    model = models.create("lenet5")
    models.reset_classifier(model, 4, info=entry)
    assert calls == [model.classifier[2]]
    torch.manual_seed(0)
    layer = nn.Linear(4096, 100)
    init_linear(layer)
    assert torch.equal(layer.bias, torch.zeros(100)) and abs(layer.weight.std().item() - 0.01) < 1e-3


def test_models_not_built_by_create_need_their_record():
    from striate.models.lenet import LeNet5

    with pytest.raises(ModelError, match="not built by striate.models.create"):
        models.reset_classifier(LeNet5(), 3)
    bare = LeNet5()
    models.reset_classifier(bare, 3, info=models.info("lenet5"))
    assert bare.classifier[2].out_features == 3


# --- builder options: checked against the signature --------------------------------------------------

def test_bad_options_name_the_option_and_the_valid_ones():
    with pytest.raises(ModelError, match=r"invalid option small_inputs for model 'vgg11' — fix: valid options: "
                                         r"dropout, small_input"):
        models.create("vgg11", small_inputs=True)
    with pytest.raises(ModelError, match=r"invalid options bogus, other for model 'lenet5' — fix: this model takes "
                                         r"no options"):
        models.create("lenet5", bogus=1, other=2)


def test_a_type_error_inside_a_builder_propagates_as_itself():
    # A bad option *value* fails inside the builder (nn.Dropout compares it with numbers): not "invalid option".
    with pytest.raises(TypeError, match="not supported between"):
        models.create("alexnet", dropout="high", small_input=True)


# --- pretrained loading reads the record's names ------------------------------------------------------

def test_pretrained_adapts_the_named_first_conv_and_skips_the_named_classifier(tmp_path):
    torch.manual_seed(0)
    source = models.create("alexnet", num_classes=10, in_channels=3, small_input=True)
    path = tmp_path / "rgb.safetensors"
    save_file(source.state_dict(), str(path))
    target = models.create("alexnet", num_classes=4, in_channels=1, small_input=True)
    fresh = load_pretrained(target, path, num_classes=4)
    assert fresh == ["classifier.6.weight", "classifier.6.bias"]
    rgb = source.features[0].weight
    torch.testing.assert_close(target.features[0].weight, rgb.sum(1, keepdim=True))  # mean x 3 input channels
    torch.testing.assert_close(target.features[3].weight, source.features[3].weight)


def test_pretrained_does_not_guess_by_shape(tmp_path):
    # With the record saying there is no classifier to replace, a file for another class count is refused:
    # the layer is found by its name, not by having num_classes rows.
    torch.manual_seed(0)
    path = tmp_path / "ten.safetensors"
    save_file(models.create("lenet5").state_dict(), str(path))
    no_head = dataclasses.replace(models.info("lenet5"), classifier=None)
    with pytest.raises(ConfigError, match=r"classifier\.2\.\w+ has shape \(10,"):
        load_pretrained(models.create("lenet5", num_classes=3), path, 3, info=no_head)
    assert load_pretrained(models.create("lenet5", num_classes=3), path, 3) == ["classifier.2.weight",
                                                                                 "classifier.2.bias"]
    with pytest.raises(ModelError, match="not built by striate.models.create"):
        from striate.models.lenet import LeNet5

        load_pretrained(LeNet5(num_classes=3), path, 3)


def test_pretrained_rbf_codes_follow_the_class_count(tmp_path):
    path = tmp_path / "paper.safetensors"
    save_file(models.create("lenet5-1998").state_dict(), str(path))
    target = models.create("lenet5-1998", num_classes=26)
    assert load_pretrained(target, path, 26) == ["rbf.prototypes"]
    assert target.rbf.prototypes.shape == (26, 84)


# --- one spec-path check -----------------------------------------------------------------------------

@pytest.mark.parametrize("name,expected", [("net.yaml", True), ("NET.YAML", True), ("a/b.Yml", True),
                                           ("x.JSON", True), ("lenet5", False), ("yaml", False), (None, False)])
def test_is_spec_path(name, expected):
    assert models.is_spec_path(name) is expected


# --- `striate models` lists the records' figures without building a model ----------------------------

@pytest.mark.parametrize("channels,classes", [(1, 10), (3, 1000)])
def test_models_listing_builds_no_model(monkeypatch, channels, classes):
    import json

    from typer.testing import CliRunner

    from striate.cli.models_cmd import models_app
    from striate.models import registry
    from striate.models.inspect import summarize

    def no_building(*args: object, **kwargs: object) -> None:
        raise AssertionError("`striate models` built a model")

    expected = {name: summarize(name, (channels, models.info(name).input_size, models.info(name).input_size),
                                classes) for name in NAMES}
    monkeypatch.setattr(registry, "build", no_building)
    monkeypatch.setattr(models, "_build", no_building)
    done = CliRunner().invoke(models_app, ["--json", "--channels", str(channels), "--classes", str(classes)])
    assert done.exit_code == 0, done.output
    rows = {row["name"]: row for row in json.loads(done.output)}
    assert sorted(rows) == NAMES
    for name, table in expected.items():
        assert (rows[name]["parameters"], rows[name]["macs"]) == (table.parameters, table.macs), name
