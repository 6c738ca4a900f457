"""The run catalogue over many run folders, through the real CLI: `runs --limit N` and
`show latest` read only the folders they show (and those their names say may be as new),
and list exactly what sorting every run by run.json's `started` lists; the table of every
run comes out as rich would print it.

The folders are written as dlcli writes them (run.json with `started` in local time with
its offset, the folder named from the same clock a moment later, metrics.json), a few
hundred at once; no test depends on the machine's speed.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import random
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from dlcli.cli import manage
from dlcli.runs.runfolder import STAMP_SLACK

BASE = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc).timestamp()
NAMES = ["digits-mlp", "wine-csv", "diabetes", "tiny"]


def write_run(runs: Path, name: str, when: float, tz=None, delay: int = 0, **fields) -> Path:
    """A finished run folder as dlcli makes it: `started` at `when` (in `tz`, default this
    machine's zone), the folder named `delay` seconds later by the same wall clock."""
    started = datetime.fromtimestamp(when, tz or timezone.utc)
    started = started if tz else started.astimezone()
    stamp = (started + timedelta(seconds=delay)).strftime("%Y%m%d-%H%M%S")
    folder = runs / f"{name}-{stamp}"
    suffix = 1
    while folder.exists():  # the same second taken: dlcli adds -2, -3, ...
        suffix += 1
        folder = runs / f"{name}-{stamp}-{suffix}"
    return write_folder(folder, name, started.isoformat(timespec="seconds"), **fields)


def write_folder(
    folder: Path, name: str, started: str, status: str = "completed", **fields
) -> Path:
    folder.mkdir(parents=True)
    record = {
        "id": folder.name,
        "name": name,
        "status": status,
        "started": started,
        "ended": started,
        "duration_s": 12.5,
        "command": f"dlcli train {name}.yaml",
        "seed": 7,
        "pid": 999_999_999,
        "host": "elsewhere",
        "epochs": 3,
        "resumes": [],
        "metric_directions": {"loss": "min", "accuracy": "max"},
        **fields,
    }
    (folder / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    if status == "completed":
        rng = random.Random(folder.name)
        metrics = {
            split: {"accuracy": rng.random(), "loss": rng.random()}
            for split in ("train", "val", "test")
        }
        (folder / "metrics.json").write_text(
            json.dumps({**metrics, "best_epoch": 2, "epochs_run": 3}, indent=2) + "\n"
        )
    return folder


def local_stamp(when: float) -> str:
    return datetime.fromtimestamp(when).strftime("%Y%m%d-%H%M%S")


def expected_order(runs: Path) -> list[str]:
    """Every folder's id, newest first, worked out here from the files alone: by run.json's
    (or sweep.json's) `started`, else by the time in the folder's name, else by its mtime;
    ties by id, the larger first."""
    keys = []
    for folder in runs.iterdir():
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        record = {}
        for file in ("sweep.json", "run.json"):
            if (folder / file).is_file():
                try:
                    record = json.loads((folder / file).read_text())
                except ValueError:
                    pass
                break
        when = None
        if isinstance(record, dict) and record.get("started"):
            when = datetime.fromisoformat(record["started"]).timestamp()
        stamp = re.search(r"-(\d{8}-\d{6})(-\d+)?$", folder.name)
        if when is None and stamp:
            when = datetime.strptime(
                stamp.group(1), "%Y%m%d-%H%M%S"
            ).timestamp()  # this machine's clock
        keys.append((when if when is not None else folder.stat().st_mtime, folder.name))
    return [name for _, name in sorted(keys, reverse=True)]


@pytest.fixture(scope="module")
def dense(tmp_path_factory) -> Path:
    """200 folders a few minutes apart (several in one second), four run names interleaved,
    plus the odd ones: no timestamp in the name, half-made, a sweep, resumed later."""
    runs = tmp_path_factory.mktemp("dense") / "runs"
    rng = random.Random(5)
    when = BASE
    for index in range(200):
        when += rng.choice([0, 0, 1, 30, 300, 900])
        status = "completed" if index % 10 else rng.choice(["failed", "running"])
        write_run(runs, rng.choice(NAMES), when, delay=rng.choice([0, 0, 1]), status=status)
    write_folder(
        runs / "hand-named", "hand", datetime.fromtimestamp(BASE + 3600, timezone.utc).isoformat()
    )
    write_folder(
        runs / "kept-best", "kept", datetime.fromtimestamp(when - 7200, timezone.utc).isoformat()
    )
    (runs / f"tiny-{local_stamp(BASE + 5000)}").mkdir()  # half-made: no run.json
    torn = runs / f"tiny-{local_stamp(BASE + 9000)}"
    torn.mkdir()
    (torn / "run.json").write_text('{"status": "runn')
    sweep = runs / f"digits-mlp-sweep-{local_stamp(when - 60)}"
    sweep.mkdir()
    (sweep / "sweep.json").write_text(
        json.dumps(
            {
                "id": sweep.name,
                "name": "digits-mlp",
                "status": "completed",
                "started": datetime.fromtimestamp(when - 60)
                .astimezone()
                .isoformat(timespec="seconds"),
                "duration_s": 40.0,
                "metric": "val_accuracy",
                "direction": "max",
                "best": {"trial": 2, "value": 0.97, "run": "x"},
                "counts": {"completed": 3, "pruned": 1},
            }
        )
    )
    resumed = write_run(runs, "wine-csv", BASE + 600, delay=0)
    record = json.loads((resumed / "run.json").read_text())
    record["resumes"] = [{"time": "2027-01-01T00:00:00+00:00", "from_epoch": 2}]
    (resumed / "run.json").write_text(json.dumps(record, indent=2))
    os.utime(resumed, (BASE + 10**7, BASE + 10**7))  # touched long after it started
    (runs / ".staging-abc").mkdir()  # hidden: never a run
    (runs / "notes.txt").write_text("not a run\n")
    return runs


def write_sparse(runs: Path, count: int) -> Path:
    """`count` runs two days apart (far more than `STAMP_SLACK` plus any UTC offset), names interleaved."""
    assert STAMP_SLACK + 14 * 3600 < 2 * 86400
    for index in range(count):
        write_run(runs, NAMES[index % len(NAMES)], BASE + index * 2 * 86400, delay=index % 2)
    return runs


@pytest.fixture(scope="module")
def sparse(tmp_path_factory) -> Path:
    return write_sparse(tmp_path_factory.mktemp("sparse") / "runs", 200)


def runs_json(cli, runs: Path, *options) -> dict:
    result = cli("runs", "--runs-dir", runs, "--json", *options)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def opened(monkeypatch) -> set[str]:
    """The folders whose run.json this process opens from now on (any way Python opens a file)."""
    folders: set[str] = set()

    def note(path) -> None:
        path = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else ""
        if os.path.basename(path) == "run.json":
            folders.add(os.path.basename(os.path.dirname(path)))

    def counting(original):
        def wrapper(path, *args, **kwargs):
            note(path)
            return original(path, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(os, "open", counting(os.open))
    monkeypatch.setattr(builtins, "open", counting(builtins.open))
    monkeypatch.setattr(io, "open", counting(io.open))
    return folders


# -- the order ---------------------------------------------------------------------------------


def test_the_full_listing_is_newest_first_by_started(cli, dense):
    listing = runs_json(cli, dense)
    ids = [row["id"] for row in listing["runs"]]
    assert ids == expected_order(dense)
    assert listing["total"] == len(ids) == 206
    assert sum(row["kind"] == "sweep" for row in listing["runs"]) == 1  # a sweep is one row


@pytest.mark.parametrize("limit", [1, 2, 5, 37])
def test_limit_lists_exactly_the_first_of_the_full_listing(cli, dense, limit):
    full = runs_json(cli, dense)
    limited = runs_json(cli, dense, "--limit", limit)
    assert limited["runs"] == full["runs"][:limit]  # the same rows, whole, in the same order
    assert limited["total"] == full["total"] == 206
    started = runs_json(cli, dense, "--sort", "started", "--limit", limit)
    assert started["runs"] == full["runs"][:limit]


def test_half_made_folders_sort_by_the_time_in_their_names(cli, dense):
    listed = runs_json(cli, dense)["runs"]
    ids = [row["id"] for row in listed]
    odd = [row for row in listed if row["status"] == "incomplete"]
    assert len(odd) == 2
    for row in odd:  # not on top for having been touched last: among the runs of their time
        assert ids.index(row["id"]) > 100, ids.index(row["id"])


def test_runs_from_other_time_zones_are_ordered_by_the_moment_they_started(cli, tmp_path):
    runs = tmp_path / "runs"
    tokyo, new_york = timezone(timedelta(hours=9)), timezone(timedelta(hours=-5))
    write_run(runs, "tokyo", BASE, tz=tokyo)  # its name's clock is 9 hours ahead of UTC
    write_run(runs, "utc", BASE + 2 * 3600, tz=timezone.utc)
    latest = write_run(
        runs, "new-york", BASE + 4 * 3600, tz=new_york
    )  # its name's clock 5 hours behind
    assert [r["id"].split("-2")[0] for r in runs_json(cli, runs, "--limit", 2)["runs"]] == [
        "new-york",
        "utc",
    ]
    assert runs_json(cli, runs, "--limit", 1)["runs"][0]["id"] == latest.name
    shown = cli("show", "latest", "--runs-dir", runs, "--json")
    assert json.loads(shown.stdout)["id"] == latest.name


def test_a_folder_without_a_time_in_its_name_that_started_last_is_the_latest(cli, tmp_path):
    runs = write_sparse(tmp_path / "runs", 40)
    newest_stamped = expected_order(runs)[0]
    write_folder(
        runs / "my-best-run",
        "mine",
        datetime.fromtimestamp(BASE + 81 * 86400, timezone.utc).isoformat(),
    )
    write_folder(
        runs / "an-old-one", "old", datetime.fromtimestamp(BASE - 86400, timezone.utc).isoformat()
    )
    shown = cli("show", "latest", "--runs-dir", runs, "--json")
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout)["id"] == "my-best-run"
    assert [row["id"] for row in runs_json(cli, runs, "--limit", 2)["runs"]] == [
        "my-best-run",
        newest_stamped,
    ]
    assert runs_json(cli, runs, "--limit", 42)["runs"][-1]["id"] == "an-old-one"


# -- what is read ------------------------------------------------------------------------------


def test_runs_limit_opens_the_run_json_of_the_runs_it_shows_only(cli, sparse, opened):
    expected = expected_order(sparse)[:5]
    opened.clear()
    listing = runs_json(cli, sparse, "--limit", 5)
    shown = [row["id"] for row in listing["runs"]]
    assert shown == expected and listing["total"] == 200
    assert opened == set(shown)  # not the other 195


def test_show_latest_opens_one_run_json(cli, sparse, opened):
    newest = expected_order(sparse)[0]
    opened.clear()
    result = cli("show", "latest", "--runs-dir", sparse, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["id"] == newest
    assert opened == {newest}


def test_a_limited_table_opens_only_what_it_shows(cli, sparse, opened):
    expected = expected_order(sparse)[:3]
    opened.clear()
    result = cli("runs", "--runs-dir", sparse, "-n", 3)
    assert result.exit_code == 0, result.stderr
    assert "3 of 200 runs" in result.stdout and all(name in result.stdout for name in expected)
    assert opened == set(expected)


def test_a_sort_by_a_metric_still_reads_every_run(cli, sparse, opened):
    listing = runs_json(cli, sparse, "--sort", "accuracy", "--limit", 3)
    assert len(opened) == 200
    values = [row["metrics"]["test"]["accuracy"] for row in runs_json(cli, sparse)["runs"]]
    assert [row["metrics"]["test"]["accuracy"] for row in listing["runs"]] == sorted(
        values, reverse=True
    )[:3]


# -- the table -----------------------------------------------------------------------------------


def _as_rich_lays_it_out(monkeypatch):
    monkeypatch.setattr(manage.RowsTable, "_body", lambda self, console, options: None)


@pytest.mark.parametrize("options", [[], ["--limit", "7"], ["--sort", "accuracy"]])
def test_the_table_is_what_rich_prints(cli, dense, monkeypatch, options):
    laid_out = []
    body = manage.RowsTable._body
    monkeypatch.setattr(
        manage.RowsTable, "_body", lambda *args: laid_out.append(body(*args)) or laid_out[-1]
    )
    fast = cli("runs", "--runs-dir", dense, *options)
    assert fast.exit_code == 0, fast.stderr
    assert laid_out and laid_out[0] is not None  # the rows were not left to rich
    _as_rich_lays_it_out(monkeypatch)
    slow = cli("runs", "--runs-dir", dense, *options)
    assert fast.stdout == slow.stdout
    if (
        "--limit" not in options
    ):  # the odd rows are there, and the table is wider than 200 columns: cut
        assert (
            "sweep: best, trials" in fast.stdout
            and "incomplete" in fast.stdout
            and "…" in fast.stdout
        )


def test_rows_table_matches_rich_for_odd_cells_and_consoles():
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    rows = [
        [
            escape("a[1]-:smile:-x"),
            Text("completed", style="green"),
            "2026-01-01 10:00:00",
            "0.5000",
            "",
        ],
        [
            "数据-run",
            Text("killed", style="red"),
            "—",
            "100.5",
            escape("val_accuracy 0.97 (trial 3)"),
        ],
        ["plain", Text("odd", style=""), "", "12", "[bold]markup[/]"],
        ["tab\there", Text("dim", style="dim"), "x", "1 ", "y"],
    ]

    def table() -> Table:
        made = Table(title=escape("4 runs in /runs/[x]"), title_justify="left")
        for header, justify in (
            ("id", "left"),
            ("status", "left"),
            ("started", "left"),
            ("acc", "right"),
            ("sweep", "left"),
        ):
            made.add_column(header, justify=justify, no_wrap=True)
        return made

    consoles = [
        {"width": 200},
        {"width": 200, "force_terminal": True, "color_system": "truecolor"},
        {"width": 200, "force_terminal": True, "color_system": "standard", "no_color": True},
        {"width": 30, "force_terminal": True, "color_system": "truecolor"},
        {"width": 60},
        {"width": 12},
        {"width": 200, "emoji": False},
    ]
    for settings in consoles:
        for chosen in (rows[:1], rows[:2], rows[1:3], rows[3:], rows):
            printed = []
            for fast in (True, False):
                console = Console(file=io.StringIO(), soft_wrap=True, **settings)
                made = table()
                if fast:
                    console.print(manage.RowsTable(made, [list(row) for row in chosen]))
                else:
                    for row in chosen:
                        made.add_row(*row)
                    console.print(made)
                printed.append(console.file.getvalue())
            assert printed[0] == printed[1], (settings, chosen)
