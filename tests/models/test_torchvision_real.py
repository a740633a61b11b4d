"""Against real torchvision, where it is installed: its weights load strictly and give the same logits.

torchvision is not a dependency (its PyPI wheel does not import beside this machine's CPU torch),
so CI skips these; they run on machines that have it, such as the lent GPU machines.
test_torchvision_layouts.py checks the same key tables without torchvision, and
test_golden_logits.py the logits, against ones torchvision computed (scripts/make-golden-logits.py).
"""

from __future__ import annotations

import pytest
import torch

from striate import models

tv_models = pytest.importorskip("torchvision.models")

# striate name -> builder of the torchvision model (random weights; nothing is downloaded)
PAIRS = {
    "alexnet": lambda: tv_models.alexnet(weights=None),
    "vgg11": lambda: tv_models.vgg11(weights=None),
    "vgg11-bn": lambda: tv_models.vgg11_bn(weights=None),
    "vgg13": lambda: tv_models.vgg13(weights=None),
    "vgg13-bn": lambda: tv_models.vgg13_bn(weights=None),
    "vgg16": lambda: tv_models.vgg16(weights=None),
    "vgg16-bn": lambda: tv_models.vgg16_bn(weights=None),
    "vgg19": lambda: tv_models.vgg19(weights=None),
    "vgg19-bn": lambda: tv_models.vgg19_bn(weights=None),
    "googlenet-bn": lambda: tv_models.googlenet(weights=None, aux_logits=True, init_weights=True),
}


def randomize_batch_norm_statistics(model: torch.nn.Module) -> None:
    """Non-trivial running statistics, so eval-mode BatchNorm is really compared."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_torchvision_weights_load_strictly_and_compute_the_same_logits(name):
    torch.manual_seed(0)
    reference = PAIRS[name]()
    with torch.no_grad():
        randomize_batch_norm_statistics(reference)
    ours = models.create(name, num_classes=1000, in_channels=3)
    result = ours.load_state_dict(reference.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    reference.eval()
    ours.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    assert got.shape == (2, 1000)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
