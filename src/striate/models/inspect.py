"""Layer tables of models by name: output shape, parameters and multiply-adds of every layer.

The table itself (and the multiply-add convention) is in ``_layer_table``; this module builds
the named model, on the ``meta`` device where it can.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from striate.errors import ModelError
from striate.models._layer_table import LayerRow, LayerTable, layer_macs, layer_table, layer_type

__all__ = ["LayerRow", "LayerTable", "inspect_model", "layer_macs", "layer_table", "layer_type", "summarize"]


def summarize(name: str, input_shape: tuple[int, int, int], num_classes: int = 10,
              **options: Any) -> LayerTable:
    """The layer table of model ``name`` built on the meta device (falls back to CPU if meta fails)."""
    return inspect_model(name, input_shape, num_classes, **options)[1]


def inspect_model(name: str, input_shape: tuple[int, int, int], num_classes: int = 10,
                  **options: Any) -> tuple[nn.Module, LayerTable]:
    """Model ``name`` built for ``input_shape`` on the meta device (CPU if meta fails) and its layer table."""
    from striate import models

    try:
        with torch.device("meta"):
            model = models.create(name, num_classes=num_classes, in_channels=input_shape[0], **options)
        return model, layer_table(model, input_shape)
    except (NotImplementedError, RuntimeError, ModelError):
        # Some operations have no meta implementation; real tensors always work (a real error raises again).
        model = models.create(name, num_classes=num_classes, in_channels=input_shape[0], **options)
        return model, layer_table(model, input_shape)
