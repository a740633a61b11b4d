"""Checkpoints: model weights as safetensors, training state as a state dict loaded with weights_only=True."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save_file


def save_weights(model: torch.nn.Module, path: Path) -> str:
    """Write the model's weights to ``path`` (safetensors); return the weights hash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with _atomic(path) as tmp:
        save_file(tensors, str(tmp))
    return weights_hash(tensors)


def weights_hash(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over parameter names, shapes, dtypes and bytes: equal iff the weights are bit-identical."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().to("cpu").contiguous()
        digest.update(f"{key}:{tuple(t.shape)}:{t.dtype}\n".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def structure_hash(model: torch.nn.Module) -> str:
    """SHA-256 of the architecture: module types in order plus every parameter's name, shape and dtype."""
    digest = hashlib.sha256()
    for name, module in model.named_modules():
        digest.update(f"{name}:{type(module).__module__}.{type(module).__qualname__}\n".encode())
    for key, tensor in model.state_dict().items():
        digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype}\n".encode())
    return digest.hexdigest()


def load_weights(model: torch.nn.Module, path: Path, strict: bool = True) -> None:
    """Load safetensors weights into ``model``."""
    model.load_state_dict(load_file(str(path)), strict=strict)


def save_training_state(path: Path, state: dict[str, Any]) -> None:
    """Write optimizer/scheduler/RNG state (tensors and plain data only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _atomic(path) as tmp:
        torch.save(state, tmp)


def load_training_state(path: Path) -> dict[str, Any]:
    """Read a training state without unpickling arbitrary objects."""
    return torch.load(path, map_location="cpu", weights_only=True)


@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """Write to a temporary name and rename: an interrupted save never leaves a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
