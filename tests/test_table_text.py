"""Tables as other programs write them, through the real CLI: lines ended by `\\r` alone (old
Mac files) or by a mix of `\\n`, `\\r\\n` and `\\r` (Excel exports), a header of numbers, a
compressed file, a NUL byte inside a cell.

Line endings are read as pandas reads them, whole and streamed alike; the rest is exit 2 with
one line that names the file (and the line, where there is one) and the fix.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
import yaml

from dlcli.data.tables.form import inspect
from dlcli.data.tables.pieces import spans

ENDINGS = {"lf": ["\n"], "cr": ["\r"], "crlf": ["\r\n"], "mixed": ["\n", "\r\n", "\r"]}


def rows(n: int = 240) -> list[str]:
    """A header and `n` rows: two numbers, a category, a label that depends on them."""
    rng = np.random.default_rng(3)
    out = ["x1,x2,colour,label"]
    for i in range(n):
        a, b = rng.normal(), rng.normal()
        colour = ["red", "green", "blue"][i % 3]
        out.append(f"{a:.4f},{b:.4f},{colour},{'yes' if a + (colour == 'red') > 0.3 else 'no'}")
    return out


def write(path: Path, lines: list[str], ending: str) -> Path:
    ends = ENDINGS[ending]
    path.write_bytes("".join(line + ends[i % len(ends)] for i, line in enumerate(lines)).encode())
    return path


def table_config(tmp_path: Path, data: Path, **extra) -> Path:
    config = {
        "name": "t",
        "seed": 1,
        "data": {"source": "csv", "path": str(data), "target": "label", **extra},
        "model": {
            "layers": [
                {"type": "Dense", "units": 8, "activation": "relu"},
                {"type": "Dense", "units": 2, "activation": "softmax"},
            ]
        },
        "compile": {"optimizer": "adam", "metrics": ["accuracy"]},
        "training": {"epochs": 1, "batch_size": 32},
        "output": {"tensorboard": False, "plots": False},
    }
    path = tmp_path / f"config-{data.stem}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def one_error(result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- line endings ----------------------------------------------------------------------------


@pytest.mark.parametrize("ending", ["cr", "crlf", "mixed"])
def test_every_line_ending_cuts_the_file_into_the_same_pieces_of_whole_rows(tmp_path, ending):
    lines = rows(300)
    path = write(tmp_path / f"{ending}.csv", lines, ending)
    fmt = inspect(str(path))
    assert fmt.names == ["x1", "x2", "colour", "label"] and fmt.header
    for size in (7, 100, 1000, 1 << 20):  # pieces far smaller than a line, down to the whole file
        pieces = [piece for _, piece in spans(str(path), fmt, size)]
        assert b"".join(pieces) == path.read_bytes()
        assert len(pieces) > 1 or size > path.stat().st_size  # cut at every kind of line end
        assert all(piece.endswith((b"\n", b"\r")) for piece in pieces[:-1])
        read = [
            pcsv.read_csv(
                pa.BufferReader(piece), read_options=pcsv.ReadOptions(column_names=fmt.names)
            )
            for piece in pieces
        ]
        assert sum(t.num_rows for t in read) == len(
            lines
        )  # the header is a row here: nothing split or lost
        assert read[-1].column("label").to_pylist()[-1] == lines[-1].split(",")[-1]


@pytest.mark.slow
@pytest.mark.parametrize("ending", ["cr", "mixed"])
def test_a_table_with_cr_or_mixed_line_endings_trains_like_the_same_table_with_lf(
    cli, tmp_path, ending
):
    lines = rows()
    reference = write(tmp_path / "lf.csv", lines, "lf")
    odd = write(tmp_path / f"{ending}.csv", lines, ending)
    summaries = []
    for data in (reference, odd, odd):
        streaming = len(summaries) == 2
        result = cli(
            "train",
            table_config(tmp_path, data),
            "--runs-dir",
            tmp_path / "runs",
            "--quiet",
            "--set",
            f"data.streaming={str(streaming).lower()}",
        )
        assert result.exit_code == 0, result.output
        run = Path(result.stdout.strip().splitlines()[-1])
        record = json.loads((run / "run.json").read_text())
        prep = json.loads((run / "preprocessing.json").read_text())
        summaries.append((record["data"]["samples"], record["data"]["rows"], prep["features"]))
    assert summaries[0] == summaries[1] == summaries[2]
    assert summaries[0][1]["train_file"]["read"] == len(lines) - 1


def test_a_bad_cell_in_a_cr_only_file_is_named_at_its_line(cli, tmp_path):
    lines = rows()
    lines[150] = "oops,0.1,red,yes"
    data = write(tmp_path / "cr.csv", lines, "cr")
    one_error(
        cli("validate", table_config(tmp_path, data)), f"{data}:151:", "column 'x1'", "'oops'"
    )


# -- a header of numbers --------------------------------------------------------------------


def test_a_header_of_numbers_over_a_column_of_labels_is_read_as_the_header(cli, tmp_path):
    lines = rows()
    lines[0] = "1,0,2,3"  # the column names are numbers too: only the text columns can tell
    data = write(tmp_path / "numbered.csv", lines, "lf")
    fmt = inspect(str(data))
    assert fmt.header and fmt.names == ["1", "0", "2", "3"]
    config = table_config(tmp_path, data, target="3")
    result = cli("validate", config, "--json")
    assert result.exit_code == 0, result.output
    # A first row that is data shares its categories with the rows below: no header.
    plain = write(tmp_path / "plain.csv", rows()[1:], "lf")
    assert not inspect(str(plain)).header


# -- what is not a text table ---------------------------------------------------------------


@pytest.mark.parametrize("command", ["validate", "predict"])
def test_a_gzip_compressed_table_is_refused_naming_how_to_unpack_it(
    cli, tmp_path, run_copy, command
):
    data = tmp_path / "table.csv.gz"
    data.write_bytes(gzip.compress("\n".join(rows()).encode()))
    if command == "validate":
        result = cli("validate", table_config(tmp_path, data))
    else:
        result = cli("predict", run_copy, data)
    one_error(result, f"{data}:", "gzip-compressed", f"gunzip -k {data}")


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("column, row", [("colour", 40), ("label", 77)])
def test_a_nul_byte_in_a_cell_is_refused_at_its_line(cli, tmp_path, streaming, column, row):
    lines = rows()
    cells = lines[row].split(",")
    position = lines[0].split(",").index(column)
    cells[position] = cells[position][:2] + "\x00" + cells[position][2:]
    lines[row] = ",".join(cells)
    data = write(tmp_path / "nul.csv", lines, "lf")
    line = one_error(
        cli("validate", table_config(tmp_path, data, streaming=streaming)),
        f"{data}:{row + 1}:",
        f"column '{column}'",
        "NUL byte",
    )
    assert "\\x00" in line
