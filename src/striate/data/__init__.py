"""Datasets: fetching, verifying and serving image batches on the training device.

The loader (torch) is imported on first use of its names, so fetching and verifying
(`striate data get`) start without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from striate.data.catalog import DATASETS, DatasetSpec, FileSpec

if TYPE_CHECKING:
    from striate.data.loader import DeviceBatches, ImageDataset, Split, load_dataset

_LOADER_NAMES = ("DeviceBatches", "ImageDataset", "Split", "load_dataset")

__all__ = ["DATASETS", "DatasetSpec", "DeviceBatches", "FileSpec", "ImageDataset", "Split", "load_dataset"]


def __getattr__(name: str) -> Any:
    if name in _LOADER_NAMES:
        from striate.data import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'striate.data' has no attribute {name!r}")
