"""`data.source: images | text | audio`: a folder with one sub-folder per class (or a table
with a column of file paths, or for text, of the documents themselves), read once into rows
that the splits read a piece at a time.

The files are listed (`dlcli.data.media.listing`), put in an order drawn from the run's seed
(so that each piece of the rows mixes the classes, as a shuffled epoch needs), and decoded by
the kind's module (`dlcli.data.media.images`, `.audio`, `.text`). A file that fails is refused
before training, naming it and how many others failed, or, with `on_bad_file: skip`, left out
and listed in run.json. The labels go to the splits like any target: class names sorted,
split stratified and seeded. Text's vocabulary is fitted after the split, on the training
split only (`dlcli.data.dataset`).

Each kind says what its files are (`Kind`): its suffixes, how the settings the config leaves
out are found (an image size, a sampling rate), and how a list of files is decoded.
"""

from __future__ import annotations

import os

import numpy as np

from dlcli.data.sources.base import Loaded, Source
from dlcli.errors import ConfigError, Problem


class Kind:
    """One kind of media file: `source` (data.source), `noun` (in messages and a table's
    feature type), what a file of another kind is called (`not_kind`)."""

    source = ""
    noun = ""
    not_kind = ""

    def settings(self, config, files: list[str], record: dict | None = None) -> dict:
        """What decoding needs that the config may leave out (found from `files`' headers,
        or taken from a finished run's `record`), as run.json records it."""
        return {}

    def decode(self, config, settings: dict, files: list[str], others: dict):
        """`Decoded` rows of `files` (for a table of text, the documents)."""
        raise NotImplementedError


class Images(Kind):
    source, noun = "images", "image"
    not_kind = "is not an image file (PNG, JPEG, BMP or GIF by its name)"

    def settings(self, config, files, record=None):
        from dlcli.data.media import images

        d = config.data
        size = d.image_size or (record or {}).get("image_size")
        if not size:
            size = images.common_size(files, config.where(("data", "path")))
        return {"image_size": list(size), "color_mode": d.color_mode}

    def decode(self, config, settings, files, others):
        from dlcli.data.media import images

        return images.decode_files(
            files, tuple(settings["image_size"]), settings["color_mode"], others
        )


class Audio(Kind):
    source, noun = "audio", "audio"
    not_kind = "is not a WAV file (by its name)"

    def settings(self, config, files, record=None):
        from dlcli.data.media import audio

        d, record = config.data, record or {}
        rate = d.sampling_rate or record.get("sampling_rate")
        length = d.output_sequence_length or record.get("output_sequence_length")
        if rate is None or length is None:
            where = {"sampling_rate": config.where(("data", "sampling_rate"))}
            rate, length = audio.settings(files, rate, length, where)
        return {"sampling_rate": int(rate), "output_sequence_length": int(length)}

    def decode(self, config, settings, files, others):
        from dlcli.data.media import audio

        return audio.decode_files(
            files, settings["sampling_rate"], settings["output_sequence_length"], others
        )


class Text(Kind):
    source, noun = "text", "text"
    not_kind = "is not a text file (.txt by its name)"

    def decode(self, config, settings, files, others):
        from dlcli.data.media import text

        if settings.get("layout") == "table":
            from dlcli.data.media.store import Decoded

            rows = text.text_rows(files)
            return Decoded(rows, np.arange(len(files)), {})
        return text.read_text_files(files, others)


KINDS = {kind.source: kind for kind in (Images(), Audio(), Text())}


class MediaSource(Source):
    names = tuple(KINDS)

    def load(self, config) -> Loaded:
        from dlcli.data.media.store import manifest
        from dlcli.data.sources.datafile import sha256_file

        d = config.data
        kind = KINDS[d.source]
        train = listing_of(config, d.path, "path", kind.noun)
        test = listing_of(config, d.test_path, "test_path", kind.noun) if d.test_path else None
        both = train.files + (test.files if test else [])
        settings = kind.settings(config, both)  # text needs none: its "files" may be documents
        rng = np.random.default_rng(config.seed)
        loaded = Loaded(x=None, y=None)
        record = {
            "layout": train.layout,
            **settings,
            "order": f"{kind.noun} files in an order drawn from the run's seed",
        }
        for name, listing in (("train", train), ("test", test)):
            if listing is None:
                continue
            order = rng.permutation(len(listing.files))
            files = [listing.files[i] for i in order]
            labels = np.asarray(listing.labels, dtype=object)[order]
            others = {path: kind.not_kind for path in listing.others}
            decoded = kind.decode(config, {**settings, "layout": listing.layout}, files, others)
            skipped = bad_files(config, listing, decoded.bad)
            y = _targets(labels[decoded.kept])
            counts = dict(zip(*np.unique(y.astype(str), return_counts=True)))
            key = "path" if name == "train" else "test_path"
            documents = kind.noun == "text" and listing.layout == "table"  # cells, not files
            part = {
                "root": str(listing.root),
                ("rows" if documents else "files"): len(decoded.kept),
                "counts": {str(k): int(v) for k, v in sorted(counts.items())},
                **({"skipped": skipped} if skipped else {}),
            }
            if listing.layout == "table":
                part.update(column=listing.column, target=listing.target)
                if documents:
                    _some_text(files, getattr(d, key), listing.column)
            record[key] = part
            loaded.files[getattr(d, key)] = (
                sha256_file(getattr(d, key))
                if documents
                else manifest(listing.root, decoded.digests)
            )
            if name == "train":
                loaded.x, loaded.y = decoded.rows, y
            else:
                loaded.x_test, loaded.y_test = decoded.rows, y
        if train.layout == "folders":
            loaded.task = "classification"
            _classes_kept(record["path"]["counts"], train, kind.noun)
        else:
            from dlcli.data.sources.table import guess_task
            from dlcli.data.tables.columns import TableColumns

            numeric = loaded.y.dtype.kind in "iuf"
            loaded.task = guess_task(
                TableColumns(None, [], [], [], y=loaded.y, target_kind=None if numeric else "text")
            )
        loaded.media = record
        return loaded


def _some_text(texts: list[str], path: str, column: str) -> None:
    """A table's text column must hold text in some row."""
    if not any(t.strip() for t in texts):
        raise ConfigError(
            Problem(
                f"column '{column}' is empty in every row; point data.features at the column "
                "that holds the text",
                where=str(path),
            )
        )


def listing_of(config, path: str, key: str, kind: str = "image"):
    """The files of `data.path` or `data.test_path`: a folder of class folders, or a table
    (whose column holds `kind` file paths, or, for text, the documents)."""
    from dlcli.data.media.listing import SUFFIXES, is_table, list_folder, list_table

    suffixes = SUFFIXES[kind]
    if is_table(path):
        listing = list_table(config, path, suffixes, kind)
    else:
        for given in ("target", "features"):
            if getattr(config.data, given) is not None:
                raise ConfigError(
                    config.problem(
                        ("data", given),
                        f"data.{given} is for a table; {path} is a folder, whose class is "
                        f"each {kind} file's sub-folder: remove data." + given,
                    )
                )
        listing = list_folder(path, suffixes, config.where(("data", key)), kind)
    if not listing.files:
        what = "row" if kind == "text" and listing.layout == "table" else f"{kind} file"
        raise ConfigError(
            Problem(f"holds no {what}; point data.{key} at the {kind} data", where=str(path))
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


def _classes_kept(counts: dict, listing, noun: str) -> None:
    """After skipping: every class folder still holds a usable file."""
    empty = [c for c in listing.classes if c not in counts]
    if empty:
        raise ConfigError(
            Problem(
                f"class '{empty[0]}' has no {noun} file that could be read; fix its files or "
                "remove the folder",
                where=str(listing.root / empty[0]),
            )
        )


__all__ = ["KINDS", "Kind", "MediaSource", "bad_files", "listing_of"]
