"""`dlcli init --from-data` for images: a folder of class folders (or a table with a column
of image paths) profiled from the files' headers, and a commented config with a small
convolutional model that fits it: the input size, the channels, the classes and their counts.

Only headers are read (PIL opens a file without decoding it), so profiling a folder of
100,000 photos takes seconds; training decodes and checks every file.

Example:
    >>> profile = profile_images("pets/")
    >>> profile.classes, profile.image_size, profile.color_mode
    ([('cat', 120), ('dog', 118)], (128, 128), 'rgb')
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from dlcli.errors import ConfigError, Problem

MAX_SIDE = 128  # the configured input's longer side: larger images are resized down to it
MIN_SIDE = 8  # ... and the shorter side at least this (tiny icons are resized up)
LEAST_FEATURE_MAP = 4  # the conv blocks stop halving before the map is smaller than this
FILTERS = (32, 64, 128)
STEPS = 2000  # the updates a generated image config trains for, about
BATCH = 32


@dataclass
class ImageProfile:
    """What `init --from-data` found in an image folder or table."""

    path: str
    layout: str  # folders | table
    files: int
    classes: list[tuple[str, int]]  # (class, files), in the classes' order
    sizes: Counter = field(default_factory=Counter)  # (width, height) -> files
    modes: Counter = field(default_factory=Counter)  # PIL mode -> files
    formats: Counter = field(default_factory=Counter)
    unreadable: int = 0
    target: str | None = None  # table: the target column
    column: str | None = None  # table: the column of paths

    @property
    def color_mode(self) -> str:
        """grayscale when every image is, rgba when any has transparency, else rgb."""
        if self.modes and all(m in ("1", "L", "I", "I;16", "F") for m in self.modes):
            return "grayscale"
        if any(m in ("RGBA", "LA", "PA") for m in self.modes):
            return "rgba"
        return "rgb"

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width): the most common size, scaled so that the longer side is at most
        `MAX_SIDE` and the shorter at least `MIN_SIDE`."""
        (width, height), _ = self.sizes.most_common(1)[0]
        scale = min(1.0, MAX_SIDE / max(width, height))
        scale = max(scale, MIN_SIDE / min(width, height))
        return max(1, round(height * scale)), max(1, round(width * scale))


def profile_images(path: str | os.PathLike, target: str | int | None = None) -> ImageProfile:
    """The classes, sizes, colour modes and formats of an image folder (or table of paths)."""
    from dlcli.data.media import images
    from dlcli.data.media.listing import IMAGE_SUFFIXES, is_table, list_folder
    from dlcli.init.media import class_counts

    if is_table(path):
        listing = _table_listing(str(path), target)
    else:
        listing = list_folder(path, IMAGE_SUFFIXES, str(path))
    profile = ImageProfile(
        str(path),
        listing.layout,
        len(listing.files),
        class_counts(listing),
        target=listing.target,
        column=listing.column,
    )

    for file in listing.files:
        try:
            width, height, kind, mode = images.header(images.read_head(file, 1 << 18))
        except images.BadImage:
            profile.unreadable += 1
            continue
        profile.sizes[(width, height)] += 1
        profile.modes[mode] += 1
        profile.formats[kind] += 1
    if not profile.sizes:
        raise ConfigError(
            Problem("holds no image PIL can read (PNG, JPEG, BMP, GIF)", where=str(path))
        )
    return profile


def _table_listing(path: str, target):
    """A table of image paths, read with a config that names its target (default: the last
    column that is not the paths)."""
    from dlcli.config.load import load_config
    from dlcli.data.media.listing import IMAGE_SUFFIXES, list_table
    from dlcli.data.tables.tablefile import TableFile

    kind = "parquet" if path.lower().endswith((".parquet", ".pq")) else "csv"
    names = TableFile.open(path, kind=kind).format.names
    column = image_column(path)
    if target is None:
        target = [n for n in names if n != column][-1]
    elif isinstance(target, str) and target.lstrip("-").isdigit():
        target = int(target)
    config = load_config(
        {
            "data": {"source": "images", "path": os.path.abspath(path), "target": target},
            "model": {"layers": [{"type": "Dense"}]},
        }
    )
    return list_table(config, config.data.path, IMAGE_SUFFIXES, "image", column=column)


def blocks_for(size: tuple[int, int]) -> int:
    """Conv blocks (each halves the map) that keep the map at least `LEAST_FEATURE_MAP`."""
    side = min(size)
    return max(1, min(len(FILTERS), int(math.log2(max(1, side // LEAST_FEATURE_MAP)))))


def render_images(
    profile: ImageProfile, config_dir: str | os.PathLike = ".", config_name: str = "config.yaml"
) -> str:
    """The commented YAML config for an image profile; `data.path` relative to `config_dir`."""
    from dlcli.init.render import commented, relative_path, run_name

    relative = relative_path(profile.path, config_dir)
    height, width = profile.image_size
    channels = {"rgb": 3, "grayscale": 1, "rgba": 4}[profile.color_mode]
    train = max(1, int(profile.files * 0.64))
    steps = math.ceil(train / BATCH)
    epochs = min(60, max(15, math.ceil(STEPS / steps)))
    sizes = ", ".join(f"{w}x{h} ({n})" for (w, h), n in profile.sizes.most_common(3))
    if len(profile.sizes) > 3:
        sizes += f" and {len(profile.sizes) - 3} more sizes"
    name = run_name(Path(profile.path).resolve().stem, "images")
    made = (
        f"# An image classification config made by `dlcli init --from-data` from "
        f"{Path(profile.path).name}: {profile.files:,} images, {len(profile.classes)} classes."
    )
    out = [
        made,
        f"# Check it:  dlcli validate {config_name}      Train it:  dlcli train {config_name}",
        "",
        f"name: {name}",
        "seed: 42",
        "",
        "data:",
        "  source: images",
        f"  path: {relative}",
    ]
    if profile.layout == "table":
        out.append(f"  target: {profile.target}")
        out.append(f"  features: [{{name: {profile.column}, type: image}}]")
    modes = ", ".join(f"{m} ({n})" for m, n in profile.modes.most_common())
    out += [
        commented(f"  image_size: [{height}, {width}]", f"sizes found: {sizes}"),
        commented(f"  color_mode: {profile.color_mode}", f"modes found: {modes}"),
        commented("  normalize: 255", "pixels / 255, inside the saved model"),
        commented("  on_bad_file: error", "or skip: leave out files that cannot be decoded"),
        "  # classes (files):",
        *[f"  #   {label}: {count}" for label, count in profile.classes],
    ]
    if profile.unreadable:
        out.append(f"  # {profile.unreadable} file(s) could not be read; training will name them")
    out += [
        "",
        "model:",
        "  layers:",
        "    # Augmentation, active in training only (uncomment what suits the images):",
        "    # - {type: RandomFlip, mode: horizontal}   # photos whose mirror image is the same class",
        "    # - {type: RandomRotation, factor: 0.05}",
        "    # - {type: RandomZoom, height_factor: 0.1}",
    ]
    for block in range(blocks_for((height, width))):
        filters = FILTERS[block]
        out.append(
            f"    - {{type: Conv2D, filters: {filters}, kernel_size: 3, padding: same, "
            "activation: relu}"
        )
        out.append("    - {type: MaxPooling2D}")
    out += [
        "    - {type: GlobalAveragePooling2D}",
        "    - {type: Dropout, rate: 0.2}",
        f"    - {{type: Dense, activation: softmax}}   # one unit per class ({len(profile.classes)})",
        "",
        "compile:",
        "  optimizer: {type: Adam, learning_rate: 0.002}",
        "  loss: sparse_categorical_crossentropy",
        "  metrics: [accuracy]",
        "",
        "training:",
        f"  epochs: {epochs}",
        f"  batch_size: {BATCH}",
        "  early_stopping: {monitor: val_loss, patience: 6, restore_best_weights: true}",
        "",
        f"# input: {height}x{width}x{channels}",
    ]
    return "\n".join(out) + "\n"


def is_image_data(path: str | os.PathLike) -> bool:
    """Whether `init --from-data` should read `path` as images: a folder, or a table one of
    whose columns names image files."""
    return os.path.isdir(path) or image_column(path) is not None


def image_column(path: str | os.PathLike) -> str | None:
    """The first column of a table whose cells in its first rows name image files."""
    from dlcli.data.media.listing import IMAGE_SUFFIXES, is_table
    from dlcli.init.media import column_of, table_head

    if not is_table(path) or not os.path.isfile(path):
        return None
    return column_of(*table_head(path), IMAGE_SUFFIXES)


__all__ = ["ImageProfile", "image_column", "is_image_data", "profile_images", "render_images"]
