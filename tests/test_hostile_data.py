"""Hostile or unlucky data files, through the real CLI: a FIFO or /dev/zero, an NPZ that
unpacks to gigabytes, a text file called .npz, arrays of the wrong shape, splits that leave
nothing to train on, CSV cells too large or outside float32.

Each must be exit 2 with one `error:` line naming the file (`file:line` for a CSV row, the
config's line for a config key) and the fix: no traceback, no hang, no unbounded memory, and
(for `validate` and `train`) no run folder. Cases that hung or ate memory before they were
fixed run in a subprocess with a timeout and an address-space limit, so that a regression
fails the test instead of the machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

# --------------------------------------------------------------------------------------
# helpers

MEMORY_CAP = 4 << 30  # address space of a subprocess: TensorFlow fits, reading without end does not
BOUNDED = (
    "import resource, runpy, sys; "
    f"resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_CAP}, {MEMORY_CAP})); "
    "sys.argv[0] = 'dlcli'; runpy.run_module('dlcli', run_name='__main__', alter_sys=True)"
)


def run_bounded(*args, env=None, timeout=60) -> subprocess.CompletedProcess:
    """`python -m dlcli ARGS` under MEMORY_CAP and a timeout (conftest's run_dlcli, bounded)."""
    return subprocess.run(
        [sys.executable, "-c", BOUNDED, *map(str, args)],
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def line_of(path: Path, pattern: str) -> int:
    """The 1-based line of the first line of `path` matching the regex `pattern`."""
    for number, text in enumerate(Path(path).read_text().splitlines(), start=1):
        if re.search(pattern, text):
            return number
    raise AssertionError(f"{pattern!r} not in {path}:\n{Path(path).read_text()}")


def assert_refused(code: int, stdout: str, stderr: str, *needles: str, where: str) -> str:
    """Exit 2, nothing on stdout, one `error: WHERE...` line holding every needle, no traceback."""
    context = f"\nexit {code}\nstdout: {stdout[-2000:]!r}\nstderr: {stderr[-2000:]!r}"
    assert "Traceback" not in stdout + stderr, context
    assert code == 2, context
    assert stdout.strip() == "", context
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, context
    assert lines[0].startswith((f"error: {where}:", f"error: {where} ")), (
        f"expected it to start with {where!r}" + context
    )
    for needle in needles:
        assert needle in lines[0], f"expected {needle!r}" + context
    return lines[0]


def assert_no_run_folder(runs_dir: Path) -> None:
    assert not runs_dir.exists() or not any(runs_dir.iterdir()), (
        f"a refused config left {list(runs_dir.iterdir())}"
    )


@pytest.fixture
def refused(cli, runs_dir):
    """refused(config, *needles, where=...): `validate` and `train` both exit 2 with the one
    line, and no run folder appears. Returns the line."""

    def check(config: Path, *needles: str, where: str) -> str:
        line = ""
        for args in (["validate", config], ["train", config, "--runs-dir", runs_dir]):
            result = cli(*args)
            line = assert_refused(
                result.exit_code, result.stdout, result.stderr, *needles, where=where
            )
            assert_no_run_folder(runs_dir)
        return line

    return check


def model_layers(units: int, activation: str = "softmax") -> dict:
    return {
        "model": {
            "layers": [
                {"type": "Dense", "units": 8, "activation": "relu"},
                {"type": "Dense", "units": units, "activation": activation},
            ]
        }
    }


def csv_config(path: Path, **data) -> dict:
    """A 3-class CSV problem (columns a, b, label) unless `data` says otherwise."""
    return {
        **model_layers(3),
        "data": {"source": "csv", "path": str(path), "target": "label", **data},
    }


def npz_config(path: Path, **data) -> dict:
    return {**model_layers(3), "data": {"source": "npz", "path": str(path), **data}}


def regression(config: dict) -> dict:
    return {
        **config,
        **model_layers(1, "linear"),
        "compile": {"optimizer": "adam", "loss": "mse", "metrics": ["mae"]},
    }


def csv_lines(n: int = 30, header: str = "a,b,label") -> list[str]:
    rng = np.random.default_rng(0)
    return [header] + [f"{rng.normal():.4f},{rng.normal():.4f},{i % 3}" for i in range(n)]


def write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def arrays(n: int = 30, width: int = 4) -> tuple[np.ndarray, np.ndarray]:
    return np.random.default_rng(0).normal(size=(n, width)), np.arange(n) % 3


@pytest.fixture
def make_fifo(tmp_path):
    """make_fifo(name) -> a FIFO in tmp_path. Should anything open it for reading (the bug),
    a helper thread writes one short line and closes it, so that the test fails on the
    message instead of hanging forever."""
    stop = threading.Event()
    threads = []

    def feed(path: Path) -> None:
        while not stop.is_set():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: nobody is reading, as it should be
                stop.wait(0.05)
                continue
            try:
                os.write(fd, b"a,b,label\n")
            except OSError:  # the reader has gone
                pass
            finally:
                os.close(fd)

    def make(name: str) -> Path:
        path = tmp_path / name
        os.mkfifo(path)
        thread = threading.Thread(target=feed, args=(path,), daemon=True)
        thread.start()
        threads.append(thread)
        return path

    yield make
    stop.set()
    for thread in threads:
        thread.join(timeout=5)


NOT_REGULAR = "is not a regular file"

# --------------------------------------------------------------------------------------
# 1. non-regular files: a FIFO blocks forever, /dev/zero never ends


@pytest.mark.parametrize("entry", ["csv path", "csv test_path", "npz path"])
def test_fifo_as_training_data_is_refused_without_opening_it(
    refused, write_config, make_fifo, tmp_path, entry
):
    if entry == "csv path":
        fifo = make_fifo("data.csv")
        config = write_config(csv_config(fifo))
    elif entry == "csv test_path":
        fifo = make_fifo("test.csv")
        config = write_config(
            csv_config(write_csv(tmp_path / "train.csv", csv_lines()), test_path=str(fifo))
        )
    else:
        fifo = make_fifo("data.npz")
        config = write_config(npz_config(fifo))
    refused(config, NOT_REGULAR, "data file", where=str(fifo))


def test_dev_zero_as_npz_data_is_refused(refused, write_config):
    refused(write_config(npz_config(Path("/dev/zero"))), NOT_REGULAR, where="/dev/zero")


@pytest.mark.parametrize("command", ["evaluate", "predict"])
@pytest.mark.parametrize("name", ["input.csv", "input.npz"])
def test_fifo_as_evaluate_or_predict_input_is_refused(cli, run_copy, make_fifo, command, name):
    fifo = make_fifo(name)
    evaluations = run_copy / "evaluations.jsonl"
    before = evaluations.read_text() if evaluations.exists() else None
    args = [
        command,
        run_copy,
        *(["--data", fifo] if command == "evaluate" else [fifo]),
        "--runs-dir",
        run_copy.parent,
    ]
    result = cli(*args)
    assert_refused(result.exit_code, result.stdout, result.stderr, NOT_REGULAR, where=str(fifo))
    assert (evaluations.read_text() if evaluations.exists() else None) == before  # nothing recorded


@pytest.mark.slow
def test_dev_zero_as_csv_data_ends_at_once_in_a_bounded_process(write_config, tmp_path):
    """It read /dev/zero for ever, past 5 GB of memory."""
    config = write_config(csv_config(Path("/dev/zero")))
    proc = run_bounded("validate", config, timeout=60)
    assert_refused(proc.returncode, proc.stdout, proc.stderr, NOT_REGULAR, where="/dev/zero")


@pytest.mark.slow
def test_dev_zero_as_predict_input_ends_at_once_in_a_bounded_process(run_copy):
    proc = run_bounded("predict", run_copy, "/dev/zero", "--runs-dir", run_copy.parent, timeout=60)
    assert_refused(proc.returncode, proc.stdout, proc.stderr, NOT_REGULAR, where="/dev/zero")


# --------------------------------------------------------------------------------------
# 2. NPZ decompression bombs: sizes are checked from the headers, before any array is read


@pytest.mark.slow
def test_npz_bomb_is_refused_before_it_is_unpacked(write_config, tmp_path, runs_dir):
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(
        bomb, x_train=np.zeros((25_000, 1_000)), y_train=np.arange(25_000) % 3
    )  # 200 MB unpacked
    assert bomb.stat().st_size < 2_000_000
    config = write_config(npz_config(bomb))
    env = {"DLCLI_MAX_ARRAY_BYTES": "50000000"}
    for args in (["validate", config], ["train", config, "--runs-dir", runs_dir]):
        proc = run_bounded(*args, env=env, timeout=60)
        assert_refused(
            proc.returncode,
            proc.stdout,
            proc.stderr,
            "200,000,000 bytes",
            "50,000,000",
            "DLCLI_MAX_ARRAY_BYTES",
            "smaller file",
            "data.streaming",
            where=str(bomb),
        )
        assert_no_run_folder(runs_dir)


def test_npz_over_the_array_limit_is_refused_and_under_it_loads(
    cli, write_config, tmp_path, monkeypatch
):
    data = tmp_path / "data.npz"
    x, y = arrays()
    np.savez(data, x_train=x, y_train=y)  # 30*4*8 + 30*8 = 1,200 bytes of arrays
    config = write_config(npz_config(data))
    monkeypatch.setenv("DLCLI_MAX_ARRAY_BYTES", "1000")
    result = cli("validate", config)
    assert_refused(
        result.exit_code,
        result.stdout,
        result.stderr,
        "1,200 bytes",
        "limit of 1,000 bytes",
        "set by DLCLI_MAX_ARRAY_BYTES",
        where=str(data),
    )
    monkeypatch.setenv("DLCLI_MAX_ARRAY_BYTES", "1200")
    assert cli("validate", config).exit_code == 0
    monkeypatch.delenv("DLCLI_MAX_ARRAY_BYTES")
    result = cli("validate", config, "--json")
    assert result.exit_code == 0, result.stderr
    assert '"train": ' in result.stdout


def test_bad_array_limit_setting_is_named(cli, write_config, tmp_path, monkeypatch):
    data = tmp_path / "data.npz"
    np.savez(data, x_train=arrays()[0], y_train=arrays()[1])
    monkeypatch.setenv("DLCLI_MAX_ARRAY_BYTES", "lots")
    result = cli("validate", write_config(npz_config(data)))
    assert_refused(
        result.exit_code, result.stdout, result.stderr, "'lots'", where="DLCLI_MAX_ARRAY_BYTES"
    )


def _forged_npz(path: Path, declared: tuple, actual: np.ndarray) -> Path:
    """An NPZ whose x_train header declares `declared` but whose data is `actual`'s."""
    import io

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": declared}
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x_train.npy", header.getvalue() + actual.astype("<f8").tobytes())
        y = io.BytesIO()
        np.save(y, np.arange(len(actual)) % 3)
        archive.writestr("y_train.npy", y.getvalue())
    return path


def test_npz_header_that_does_not_match_its_member_is_refused(refused, write_config, tmp_path):
    data = _forged_npz(tmp_path / "forged.npz", (100_000, 1_000), np.zeros((30, 4)))
    refused(
        write_config(npz_config(data)),
        "'x_train' declares 800,000,000 bytes",
        "holds 960",
        "damaged",
        where=str(data),
    )


# --------------------------------------------------------------------------------------
# 3. not an NPZ at all


def test_text_file_given_as_npz_is_not_called_python_objects(refused, write_config, tmp_path):
    data = write_csv(tmp_path / "data.npz", csv_lines())
    line = refused(
        write_config(npz_config(data)), "not an NPZ (zip) file", "numpy.savez", where=str(data)
    )
    assert "Python objects" not in line


def test_single_npy_array_given_as_npz_says_so(refused, write_config, tmp_path):
    data = tmp_path / "data.npz"
    with open(data, "wb") as handle:
        np.save(handle, arrays()[0])
    refused(write_config(npz_config(data)), "single .npy array, not an NPZ", where=str(data))


# --------------------------------------------------------------------------------------
# 4. arrays of the wrong shape


@pytest.mark.parametrize(
    ("x", "y", "needles"),
    [
        (np.array(5.0), np.arange(30) % 3, ["x_train holds a single number", "one row per sample"]),
        (np.zeros((50, 0)), np.arange(50) % 3, ["x_train has no features (shape (50, 0))"]),
        (np.zeros((30, 4)), np.array(1), ["y_train holds a single value", "per sample"]),
        (np.zeros((30, 4)), np.zeros((30, 2, 2)), ["y_train has shape (30, 2, 2)", "per sample"]),
        (np.zeros((30, 4)), np.arange(20) % 3, ["x_train has 30 samples but y_train has 20"]),
    ],
    ids=["0-d x", "no features", "0-d y", "3-d y", "mismatched y"],
)
def test_npz_arrays_of_the_wrong_shape(refused, write_config, tmp_path, x, y, needles):
    data = tmp_path / "data.npz"
    np.savez(data, x_train=x, y_train=y)
    refused(write_config(npz_config(data)), *needles, where=str(data))


def test_npz_test_arrays_of_different_lengths(refused, write_config, tmp_path):
    data = tmp_path / "data.npz"
    x, y = arrays()
    np.savez(data, x_train=x, y_train=y, x_test=x[:10], y_test=y[:8])
    refused(
        write_config(npz_config(data)), "x_test has 10 samples but y_test has 8", where=str(data)
    )


# --------------------------------------------------------------------------------------
# 5. split fractions that leave a split empty


@pytest.mark.parametrize(
    ("key", "needles"),
    [
        ("validation_split", ["1437 for validation", "leaves 0 for training", "at most 0.99"]),
        ("test_split", ["1797 for test", "leaves 0 for training and validation", "at most 0.99"]),
    ],
)
def test_split_fraction_that_leaves_nothing_to_train_on(refused, write_config, key, needles):
    config = write_config({"data": {key: 0.9999}})
    at = line_of(config, rf"^\s+{key}: 0.9999")
    line = refused(config, *needles, where=f"{config}:{at}")
    assert f"data.{key}" in line


def test_split_fraction_that_leaves_too_few_of_a_small_file(refused, write_config, tmp_path):
    data = write_csv(tmp_path / "data.csv", csv_lines(n=6))
    config = write_config(csv_config(data, test_split=0.2, validation_split=0.6))
    # 6 samples: 2 for test, 4 left; 0.6 of 4 takes 3 for validation and leaves 1 to train on.
    refused(
        config,
        "3 for validation",
        "leaves 1 for training",
        "at least 2",
        "at most 0.5",
        where=f"{config}:{line_of(config, r'validation_split: 0.6')}",
    )


# --------------------------------------------------------------------------------------
# 6. CSV cells: too large, a byte-order mark, duplicated columns, the target as a feature,
#    numbers outside float32


def test_csv_cell_over_the_field_limit_names_the_line(refused, write_config, tmp_path):
    lines = csv_lines()
    lines[4] = f'0.5,"{"7" * 200_000},1'  # line 5: a quote never closed
    data = write_csv(tmp_path / "data.csv", lines)
    refused(
        write_config(csv_config(data)),
        "a cell is over 131,072 characters",
        "never closed",
        where=f"{data}:5",
    )


def test_csv_line_without_end_is_cut_short(cli, write_config, tmp_path, monkeypatch):
    from dlcli.data.tables import diagnostics

    monkeypatch.setattr(diagnostics, "MAX_LINE", 1_000)
    lines = csv_lines()
    lines[2] = "0.5," * 600 + "1"  # line 3
    data = write_csv(tmp_path / "data.csv", lines)
    result = cli("validate", write_config(csv_config(data)))
    assert_refused(
        result.exit_code, result.stdout, result.stderr, "over 1,000 characters", where=f"{data}:3"
    )


def test_csv_with_a_byte_order_mark_reads_its_first_column(cli, write_config, tmp_path):
    data = tmp_path / "data.csv"
    lines = [
        ",".join(reversed(line.split(","))) for line in csv_lines(header="a,b,target")
    ]  # target first
    data.write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    assert data.read_bytes().startswith(b"\xef\xbb\xbftarget,")
    result = cli("validate", write_config(csv_config(data, target="target")))
    assert result.exit_code == 0, result.stderr


def test_csv_with_a_duplicated_header_column(refused, write_config, tmp_path):
    data = write_csv(tmp_path / "data.csv", csv_lines(header="a,a,label"))
    refused(
        write_config(csv_config(data)),
        "column 'a' appears twice",
        "columns 1 and 2",
        where=f"{data}:1",
    )


def test_csv_target_listed_as_a_feature(refused, write_config, tmp_path):
    data = write_csv(tmp_path / "data.csv", csv_lines())
    config = write_config(csv_config(data, features=["a", "label"]))
    at = line_of(config, r"^\s*- label$")
    refused(
        config,
        "the target 'label' is also listed as a feature",
        "data.features",
        where=f"{config}:{at}",
    )


def test_csv_feature_out_of_float32_range(refused, write_config, tmp_path):
    lines = csv_lines()
    lines[6] = "0.5,1e39,1"  # line 7
    data = write_csv(tmp_path / "data.csv", lines)
    refused(
        write_config(csv_config(data)),
        "column 'b' is 1e39",
        "out of float32 range",
        where=f"{data}:7",
    )


def test_csv_regression_target_out_of_float32_range(refused, write_config, tmp_path):
    lines = ["a,b,label"] + [f"{i},{i * 2},{i * 0.5}" for i in range(30)]
    lines[9] = "1,2,-1e39"  # line 10
    data = write_csv(tmp_path / "data.csv", lines)
    refused(
        write_config(regression(csv_config(data))),
        "the target 'label' is -1e39",
        "out of float32 range",
        where=f"{data}:10",
    )


def test_headerless_predict_input_out_of_float32_range(cli, run_copy, tmp_path):
    rows = np.zeros((3, 64))
    data = tmp_path / "input.csv"
    lines = [",".join("0" for _ in row) for row in rows]
    lines[1] = ",".join(["0"] * 4 + ["1e39"] + ["0"] * 59)  # line 2, column 5
    data.write_text("\n".join(lines) + "\n")
    result = cli("predict", run_copy, data, "--runs-dir", run_copy.parent)
    assert_refused(
        result.exit_code,
        result.stdout,
        result.stderr,
        "column '4' is 1e39",
        "out of float32 range",
        where=f"{data}:2",
    )


def test_npz_float64_features_out_of_float32_range(refused, write_config, tmp_path):
    x, y = arrays()
    x[3, 1] = 1e39
    data = tmp_path / "data.npz"
    np.savez(data, x_train=x, y_train=y)
    refused(
        write_config(npz_config(data)),
        "x_train holds 1e+39 at sample 3",
        "out of float32 range",
        where=str(data),
    )


def test_npz_regression_target_out_of_float32_range(refused, write_config, tmp_path):
    x, _ = arrays()
    y = np.linspace(0, 1, len(x))
    y[7] = 1e39
    data = tmp_path / "data.npz"
    np.savez(data, x_train=x, y_train=y)
    refused(
        write_config(regression(npz_config(data))),
        "y_train holds 1e+39 at sample 7, out of float32 range",
        where=str(data),
    )
