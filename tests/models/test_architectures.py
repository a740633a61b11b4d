"""The classic architectures: parameter counts, input sizes, shapes, gradients, auxiliary heads.

Counts and shape sweeps run on the meta device (shapes only: no memory, no arithmetic);
real forward and backward passes use the small-input variants, plus one real forward of
each ImageNet-sized net at its design size.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from striate import models
from striate.errors import ModelError
from striate.models.googlenet import PAPER, InceptionAux

VGGS = ["vgg11", "vgg11-bn", "vgg13", "vgg13-bn", "vgg16", "vgg16-bn", "vgg19", "vgg19-bn"]
NAMES = ["alexnet", "alexnet-2012", "googlenet", "googlenet-bn", "lenet5-1998", *VGGS]
AUX = ["googlenet", "googlenet-bn"]

# Trainable parameters at 3 input channels and 1000 classes (lenet5-1998: 1 channel, 10 classes).
PARAMETERS = [
    ("alexnet", {}, 61_100_840),
    ("alexnet-2012", {}, 60_965_224),
    ("googlenet", {}, 13_378_280),
    ("googlenet", {"aux_logits": False}, 6_998_552),
    ("googlenet-bn", {}, 13_004_888),
    ("googlenet-bn", {"aux_logits": False}, 6_624_904),
    ("vgg11", {}, 132_863_336),
    ("vgg11-bn", {}, 132_868_840),
    ("vgg13", {}, 133_047_848),
    ("vgg13-bn", {}, 133_053_736),
    ("vgg16", {}, 138_357_544),
    ("vgg16-bn", {}, 138_365_992),
    ("vgg19", {}, 143_667_240),
    ("vgg19-bn", {}, 143_678_248),
    ("vgg16", {"small_input": True}, 138_357_544),
    ("alexnet", {"small_input": True}, 61_100_840),
]


def meta_model(name: str, num_classes: int = 10, in_channels: int = 1, **options: object) -> nn.Module:
    """``name`` built on the meta device: shapes and counts without memory or arithmetic."""
    with torch.device("meta"):
        return models.create(name, num_classes=num_classes, in_channels=in_channels, **options)


def meta_forward(model: nn.Module, batch: int, channels: int, size: int) -> torch.Size:
    """The output shape of ``model`` for a batch of ``size`` x ``size`` inputs."""
    with torch.no_grad():
        return model(torch.empty(batch, channels, size, size, device="meta")).shape


# --- parameter counts and registry metadata -----------------------------------------------------

@pytest.mark.parametrize("name,options,expected", PARAMETERS)
def test_parameter_counts(name, options, expected):
    assert models.count_parameters(meta_model(name, 1000, 3, **options)) == expected


def test_lenet5_1998_parameter_count():
    assert models.count_parameters(meta_model("lenet5-1998", 10, 1)) == 60_000


# --- output shapes ------------------------------------------------------------------------------

@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", NAMES)
def test_output_shapes_for_many_input_sizes(name, channels):
    default = meta_model(name, 7, channels).eval()
    small = meta_model(name, 7, channels, small_input=True).eval()
    for size in (32, 64, 224, 300):
        if size >= models.info(name).min_input_size:
            assert meta_forward(default, 2, channels, size) == (2, 7), size
    for size in (28, 32, 64):
        assert meta_forward(small, 2, channels, size) == (2, 7), size


@pytest.mark.parametrize("name,width", [("alexnet", 9216), ("alexnet-2012", 9216), ("googlenet", 1024),
                                        ("googlenet-bn", 1024), ("lenet5-1998", 120), ("vgg16", 25088)])
def test_forward_features_width(name, width):
    size = models.info(name).input_size
    with torch.no_grad():
        features = meta_model(name).forward_features(torch.empty(2, 1, size, size, device="meta"))
    assert features.shape == (2, width)


@pytest.mark.parametrize("name", ["alexnet", "alexnet-2012", "googlenet", "googlenet-bn", "vgg16"])
def test_real_forward_at_the_design_size(name):
    torch.manual_seed(0)
    model = models.create(name, num_classes=1000, in_channels=3).eval()
    size = models.info(name).input_size
    with torch.no_grad():
        out = model(torch.randn(1, 3, size, size))
    assert out.shape == (1, 1000) and out.isfinite().all()


# --- small inputs: real forward and backward ----------------------------------------------------

# Two VGGs stand for all eight here (one builder, configs A and E, with and without BatchNorm): each
# VGG takes seconds to build, and test_registry.py already runs every one forward and backward.
REAL = [name for name in NAMES if not name.startswith("vgg")] + ["vgg11", "vgg19-bn"]


@pytest.fixture(scope="module", params=REAL)
def small_model(request) -> tuple[str, nn.Module]:
    """Each architecture once, in its small-input variant, 3 channels, 5 classes."""
    torch.manual_seed(0)
    return request.param, models.create(request.param, num_classes=5, in_channels=3, small_input=True)


def test_small_input_shapes(small_model):
    name, model = small_model
    model.eval()
    with torch.no_grad():
        for size in (28, 32):  # larger sizes: the meta-device sweep above
            out = model(torch.randn(2, 3, size, size))
            assert out.shape == (2, 5) and out.isfinite().all(), (name, size)


def test_small_input_forward_backward(small_model):
    name, model = small_model
    model.train()
    model.zero_grad(set_to_none=True)
    x, y = torch.randn(2, 3, 28, 28), torch.tensor([1, 4])
    if hasattr(model, "forward_with_aux"):
        logits, aux = model.forward_with_aux(x)
        loss = F.cross_entropy(logits, y) + model.aux_loss_weight * sum(F.cross_entropy(a, y) for a in aux)
    else:
        logits = model(x)
        loss = F.cross_entropy(logits, y)
    loss.backward()
    assert logits.shape == (2, 5) and loss.isfinite()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.isfinite().all()]
    assert not missing, (name, missing[:3])


# --- auxiliary heads ----------------------------------------------------------------------------

@pytest.fixture(scope="module", params=AUX)
def aux_model(request) -> nn.Module:
    """A GoogLeNet with auxiliary heads, small-input variant (28x28 meets 4a at 14x14, as 224 does)."""
    torch.manual_seed(0)
    return models.create(request.param, num_classes=6, in_channels=1, small_input=True)


def test_aux_heads_in_training_mode(aux_model):
    aux_model.train()
    x = torch.randn(2, 1, 28, 28)
    assert isinstance(aux_model(x), torch.Tensor) and aux_model(x).shape == (2, 6)
    logits, aux = aux_model.forward_with_aux(x)
    assert logits.shape == (2, 6)
    assert isinstance(aux, list) and [a.shape for a in aux] == [(2, 6), (2, 6)]
    assert aux_model.aux_loss_weight == 0.3


def test_aux_heads_in_eval_mode(aux_model):
    aux_model.eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        out = aux_model(x)
        logits, aux = aux_model.forward_with_aux(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 6)
    assert aux == [] and torch.equal(logits, out)


def test_forward_never_runs_the_aux_heads(aux_model):
    aux_model.train()
    aux_model.zero_grad(set_to_none=True)
    aux_model(torch.randn(2, 1, 28, 28)).sum().backward()
    assert aux_model.aux1.fc2.weight.grad is None and aux_model.aux2.conv.conv.weight.grad is None
    assert aux_model.fc.weight.grad is not None


@pytest.mark.parametrize("name", AUX)
def test_without_aux_heads(name):
    model = models.create(name, in_channels=1, aux_logits=False, small_input=True).train()
    logits, aux = model.forward_with_aux(torch.randn(2, 1, 28, 28))
    assert logits.shape == (2, 10) and aux == []
    assert model.aux1 is None and model.aux2 is None and model.aux_loss_weight == 0.3


def test_paper_aux_head_pools_5x5_stride_3():
    torch.manual_seed(0)
    head = InceptionAux(8, 3, PAPER).eval()
    x = torch.randn(2, 8, 14, 14)  # what 4a / 4d give at 224 px
    pooled = F.avg_pool2d(x, 5, stride=3)  # N x 8 x 4 x 4
    expected = head.fc2(F.relu(head.fc1(torch.flatten(head.conv(pooled), 1))))
    torch.testing.assert_close(head(x), expected)


# --- what makes each flavour what it is ---------------------------------------------------------

def test_googlenet_paper_and_torchvision_flavours():
    paper, tv = meta_model("googlenet"), meta_model("googlenet-bn")
    assert paper.inception4a.branch3[1].conv.kernel_size == (5, 5)
    assert tv.inception4a.branch3[1].conv.kernel_size == (3, 3)
    assert paper.conv1.conv.bias is not None and tv.conv1.conv.bias is None
    assert not any(isinstance(m, nn.BatchNorm2d) for m in paper.modules())
    assert {m.eps for m in tv.modules() if isinstance(m, nn.BatchNorm2d)} == {0.001}
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in paper.modules()) == 2
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in tv.modules())
    assert (paper.dropout.p, tv.dropout.p, paper.aux1.dropout.p, tv.aux2.dropout.p) == (0.4, 0.2, 0.7, 0.7)
    assert (paper.maxpool4.kernel_size, tv.maxpool4.kernel_size) == (3, 2)


def test_alexnet_2012_is_two_towers():
    convs = [m for m in meta_model("alexnet-2012", 1000, 3).features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    assert [tuple(c.weight.shape[1:]) for c in convs] == [(3, 11, 11), (48, 5, 5), (256, 3, 3), (192, 3, 3),
                                                          (192, 3, 3)]


def test_alexnet_2012_lrn_is_the_papers_formula():
    lrn = [m for m in meta_model("alexnet-2012").features if isinstance(m, nn.LocalResponseNorm)]
    assert len(lrn) == 2
    a = torch.rand(1, 12, 3, 3) * 30  # large activations, so the normalisation matters
    # b_i = a_i / (k + alpha * sum_{j=max(0,i-n/2)}^{min(N-1,i+n/2)} a_j^2)^beta, k=2, n=5, alpha=1e-4, beta=0.75
    square_sums = torch.stack([(a[:, max(0, i - 2):i + 3] ** 2).sum(1) for i in range(12)], 1)
    expected = a / (2 + 1e-4 * square_sums) ** 0.75
    real_lrn = nn.LocalResponseNorm(lrn[0].size, alpha=lrn[0].alpha, beta=lrn[0].beta, k=lrn[0].k)
    torch.testing.assert_close(real_lrn(a), expected)


def test_alexnet_2012_initialisation_and_dropout_placement():
    torch.manual_seed(0)
    model = models.create("alexnet-2012", small_input=True)
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert [layer.bias.detach().mean().item() for layer in layers] == [0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    assert abs(layers[5].weight.detach().std().item() - 0.01) < 1e-3
    assert [type(m).__name__ for m in model.classifier] == ["Linear", "ReLU", "Dropout", "Linear", "ReLU",
                                                            "Dropout", "Linear"]


# --- options (the classifier reset and input sizes: test_records.py) ----------------------------

def test_googlenet_bn_transform_input():
    with pytest.raises(ModelError, match="transform_input"):
        models.create("googlenet-bn", in_channels=1, transform_input=True)
    model = meta_model("googlenet-bn", 1000, 3, transform_input=True)
    x = torch.rand(1, 3, 2, 2)
    expected = torch.cat([x[:, 0:1] * (0.229 / 0.5) + (0.485 - 0.5) / 0.5,
                          x[:, 1:2] * (0.224 / 0.5) + (0.456 - 0.5) / 0.5,
                          x[:, 2:3] * (0.225 / 0.5) + (0.406 - 0.5) / 0.5], 1)
    torch.testing.assert_close(model._normalize_input(x), expected)


@pytest.mark.parametrize("name", ["alexnet", "googlenet", "vgg11"])
def test_unknown_options_are_rejected(name):
    with pytest.raises(ModelError, match="invalid option"):
        models.create(name, small_inputs=True)


@pytest.mark.parametrize("size", [5, 7])  # 5: the whole-window fast path; 7: the ordinary convolution
def test_lenet_c5_fast_path_matches_a_plain_convolution(size):
    from striate.models.lenet import FullWindowConv2d

    torch.manual_seed(0)
    plain = torch.nn.Conv2d(16, 120, kernel_size=5)
    fast = FullWindowConv2d(16, 120, kernel_size=5)
    fast.load_state_dict(plain.state_dict())
    for memory_format in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(8, 16, size, size).contiguous(memory_format=memory_format)
        out_plain, out_fast = plain(x), fast(x)
        assert out_fast.shape == out_plain.shape == (8, 120, size - 4, size - 4)
        torch.testing.assert_close(out_fast, out_plain, rtol=1e-5, atol=1e-5)
        grads_plain = torch.autograd.grad(out_plain.square().sum(), list(plain.parameters()))
        grads_fast = torch.autograd.grad(out_fast.square().sum(), list(fast.parameters()))
        for a, b in zip(grads_fast, grads_plain):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
