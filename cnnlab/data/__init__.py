"""Data: named data sets as uint8 tensors, IDX reading, search path and downloads, splits, images.

See DESIGN.md, section "Data sources".
"""

from cnnlab.data.idx import read_idx
from cnnlab.data.images import load_image_file, save_image_file
from cnnlab.data.locate import cache_dir, locate_dataset, search_dirs
from cnnlab.data.sources import (
    DATASETS,
    DatasetSource,
    ImageDataset,
    dataset_info,
    load_dataset,
)
from cnnlab.data.splits import channel_mean_std, stratified_split

__all__ = [
    "DATASETS",
    "DatasetSource",
    "ImageDataset",
    "cache_dir",
    "channel_mean_std",
    "dataset_info",
    "load_dataset",
    "load_image_file",
    "locate_dataset",
    "read_idx",
    "save_image_file",
    "search_dirs",
    "stratified_split",
]
