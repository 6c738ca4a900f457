"""`dlcli init --from-data` for text and recordings: a folder of class folders (or a table
with a column of documents, or of WAV paths) profiled, and a commented config with a small
model that fits it: a vectorizer and Embedding + pooling for text; a mel spectrogram and
Conv1D blocks for audio.

Only what the config needs is read: for text, up to `SAMPLE` documents (their lengths in
words, their distinct words); for audio, the WAV headers (rate, length).

Example:
    >>> kind = media_kind("reviews/")
    >>> kind
    'text'
    >>> print(render_text(profile_text("reviews/"), "."))
"""

from __future__ import annotations

import csv
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlcli.errors import ConfigError, Problem

SAMPLE = 2000  # documents read to size the vocabulary and the sequence length
LONG_TEXT = 30  # characters a table's cells hold on average, with spaces, to be free text
MAX_SECONDS = 10.0  # a generated audio config keeps at most this much of each recording


@dataclass
class MediaProfile:
    """What `init --from-data` found in a text or audio folder or table."""

    kind: str  # text | audio
    path: str
    layout: str  # folders | table
    files: int
    classes: list[tuple[str, int]]  # (class, files), in the classes' order
    target: str | None = None
    column: str | None = None
    words: list[int] = field(default_factory=list)  # text: words per sampled document
    vocabulary: int = 0  # text: distinct lowercased words in the sample
    rates: Counter = field(default_factory=Counter)  # audio: rate -> files
    seconds: list[float] = field(default_factory=list)  # audio: each readable file's length
    unreadable: int = 0


def media_kind(path: str | os.PathLike) -> str | None:
    """images, text or audio for a folder (by the suffixes most of its files have) or a
    table (a column of image or WAV paths, or of free text); None for a plain table."""
    from dlcli.data.media.listing import AUDIO_SUFFIXES, IMAGE_SUFFIXES, TEXT_SUFFIXES, is_table

    kinds = {"images": IMAGE_SUFFIXES, "text": TEXT_SUFFIXES, "audio": AUDIO_SUFFIXES}
    if os.path.isdir(path):
        seen: Counter = Counter()
        for _, _, names in _walk(path, 5000):
            for name in names:
                for kind, suffixes in kinds.items():
                    if name.lower().endswith(suffixes):
                        seen[kind] += 1
        return seen.most_common(1)[0][0] if seen else "images"
    if not is_table(path) or not os.path.isfile(path):
        return None
    names, cells = table_head(path)
    for kind in ("images", "audio"):
        if column_of(names, cells, kinds[kind]) is not None:
            return kind
    # A text column and the target alone: the text source; beside other columns, the table
    # reads it as a text feature (`dlcli.init.profile`).
    return "text" if len(names) <= 2 and text_column(names, cells) is not None else None


def _walk(path, most: int):
    """os.walk, hidden entries passed over, stopping after `most` files."""
    count = 0
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files = [f for f in files if not f.startswith(".")]
        yield root, dirs, files
        count += len(files)
        if count >= most:
            return


def table_head(path) -> tuple[list[str], list[list[str]]]:
    """(column names, the first 50 rows' cells as text) of a CSV or Parquet table."""
    try:
        if str(path).lower().endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            handle = pq.ParquetFile(str(path))
            first = handle.read_row_group(0) if handle.num_row_groups else None
            rows = first.slice(0, 50).to_pylist() if first is not None else []
            names = handle.schema_arrow.names
            return names, [[str(row.get(n, "")) for n in names] for row in rows]
        with open(path, encoding="utf-8", errors="replace", newline="") as handle:
            table = list(csv.reader(handle.read(1 << 20).splitlines()[:51]))
        return (table[0], table[1:]) if table else ([], [])
    except (OSError, ValueError, ImportError, csv.Error):
        return [], []


def column_of(names: list[str], cells: list[list[str]], suffixes: tuple) -> str | None:
    """The first column whose cells name files with `suffixes`."""
    for j, name in enumerate(names):
        if any(j < len(row) and row[j].strip().lower().endswith(suffixes) for row in cells):
            return name
    return None


def text_column(names: list[str], cells: list[list[str]]) -> str | None:
    """The column of free text: cells of `LONG_TEXT` characters on average, holding spaces,
    nearly all different (the longest such column)."""
    best, longest = None, 0.0
    for j, name in enumerate(names):
        values = [row[j] for row in cells if j < len(row) and row[j].strip()]
        if len(values) < 2:
            continue
        mean = sum(len(v) for v in values) / len(values)
        spaced = sum(" " in v.strip() for v in values) / len(values)
        distinct = len(set(values)) / len(values)
        if mean >= LONG_TEXT and spaced > 0.8 and distinct > 0.8 and mean > longest:
            best, longest = name, mean
    return best


def profile_media(path: str | os.PathLike, kind: str, target=None) -> MediaProfile:
    """The classes and the facts a text or audio config needs, of a folder or table."""
    from dlcli.config.load import load_config
    from dlcli.data.media.listing import SUFFIXES, is_table, list_folder, list_table

    noun = "text" if kind == "text" else "audio"
    if is_table(path):
        names, cells = table_head(path)
        column = (
            text_column(names, cells)
            if kind == "text"
            else column_of(names, cells, SUFFIXES["audio"])
        )
        if target is None:
            target = [n for n in names if n != column][-1]
        elif isinstance(target, str) and target.lstrip("-").isdigit():
            target = int(target)
        config = load_config(
            {
                "data": {
                    "source": kind,
                    "path": os.path.abspath(path),
                    "target": target,
                    "features": [{"name": column, "type": noun}],
                },
                "model": {"layers": [{"type": "Dense"}]},
            }
        )
        listing = list_table(config, config.data.path, SUFFIXES[noun], noun, column=column)
    else:
        listing = list_folder(path, SUFFIXES[noun], str(path), noun)
    profile = MediaProfile(
        kind,
        str(path),
        listing.layout,
        len(listing.files),
        class_counts(listing),
        target=listing.target,
        column=listing.column,
    )
    if kind == "text":
        _profile_text(profile, listing)
    else:
        _profile_audio(profile, listing.files)
    return profile


def class_counts(listing) -> list[tuple[str, int]]:
    """(class, files) of a listing, in the classes' order (a table's: sorted)."""
    counts = Counter(str(label) for label in listing.labels)
    return [(c, counts[c]) for c in listing.classes or sorted(counts)]


def _profile_text(profile: MediaProfile, listing) -> None:
    from dlcli.data.media.text import BadText, decode_text

    step = max(1, len(listing.files) // SAMPLE)
    words: Counter = Counter()
    for item in listing.files[::step][:SAMPLE]:
        if listing.layout == "table":
            text = item
        else:
            try:
                with open(item, "rb") as handle:
                    text = decode_text(handle.read(1 << 20))
            except (OSError, BadText):
                profile.unreadable += 1
                continue
        tokens = text.lower().split()
        profile.words.append(len(tokens))
        words.update(tokens)
    profile.vocabulary = len(words)


def _profile_audio(profile: MediaProfile, files: list[str]) -> None:
    from dlcli.data.media.audio import BadAudio, header

    for path in files:
        try:
            rate, frames, _ = header(path)
        except BadAudio:
            profile.unreadable += 1
            continue
        profile.rates[rate] += 1
        profile.seconds.append(frames / rate)
    if not profile.rates:
        raise ConfigError(Problem("holds no WAV file that can be read", where=profile.path))


def render_media(profile: MediaProfile, config_dir=".", config_name: str = "config.yaml") -> str:
    """The commented YAML config for a text or audio profile."""
    from dlcli.init.render import commented, relative_path, run_name

    name = run_name(Path(profile.path).resolve().stem, profile.kind)
    unit = "documents" if profile.kind == "text" else "recordings"
    head = [
        (
            f"# A {profile.kind} classification config made by `dlcli init --from-data` from "
            f"{Path(profile.path).name}: {profile.files:,} {unit}, {len(profile.classes)} classes."
        ),
        f"# Check it:  dlcli validate {config_name}      Train it:  dlcli train {config_name}",
        "",
        f"name: {name}",
        "seed: 42",
        "",
        "data:",
        f"  source: {profile.kind}",
        f"  path: {relative_path(profile.path, config_dir)}",
    ]
    if profile.layout == "table":
        head.append(f"  target: {profile.target}")
        noun = "text" if profile.kind == "text" else "audio"
        head.append(f"  features: [{{name: {profile.column}, type: {noun}}}]")
    body = (
        _text_lines(profile, commented)
        if profile.kind == "text"
        else _audio_lines(profile, commented)
    )
    classes = ["  # classes (files):", *[f"  #   {c}: {n}" for c, n in profile.classes]]
    if profile.unreadable:
        classes.append(
            f"  # {profile.unreadable} file(s) could not be read; training will name them"
        )
    train = max(1, int(profile.files * 0.64))
    epochs = min(60, max(15, math.ceil(1500 / math.ceil(train / 32))))
    tail = [
        f"    - {{type: Dense, activation: softmax}}   # one unit per class ({len(profile.classes)})",
        "",
        "compile:",
        "  optimizer: {type: Adam, learning_rate: 0.003}",
        "  loss: sparse_categorical_crossentropy",
        "  metrics: [accuracy]",
        "",
        "training:",
        f"  epochs: {epochs}",
        "  batch_size: 32",
        "  early_stopping: {monitor: val_loss, patience: 5, restore_best_weights: true}",
    ]
    return "\n".join(head + body[0] + classes + ["", "model:", "  layers:"] + body[1] + tail) + "\n"


def _text_lines(profile: MediaProfile, commented) -> tuple[list[str], list[str]]:
    lengths = np.asarray(profile.words or [1])
    length = int(min(400, max(16, np.percentile(lengths, 90))))
    tokens = int(min(20000, max(1000, profile.vocabulary * 2)))
    data = [
        "  text:",
        commented(
            f"    max_tokens: {tokens}", f"{profile.vocabulary:,} distinct words in a sample"
        ),
        commented(
            "    output_mode: int", "token ids, for Embedding; multi_hot or tf_idf for Dense"
        ),
        commented(
            f"    sequence_length: {length}",
            f"9 in 10 documents have at most this many words (median {int(np.median(lengths))})",
        ),
        commented("    ngrams: 1", "2 adds word pairs"),
        commented("  on_bad_file: error", "or skip: leave out files that are not UTF-8"),
    ]
    layers = [
        commented(
            "    - {type: Embedding, output_dim: 64}", "input_dim: the vocabulary, set by dlcli"
        ),
        "    - {type: GlobalAveragePooling1D}",
        "    - {type: Dropout, rate: 0.2}",
        "    - {type: Dense, units: 64, activation: relu}",
    ]
    return data, layers


def _audio_lines(profile: MediaProfile, commented) -> tuple[list[str], list[str]]:
    rate, _ = profile.rates.most_common(1)[0]
    seconds = float(min(MAX_SECONDS, np.percentile(profile.seconds, 95)))
    length = max(1, round(seconds * rate))
    fft = 2 ** max(6, round(math.log2(rate * 0.032)))  # about 32 ms frames
    rates = ", ".join(f"{r} Hz ({n})" for r, n in profile.rates.most_common(3))
    data = [
        commented(f"  sampling_rate: {rate}", f"rates found: {rates}"),
        commented(
            f"  output_sequence_length: {length}",
            f"{seconds:.2f} s: 19 in 20 recordings are at most this long (cut or padded)",
        ),
        commented("  on_bad_file: error", "or skip: leave out files that are not PCM WAV"),
    ]
    layers = [
        commented(
            f"    - {{type: MelSpectrogram, sampling_rate: {rate}, num_mel_bins: 64, "
            f"fft_length: {fft}, sequence_stride: {fft // 2}}}",
            "(mel bins, frames), in dB",
        ),
        commented("    - {type: Permute, dims: [2, 1]}", "(frames, mel bins)"),
        "    - {type: BatchNormalization}",
        "    - {type: Conv1D, filters: 32, kernel_size: 3, padding: same, activation: relu}",
        "    - {type: MaxPooling1D}",
        "    - {type: Conv1D, filters: 64, kernel_size: 3, padding: same, activation: relu}",
        "    - {type: GlobalAveragePooling1D}",
        "    - {type: Dropout, rate: 0.2}",
    ]
    return data, layers


__all__ = [
    "MediaProfile",
    "class_counts",
    "media_kind",
    "profile_media",
    "render_media",
    "text_column",
]
