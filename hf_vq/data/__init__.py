"""Images and where they come from: decoding, resizing, 8-bit conversion and grids (`images.py`); training and
evaluation images as `datasets` streams from the Hub, a folder, parquet / webdataset shards or the built-in photos
(`sources.py`), local or Hub decided up front (`locations.py`).

Imports nothing else of hf-vq, so that training, evaluation and the commands all prepare images one way.
"""

from .images import (
    center_crop,
    check_image_files,
    comparison_grid,
    decode_image,
    from_uint8,
    load_image,
    prepare_image,
    resize_shorter_side,
    side_by_side,
    to_pil,
    to_rgb,
    to_tensor,
    to_uint8,
)
from .locations import check_dataset_source
from .sources import (
    BUILTIN_DATASET,
    BUILTIN_DESCRIPTION,
    BUILTIN_EVAL_PHOTOS,
    BUILTIN_TRAIN_PHOTOS,
    ImageTransform,
    TrainStream,
    build_train_dataloader,
    build_train_stream,
    builtin_eval_crops,
    builtin_photo_paths,
    collate_images,
    default_eval_split,
    find_image_column,
    load_eval_images,
    load_raw_dataset,
)

__all__ = [
    "BUILTIN_DATASET",
    "BUILTIN_DESCRIPTION",
    "BUILTIN_EVAL_PHOTOS",
    "BUILTIN_TRAIN_PHOTOS",
    "ImageTransform",
    "TrainStream",
    "build_train_dataloader",
    "build_train_stream",
    "builtin_eval_crops",
    "builtin_photo_paths",
    "center_crop",
    "check_dataset_source",
    "check_image_files",
    "collate_images",
    "comparison_grid",
    "decode_image",
    "default_eval_split",
    "find_image_column",
    "from_uint8",
    "load_eval_images",
    "load_image",
    "load_raw_dataset",
    "prepare_image",
    "resize_shorter_side",
    "side_by_side",
    "to_pil",
    "to_rgb",
    "to_tensor",
    "to_uint8",
]
