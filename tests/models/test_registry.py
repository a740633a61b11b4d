import pytest
import torch

from striate import models
from striate.errors import ModelError

ALL = models.names()


def test_lenet5_is_registered_with_its_parameter_count():
    assert "lenet5" in ALL
    assert models.count_parameters(models.create("lenet5", num_classes=10, in_channels=1)) == 61_706


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("in_channels,num_classes", [(1, 10), (3, 7)])
def test_forward_backward_shapes(name, in_channels, num_classes):
    model = models.create(name, num_classes=num_classes, in_channels=in_channels)
    size = max(models.info(name).min_input_size, 32)  # the design size is covered per architecture, batch 1
    x = torch.randn(2, in_channels, size, size)
    # Auxiliary heads (GoogLeNet) only run through forward_with_aux; forward returns the main logits.
    out, aux = model.forward_with_aux(x) if hasattr(model, "forward_with_aux") else (model(x), [])
    assert out.shape == (2, num_classes)
    (out.sum() + sum(a.sum() for a in aux)).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", [n for n in ALL if models.info(n).small_input_min_size is not None])
def test_small_input_variants_take_their_declared_minimum(name):
    entry = models.info(name)
    size = entry.min_size({"small_input": True})
    model = models.create(name, small_input=True).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, size, size)).shape == (1, 10)


@pytest.mark.parametrize("name", ALL)
def test_larger_inputs_work(name):
    model = models.create(name).eval()
    size = 2 * max(models.info(name).min_input_size, 32)
    with torch.no_grad():
        assert model(torch.randn(1, 1, size, size)).shape == (1, 10)


def test_reset_classifier_changes_class_count():
    model = models.create("lenet5")
    models.reset_classifier(model, 3)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3)


def test_unknown_model_suggests_close_names():
    with pytest.raises(ModelError, match="unknown model 'lenet'.*lenet5"):
        models.create("lenet")


@pytest.mark.parametrize("kwargs", [{"num_classes": 0}, {"in_channels": -1}, {"bogus_option": 1}])
def test_invalid_arguments_are_rejected(kwargs):
    with pytest.raises(ModelError):
        models.create("lenet5", **kwargs)


def test_lenet5_pool_then_relu_equals_relu_then_pool():
    model = models.create("lenet5").eval()
    x = torch.randn(8, 1, 32, 32)
    conv1, conv3 = model.features[0], model.features[3]
    reference = torch.relu(conv1(x))
    reference = torch.nn.functional.max_pool2d(reference, 2)
    reference = torch.nn.functional.max_pool2d(torch.relu(conv3(reference)), 2)
    with torch.no_grad():
        assert torch.allclose(model.features[:6](x), reference, atol=1e-6)
