"""`data.source: images`: a folder with one sub-folder per class (or a table with a column
of image paths), decoded once into `ImageRows` that the splits read a piece at a time.

The files are listed (`dlcli.data.media.listing`), put in an order drawn from the run's seed
(so that each piece of the rows mixes the classes, as a shuffled epoch needs), and decoded
(`dlcli.data.media.images`). A file that fails is refused before training, naming it and
how many others failed, or, with `on_bad_file: skip`, left out and listed in run.json. The
labels go to the splits like any target: class names sorted, split stratified and seeded.
"""

from __future__ import annotations

import os

import numpy as np

from dlcli.data.sources.base import Loaded, Source
from dlcli.errors import ConfigError, Problem

NOT_IMAGE = "is not an image file (PNG, JPEG, BMP or GIF by its name)"


class ImageSource(Source):
    names = ("images",)

    def load(self, config) -> Loaded:
        from dlcli.data.media import images

        d = config.data
        train = listing_of(config, d.path, "path")
        test = listing_of(config, d.test_path, "test_path") if d.test_path else None
        size = tuple(d.image_size) if d.image_size else None
        if size is None:
            size = images.common_size(
                train.files + (test.files if test else []), config.where(("data", "path"))
            )
        rng = np.random.default_rng(config.seed)
        loaded = Loaded(x=None, y=None)
        record = {
            "layout": train.layout,
            "image_size": list(size),
            "color_mode": d.color_mode,
            "order": "files in an order drawn from the run's seed",
        }
        for name, listing in (("train", train), ("test", test)):
            if listing is None:
                continue
            order = rng.permutation(len(listing.files))
            files = [listing.files[i] for i in order]
            labels = np.asarray(listing.labels, dtype=object)[order]
            others = {path: NOT_IMAGE for path in listing.others}
            decoded = images.decode_files(files, size, d.color_mode, others)
            skipped = bad_files(config, listing, decoded.bad)
            y = _targets(labels[decoded.kept])
            counts = dict(zip(*np.unique(y.astype(str), return_counts=True)))
            part = {
                "root": str(listing.root),
                "files": len(decoded.kept),
                "counts": {str(k): int(v) for k, v in sorted(counts.items())},
                **({"skipped": skipped} if skipped else {}),
            }
            if listing.layout == "table":
                part.update(column=listing.column, target=listing.target)
            key = "path" if name == "train" else "test_path"
            record[key] = part
            loaded.files[getattr(d, key)] = images.manifest(listing.root, decoded.digests)
            if name == "train":
                loaded.x, loaded.y = decoded.rows, y
            else:
                loaded.x_test, loaded.y_test = decoded.rows, y
        if train.layout == "folders":
            loaded.task = "classification"
            _classes_kept(config, record["path"]["counts"], train)
        else:
            from dlcli.data.sources.table import guess_task
            from dlcli.data.tables.columns import TableColumns

            numeric = loaded.y.dtype.kind in "iuf"
            loaded.task = guess_task(
                TableColumns(None, [], [], [], y=loaded.y, target_kind=None if numeric else "text")
            )
        loaded.media = record
        return loaded


def listing_of(config, path: str, key: str):
    """The files of `data.path` or `data.test_path`: a folder of class folders, or a table."""
    from dlcli.data.media.listing import IMAGE_SUFFIXES, is_table, list_folder, list_table

    if is_table(path):
        listing = list_table(config, path, IMAGE_SUFFIXES, "image")
    else:
        for given in ("target", "features"):
            if getattr(config.data, given) is not None:
                raise ConfigError(
                    config.problem(
                        ("data", given),
                        f"data.{given} is for a table of image paths; {path} is a folder, whose "
                        "class is each image's sub-folder: remove data." + given,
                    )
                )
        listing = list_folder(path, IMAGE_SUFFIXES, config.where(("data", key)))
    if not listing.files:
        raise ConfigError(
            Problem("holds no image file; point data.path at the images", where=str(path))
        )
    return listing


def _targets(labels: np.ndarray) -> np.ndarray:
    """Labels as an array the splits take: numbers as numbers, else text."""
    values = labels.tolist()
    if values and all(isinstance(v, (int, np.integer)) for v in values):
        return np.asarray(values, dtype="int64")
    if values and all(isinstance(v, (int, float, np.number)) for v in values):
        return np.asarray(values, dtype="float64")
    return np.asarray([str(v) for v in values])


def bad_files(config, listing, bad: dict, training: bool = True) -> list[dict]:
    """The files that failed: a ConfigError naming the first and the count of the others
    (`on_bad_file: error`), else the list of what was skipped (run.json keeps it)."""
    if not bad:
        return []
    root = listing.root
    ordered = sorted(bad)
    if config.data.on_bad_file == "skip":
        return [{"file": os.path.relpath(p, root), "reason": bad[p]} for p in ordered]
    first = ordered[0]
    others = len(ordered) - 1
    more = f"; {others} other file{'s' if others != 1 else ''} failed too" if others else ""
    them = "them" if others else "it"
    fix = (
        f"or set data.on_bad_file: skip to train without {them} (run.json lists what was skipped)"
        if training
        else f"or move {them} out of the folder"
    )
    raise ConfigError(Problem(f"{bad[first]}{more}; remove or replace {them}, {fix}", where=first))


def _classes_kept(config, counts: dict, listing) -> None:
    """After skipping: every class folder still holds an image, and there are two."""
    empty = [c for c in listing.classes if c not in counts]
    if empty:
        raise ConfigError(
            Problem(
                f"class '{empty[0]}' has no image that could be decoded; fix its files or "
                "remove the folder",
                where=str(listing.root / empty[0]),
            )
        )


__all__ = ["NOT_IMAGE", "ImageSource", "bad_files", "listing_of"]
