"""Datasets: fetching, verifying and serving image batches on the training device."""

from striate.data.catalog import DATASETS, DatasetSpec, FileSpec
from striate.data.loader import DeviceBatches, ImageDataset, Split, load_dataset

__all__ = ["DATASETS", "DatasetSpec", "DeviceBatches", "FileSpec", "ImageDataset", "Split", "load_dataset"]
