"""Image data: item sources, decoding + presizing, a decoded cache, device loaders, the bunch
(`ImageDataBunch` / `ImageDataLoaders`), `untar_data` + `URLs`, and the embedded demo dataset.

See bunch.py for the pipeline defaults and loader.py for how a batch travels to the device.
"""

from .bunch import (
    DatasetType,
    ImageDataBunch,
    ImageDataLoaders,
    Normalize,
    PadMode,
    RandomResizedCrop,
    Resize,
    ResizeMethod,
    imagenet_stats,
)
from .cache import DecodedCache
from .demo import DEMO_CLASSES, demo_dataset
from .download import URLs, download_images, download_url, extract_archive, untar_data
from .images import BadImageError, load_image, presize, to_rgb, verify_images
from .items import (
    IMAGE_EXTENSIONS,
    ItemSplit,
    MissingPathError,
    get_image_files,
    items_from_folder,
    items_from_lists,
    items_from_name_func,
    items_from_name_re,
    items_from_table,
    random_split,
    read_labels_csv,
)
from .loader import DeviceDataLoader, ImageDataset, default_num_workers
from .open import Image, PILImage, open_image
from .paths import DataPath, cache_dir, data_dir, home_dir

__all__ = [
    "BadImageError",
    "DEMO_CLASSES",
    "DataPath",
    "DatasetType",
    "DecodedCache",
    "DeviceDataLoader",
    "IMAGE_EXTENSIONS",
    "Image",
    "PILImage",
    "ImageDataBunch",
    "ImageDataLoaders",
    "ImageDataset",
    "ItemSplit",
    "MissingPathError",
    "Normalize",
    "PadMode",
    "RandomResizedCrop",
    "Resize",
    "ResizeMethod",
    "URLs",
    "cache_dir",
    "data_dir",
    "default_num_workers",
    "demo_dataset",
    "download_images",
    "download_url",
    "extract_archive",
    "get_image_files",
    "home_dir",
    "imagenet_stats",
    "items_from_folder",
    "items_from_lists",
    "items_from_name_func",
    "items_from_name_re",
    "items_from_table",
    "load_image",
    "open_image",
    "presize",
    "random_split",
    "read_labels_csv",
    "to_rgb",
    "untar_data",
    "verify_images",
]
