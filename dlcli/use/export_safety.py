"""What `dlcli export` may replace: only a copy it can prove it wrote itself.

A format's folder (`onnx/`, `saved_model/`, ...) is replaced only when the `exports.json`
beside it lists that format and the folder holds nothing but what that entry's `files` say
dlcli wrote (for a record from before `files` was kept: nothing but what the format writes).
Anything else is the user's, and the export stops (exit 2) before writing anything. New
copies are built in a fresh temporary folder and the old copy is moved aside into another,
so dlcli only ever deletes folders it made in the same call.

Example:
    >>> record = checked_targets(Path("out"), ["onnx"], Path("out/exports.json"), "out", "out/exports.json")
    >>> built = build_folder(Path("out"), "onnx")   # write the copy in here, then
    >>> replace_folder(built, Path("out/onnx"), record.get("formats", {}).get("onnx"), "out/onnx")
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

from dlcli.errors import ConfigError, Problem, io_error

# What each format writes, for entries of exports.json written before `files` was kept:
# a relative path (folders end in '/') must match one of these.
WRITES = {
    "keras": [r"model\.keras"],
    "onnx": [r"model\.onnx"],
    "litert": [r"model\.tflite"],
    "saved_model": [
        r"saved_model\.pb",
        r"fingerprint\.pb",
        r"variables/",
        r"variables/variables\.[^/]+",
        r"assets/",
        r"assets/.+",
    ],
}


def read_record(path: Path, shown: str, elsewhere: str = "choose another --output") -> dict:
    """The export record at `path` ({} when there is none); a ConfigError (exit 2) when
    something that is not dlcli's record is there, since writing it would destroy it."""
    fix = f"move it away or {elsewhere}"
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(Problem(io_error(exc), where=shown)) from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(
            Problem(f"is not a dlcli export record (a folder or link); {fix}", where=shown)
        )
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(Problem(io_error(exc), where=shown)) from None
    except ValueError:
        data = None
    if not (isinstance(data, dict) and isinstance(data.get("formats"), dict)):
        raise ConfigError(
            Problem(f"is not a dlcli export record (JSON with 'formats'); {fix}", where=shown)
        )
    return data


def checked_targets(
    where: Path,
    names: list[str],
    report_path: Path,
    shown: str,
    shown_report: str,
    elsewhere: str = "choose another --output",
) -> dict:
    """Refuse (a ConfigError with one Problem per folder) unless every `where/NAME` of
    `names` is missing or dlcli's own copy; returns the export record ({} if none).

    `shown` and `shown_report` are `where` and `report_path` as the user knows them;
    `elsewhere` is the other way out the problems name (another --output)."""
    record = read_record(report_path, shown_report, elsewhere)
    entries = record["formats"] if record else {}
    problems = []
    for name in names:
        why = not_ours(where / name, name, entries.get(name), report_path.name)
        if why:
            problems.append(
                Problem(
                    f"{why}; move your files out of it or {elsewhere}",
                    where=str(Path(shown) / name),
                )
            )
    if problems:
        raise ConfigError(problems)
    return record


def not_ours(folder: Path, name: str, entry, record_name: str = "exports.json") -> str | None:
    """Why `folder` is not a copy of format `name` that dlcli wrote (recorded as `entry`),
    or None when it is (or is missing, or empty: nothing there to lose)."""
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(info.st_mode):
        return "is not a folder dlcli wrote (a file or link)"
    try:
        found = contents(folder)
    except OSError as exc:  # what cannot be read cannot be proven ours
        return f"cannot be read through ({exc.strerror or exc})"
    if not found:
        return None
    if not isinstance(entry, dict):
        return f"is not a copy dlcli wrote ({record_name} beside it has no {name} entry)"
    listed = entry.get("files")
    if isinstance(listed, list) and all(isinstance(f, str) for f in listed):
        allowed = set(listed) | {parent for f in listed for parent in parents(f)}
        foreign = [path for path in found if path not in allowed]
    else:  # a record from before `files` was kept: what the format writes
        foreign = [
            path for path in found if not any(re.fullmatch(p, path) for p in WRITES.get(name, []))
        ]
    if not foreign:
        return None
    more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
    return f"holds files dlcli did not write: {', '.join(foreign[:3])}{more}"


def contents(folder: Path) -> list[str]:
    """Everything inside `folder`, as sorted relative paths (folders end in '/'; a link or
    special file is listed as itself, never followed); an OSError when some of it cannot be
    read."""
    found = []

    def fail(exc: OSError):
        raise exc

    for root, dirs, files in os.walk(folder, onerror=fail):
        base = Path(root).relative_to(folder)
        for entry in dirs:
            path = (base / entry).as_posix()
            found.append(path + "/" if not os.path.islink(Path(root, entry)) else path)
        found.extend((base / entry).as_posix() for entry in files)
    return sorted(found)


def parents(path: str) -> list[str]:
    """The folders a relative path lies in ('a/b/c' -> ['a/', 'a/b/'])."""
    parts = path.rstrip("/").split("/")[:-1]
    return ["/".join(parts[:i]) + "/" for i in range(1, len(parts) + 1)]


def written(folder: Path) -> list[str]:
    """What a freshly built copy holds, as exports.json's `files` records it: its files, and
    its empty folders (others are implied by the files in them)."""
    found = contents(folder)
    return [
        path
        for path in found
        if not path.endswith("/") or not any(f.startswith(path) and f != path for f in found)
    ]


def build_folder(where: Path, name: str) -> Path:
    """A new empty folder in `where` to build a copy in, named `.NAME.XXXX` (never one that
    was there before)."""
    return Path(tempfile.mkdtemp(dir=where, prefix=f".{name}."))


def replace_folder(
    built: Path, target: Path, entry, shown: str, elsewhere: str = "choose another --output"
) -> None:
    """Put a finished copy's folder in place of dlcli's older copy (never a half-written
    copy), after checking again that the older one is dlcli's (the user may have added
    files since the export began); a ConfigError otherwise, and then `target` is untouched."""
    why = not_ours(target, target.name, entry)
    if why:
        raise ConfigError(Problem(f"{why}; move your files out of it or {elsewhere}", where=shown))
    aside = None
    if os.path.lexists(target):
        # Moved into a folder made here, so the delete below can only reach dlcli's own copy.
        aside = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old."))
        target.rename(aside / target.name)
    try:
        built.rename(target)
    except OSError:
        if aside is not None:  # put the old copy back
            (aside / target.name).rename(target)
            aside.rmdir()
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


__all__ = ["build_folder", "checked_targets", "read_record", "replace_folder", "written"]
