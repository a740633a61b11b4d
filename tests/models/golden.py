"""The recipe behind tests/models/golden/torchvision-logits.json, shared by its test and its script.

scripts/make-golden-logits.py (run where torchvision is installed) builds each torchvision model,
loads the weights ``seeded_state`` makes, runs ``inputs()`` and stores torchvision's logits. The
test rebuilds the same weights from the same recipe, without torchvision, and compares
striate's logits with the stored ones.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
from torch import nn

from striate import models

GOLDEN = Path(__file__).resolve().parent / "golden" / "torchvision-logits.json"
# striate name -> torchvision builder (torchvision.models.<builder>(weights=None, num_classes=...))
PAIRS = {"alexnet": "alexnet", "vgg11": "vgg11", "vgg11-bn": "vgg11_bn", "vgg13": "vgg13", "vgg13-bn": "vgg13_bn",
         "vgg16": "vgg16", "vgg16-bn": "vgg16_bn", "vgg19": "vgg19", "vgg19-bn": "vgg19_bn",
         "googlenet-bn": "googlenet"}
SEED = 2026
NUM_CLASSES = 10
INPUT_SHAPE = (2, 3, 64, 64)  # above every model's minimum, small enough for CPU
# Each tensor tiles one seeded N(0, 1) block of this many values: a prime, so rows and channels never line
# up with the period and a transposed or misplaced tensor still changes the logits. Generating 140 M
# values for a VGG outright would take seconds per model.
PERIOD = 65_521


def striate_model(name: str) -> nn.Module:
    """striate's ``name`` at 3 channels and NUM_CLASSES classes, holding the seeded weights, in eval mode."""
    with torch.device("meta"):
        model = models.create(name, num_classes=NUM_CLASSES, in_channels=3)
    model.load_state_dict(seeded_state(model), assign=True)
    return model.eval()


def seeded_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Deterministic weights for every state_dict entry of ``model``, drawn in key order from SEED.

    Weights are scaled by sqrt(2 / fan-in) so activations keep their size through VGG-19;
    BatchNorm gets scales near 1, small shifts and means, and variances in [0.5, 1.5).
    """
    generator = torch.Generator().manual_seed(SEED)
    state: dict[str, torch.Tensor] = {}
    for key, like in model.state_dict().items():
        if not like.is_floating_point():
            state[key] = torch.zeros(like.shape, dtype=like.dtype)  # num_batches_tracked
            continue
        numel = like.numel()
        block = torch.randn(min(numel, PERIOD), generator=generator)
        values = block.repeat(math.ceil(numel / block.numel()))[:numel].view(like.shape)
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "running_var":
            values = 1.0 + torch.rand(like.shape, generator=generator) - 0.5
        elif leaf in ("running_mean", "bias"):
            values = 0.1 * values
        elif like.ndim == 1:  # a BatchNorm scale
            values = 1.0 + 0.1 * values
        else:
            values = values * math.sqrt(2.0 / (numel // like.shape[0]))
        state[key] = values.contiguous()
    return state


def inputs() -> torch.Tensor:
    """The fixed input batch."""
    return torch.randn(INPUT_SHAPE, generator=torch.Generator().manual_seed(SEED + 1))


def layout_digest(model: nn.Module) -> str:
    """SHA-256 of the state_dict's keys and shapes in order: the seeded weights depend on exactly these."""
    text = "\n".join(f"{key}:{tuple(t.shape)}" for key, t in model.state_dict().items())
    return hashlib.sha256(text.encode()).hexdigest()
