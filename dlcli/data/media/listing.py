"""Which files a media source holds, and the label of each: a folder with one sub-folder per
class (the class names are the sub-folder names, sorted, as Keras's
`image_dataset_from_directory` names them), a table whose column holds file paths beside a
target column, or, for `predict`, one file or a folder read recursively.

Nothing here opens a file's content: `dlcli.data.media.images` decodes. What is checked here
is the layout, each a `ConfigError` naming the folder and the fix: files at the top level of a
class layout, a class folder without a file of the kind, a single class, nothing usable, and a
symlink whose target lies outside the folder (dlcli reads only what the folder holds).
Hidden files and folders (`.DS_Store`, `.ipynb_checkpoints`) are passed over, as the file
browsers that made them hide them.

Example:
    >>> listing = list_folder("pets/", IMAGE_SUFFIXES, "data.path")
    >>> listing.classes, len(listing.files)
    (['cat', 'dog'], 240)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from dlcli.errors import ConfigError, Problem

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
TEXT_SUFFIXES = (".txt",)
AUDIO_SUFFIXES = (".wav",)
SUFFIXES = {"image": IMAGE_SUFFIXES, "text": TEXT_SUFFIXES, "audio": AUDIO_SUFFIXES}
TABLE_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
SHOWN = 3  # file names a message lists before "and N more"


@dataclass
class Listing:
    """The files of a source and the label of each (a class name, or a table's target
    value); `others` are files there that are not of the kind (`on_bad_file: skip` skips
    them, and run.json lists them)."""

    root: Path
    files: list[str]
    labels: list
    layout: str  # folders | table | files (predict: no labels)
    classes: list[str] | None = None
    others: list[str] = field(default_factory=list)
    target: str | None = None
    column: str | None = None


def shown_files(paths: list[str], root: Path | None = None) -> str:
    """'a.png, b.png, c.png and 4 more', relative to `root` where given."""
    names = [os.path.relpath(p, root) if root is not None else p for p in paths[:SHOWN]]
    more = f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else ""
    return ", ".join(names) + more


def is_table(path: str | Path) -> bool:
    """Whether `path` names a table of paths rather than a folder."""
    return Path(path).suffix.lower() in TABLE_SUFFIXES and not os.path.isdir(path)


def _inside(path: str, root: str) -> bool:
    real = os.path.realpath(path)
    return real == root or real.startswith(root + os.sep)


def walk(folder: Path, real_root: str, shown_root: Path) -> list[str]:
    """Every regular-or-not file under `folder` (recursively, hidden entries passed over),
    sorted; a ConfigError for a symlink that leads outside `real_root`."""
    found: list[str] = []
    seen: set[str] = set()

    def visit(directory: str) -> None:
        real = os.path.realpath(directory)
        if real in seen:  # a symlink loop inside the folder
            return
        seen.add(real)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            raise ConfigError(
                Problem(
                    f"cannot be listed ({exc.strerror}); check its permissions", where=directory
                )
            ) from None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_symlink() and not _inside(entry.path, real_root):
                raise ConfigError(
                    Problem(
                        f"is a symlink to {os.path.realpath(entry.path)}, outside "
                        f"{shown_root}; dlcli reads only what the folder holds: copy the "
                        "file in or remove the link",
                        where=entry.path,
                    )
                )
            if entry.is_dir():
                visit(entry.path)
            else:
                found.append(entry.path)

    visit(str(folder))
    return found


def _folder(path: str | Path, where: str) -> Path:
    folder = Path(path)
    if not folder.exists():
        raise ConfigError(
            Problem(
                "not found; check data.path (relative paths start at the config's folder)",
                where=str(folder),
            )
        )
    if not folder.is_dir():
        raise ConfigError(
            Problem(
                "is neither a folder (one sub-folder per class) nor a table of paths (.csv, "
                ".parquet); point data.path at one",
                where=str(folder),
            )
        )
    return folder


def list_folder(
    path: str | Path, suffixes: tuple, where: str, kind: str = "image", least: int = 2
) -> Listing:
    """A folder with one sub-folder per class: its files, each labelled with its class
    (`least`: the classes it must hold; `evaluate --data` takes a folder of one)."""
    root = _folder(path, where)
    real_root = os.path.realpath(root)
    entries = sorted(
        (e for e in os.scandir(root) if not e.name.startswith(".")), key=lambda e: e.name
    )
    loose = [e.path for e in entries if not e.is_dir()]
    if loose:
        raise ConfigError(
            Problem(
                f"holds files at its top level ({shown_files(loose, root)}); the layout is one "
                f"sub-folder per class, each holding that class's {kind}s: move them into "
                "their class's folder",
                where=str(root),
            )
        )
    files, labels, others, classes = [], [], [], []
    for entry in entries:
        if entry.is_symlink() and not _inside(entry.path, real_root):
            raise ConfigError(
                Problem(
                    f"is a symlink to {os.path.realpath(entry.path)}, outside {root}; dlcli "
                    "reads only what the folder holds: copy the class in or remove the link",
                    where=entry.path,
                )
            )
        inside = walk(Path(entry.path), real_root, root)
        mine = [f for f in inside if f.lower().endswith(suffixes)]
        others += [f for f in inside if not f.lower().endswith(suffixes)]
        if not mine:
            raise ConfigError(
                Problem(
                    f"class '{entry.name}' holds no {kind} file ({', '.join(suffixes)}); add "
                    f"{kind}s to it or remove the folder",
                    where=entry.path,
                )
            )
        classes.append(entry.name)
        files += mine
        labels += [entry.name] * len(mine)
    if not classes:
        raise ConfigError(
            Problem(
                f"holds no class folders; the layout is one sub-folder per class, each "
                f"holding that class's {kind}s (pets/cat/1.jpg, pets/dog/2.png)",
                where=str(root),
            )
        )
    if len(classes) < least:
        raise ConfigError(
            Problem(
                f"holds a single class ('{classes[0]}'); classification needs at least two "
                "class folders",
                where=str(root),
            )
        )
    return Listing(root, files, labels, "folders", classes, others)


def list_inputs(path: str | Path, suffixes: tuple, kind: str = "image") -> Listing:
    """`predict`'s input: one file, or a folder read recursively (no labels)."""
    given = Path(path)
    if given.is_file():
        return Listing(given.parent, [str(given)], [], "files")
    root = _folder(given, "INPUT")
    inside = walk(root, os.path.realpath(root), root)
    files = [f for f in inside if f.lower().endswith(suffixes)]
    others = [f for f in inside if not f.lower().endswith(suffixes)]
    if not files:
        raise ConfigError(Problem(f"holds no {kind} file ({', '.join(suffixes)})", where=str(root)))
    return Listing(root, files, [], "files", None, others)


def list_table(
    config,
    path: str,
    suffixes: tuple,
    feature_type: str,
    labelled: bool = True,
    column: str | None = None,
) -> Listing:
    """A CSV or Parquet table with a column of file paths (relative to the table's folder)
    and, when `labelled`, the target column: its files and their target values. `column`:
    the column of paths a run was trained on, taken when the table has it. For `text`, the
    column holds the documents themselves: `files` are the texts (`others` is empty)."""
    from dlcli.data.tables import tablefile, whole

    d = config.data
    kind = TABLE_SUFFIXES[Path(path).suffix.lower()]
    file = tablefile.TableFile.open(
        path,
        d.header,
        d.columns,
        d.delimiter,
        d.missing,
        kind,
        config.where(("data", "columns")),
        d.skip_rows,
    )
    fmt = file.format
    target = None
    if labelled:
        if d.target is None:
            raise ConfigError(
                config.problem(
                    ("data", "target"),
                    f"a table of {feature_type} paths needs data.target: the column of labels",
                )
            )
        target = fmt.column(d.target)
        if target is None:
            raise ConfigError(
                config.problem(
                    ("data", "target"), f"no column '{d.target}'; columns are: {fmt.shown()}"
                )
            )
    if column is None or column not in fmt.names:
        column = _path_column(config, fmt, target, feature_type)
    text = feature_type == "text"  # an empty cell is an empty document
    table = whole.read_table(
        file, [column], target, {column: "categorical"}, "fill" if text else "error"
    )
    names = table.categories[0]
    base = Path(path).parent
    labels = list(table.y) if target is not None else []
    if text:
        texts = [names[int(c)] if not math.isnan(c) else "" for c in table.x[:, 0]]
        return Listing(base, texts, labels, "table", None, [], target, column)
    codes = table.x[:, 0].astype("int64")
    files = [str(base / names[c]) for c in codes]
    others = [f for f in files if not f.lower().endswith(suffixes)]
    return Listing(base, files, labels, "table", None, others, target, column)


def _path_column(config, fmt, target: str | None, feature_type: str) -> str:
    """The table's column of file paths: the feature of `type: image` (or the only one
    given), else the only column besides the target."""
    d = config.data
    what = "the text" if feature_type == "text" else f"{feature_type} paths"
    if d.features:
        typed = [(i, f) for i, f in enumerate(d.features) if f.type in (feature_type, "auto")]
        if len(d.features) != 1 or not typed:
            raise ConfigError(
                config.problem(
                    ("data", "features"),
                    f"give one feature: the column of {what} "
                    f"([{{name: COLUMN, type: {feature_type}}}])",
                )
            )
        found = fmt.column(d.features[0].name)
        if found is None:
            raise ConfigError(
                config.problem(
                    ("data", "features", 0),
                    f"no column '{d.features[0].name}'; columns are: {fmt.shown()}",
                )
            )
        return found
    rest = [n for n in fmt.names if n != target]
    named = [n for n in rest if n.strip().lower() == feature_type]  # a column called "text"
    if len(rest) != 1 and len(named) == 1:
        return named[0]
    if len(rest) != 1:
        raise ConfigError(
            config.problem(
                ("data", "path"),
                f"the table has {len(rest)} columns besides the target; name the one of "
                f"{what}: data.features: [{{name: COLUMN, type: {feature_type}}}]",
            )
        )
    return rest[0]


__all__ = [
    "AUDIO_SUFFIXES",
    "IMAGE_SUFFIXES",
    "SUFFIXES",
    "TEXT_SUFFIXES",
    "Listing",
    "is_table",
    "list_folder",
    "list_inputs",
    "list_table",
    "shown_files",
]
