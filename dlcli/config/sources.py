"""The names `data.source` takes, by kind: plain tuples, importable without the schema (a
served run reads its kind from these before, or without, loading any config model)."""

from __future__ import annotations

SKLEARN_SOURCES = ("digits", "iris", "wine", "breast_cancer", "diabetes")
KERAS_SOURCES = ("mnist", "fashion_mnist", "cifar10", "cifar100")
TABLE_SOURCES = ("csv", "parquet")
MEDIA_SOURCES = (
    "images",
    "text",
    "audio",
)  # a folder of files (a sub-folder per class), or a table
FILE_SOURCES = (*TABLE_SOURCES, "npz", *MEDIA_SOURCES)
MEDIA_KEYS = {  # the keys each media source alone takes
    "images": ("image_size", "color_mode"),
    "text": ("text",),
    "audio": ("sampling_rate", "output_sequence_length"),
}

__all__ = [
    "FILE_SOURCES",
    "KERAS_SOURCES",
    "MEDIA_KEYS",
    "MEDIA_SOURCES",
    "SKLEARN_SOURCES",
    "TABLE_SOURCES",
]
