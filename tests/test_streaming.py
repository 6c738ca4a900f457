"""`data.streaming`: CSV, Parquet and NPZ files read a piece at a time instead of
whole, through the real CLI.

The same config trained with streaming true and false must see the same rows in the same
splits, the same preprocessing, and (trained with a learning rate too small to move the
weights, so that the order of the batches cannot matter) the same metrics to float rounding.
The memory test runs `dlcli train` as a subprocess on a CSV four times the size of another
and checks that its peak memory grows by a small part of what the file grows.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from dlcli.config.load import load_config
from dlcli.data.dataset import Split, load_data
from dlcli.data.sources.npzfile import NpzRows
from dlcli.data.splits import stratified_rows
from dlcli.data.streaming import StreamSplit

FROZEN = {"type": "adam", "learning_rate": 1e-12}  # weights do not move: batch order cannot matter
SMALL = [
    {"type": "Dense", "units": 16, "activation": "relu"},
    {"type": "Dense", "activation": "softmax"},
]
QUIET = {"tensorboard": False, "plots": False}
COLORS = ["red", "green", "blue", "cyan", "grey"]


def write_table(path: Path, rows: int = 3000, seed: int = 0) -> Path:
    """A CSV with a header: numbers with '?' for missing cells, text categories (one rare,
    some missing), a whole-number column, and a text target that depends on them."""
    rng = np.random.default_rng(seed)
    lines = ["size,color,count,weight,label"]
    for i in range(rows):
        size = rng.normal(10, 3)
        color = "violet" if i % 997 == 5 else COLORS[rng.integers(0, 5)]
        weight = rng.normal()
        label = (
            "big"
            if size + (color in ("red", "blue")) * 3 > 12
            else ("small" if weight < 0.5 else "mid")
        )
        lines.append(
            ",".join(
                [
                    "?" if i % 17 == 0 else f"{size:.3f}",
                    "?" if i % 23 == 0 else f" {color}",
                    str(int(rng.integers(0, 9))),
                    "" if i % 31 == 0 else f"{weight:.4f}",
                    label,
                ]
            )
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def config(path: Path, streaming, **data) -> dict:
    source = "parquet" if str(path).endswith(".parquet") else "csv"
    return {
        "name": f"stream-{streaming}",
        "seed": 5,
        "data": {
            "source": source,
            "path": str(path),
            "target": "label",
            "streaming": streaming,
            **data,
        },
        "model": {"layers": SMALL},
        "compile": {"optimizer": FROZEN, "metrics": ["accuracy"]},
        "training": {"epochs": 2, "batch_size": 64},
        "output": QUIET,
    }


def train(cli, tmp_path: Path, cfg: dict, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    result = cli("train", path, "--runs-dir", tmp_path / "runs", "--quiet")
    assert result.exit_code == 0, result.stderr
    return Path(result.stdout.strip().splitlines()[-1])


def read(run: Path, name: str):
    return json.loads((run / name).read_text())


def assert_same_runs(memory: Path, streamed: Path) -> None:
    """Same splits, labels, preprocessing (to float rounding) and metrics (to float rounding)."""
    a, b = read(memory, "run.json")["data"], read(streamed, "run.json")["data"]
    assert (a["streaming"], b["streaming"]) == (False, True)
    assert b["fingerprint_of"] != a["fingerprint_of"]
    assert (
        a["samples"] == b["samples"]
        and a["input_shape"] == b["input_shape"]
        and a["task"] == b["task"]
    )
    if (memory / "labels.json").exists():
        assert read(memory, "labels.json") == read(streamed, "labels.json")
    if (memory / "preprocessing.json").exists():
        assert_close(read(memory, "preprocessing.json"), read(streamed, "preprocessing.json"))
    m, s = read(memory, "metrics.json"), read(streamed, "metrics.json")
    for split in ("train", "val", "test"):
        assert m[split].keys() == s[split].keys()
        for key in m[split]:
            assert s[split][key] == pytest.approx(m[split][key], rel=1e-5, abs=1e-6), (split, key)


def assert_close(a, b, path="") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=1e-9, abs=1e-9), path
    else:
        assert a == b, path


# ---------------------------------------------------------------- the same data, whole or in pieces


@pytest.mark.slow
def test_a_csv_streamed_gives_the_same_splits_preprocessing_and_metrics(cli, tmp_path, monkeypatch):
    from dlcli.data.tables import pieces

    monkeypatch.setattr(pieces, "PIECE", 8192)  # many pieces in a small file
    data = write_table(tmp_path / "table.csv")
    memory = train(cli, tmp_path, config(data, False), "memory")
    streamed = train(cli, tmp_path, config(data, True), "streamed")
    assert_same_runs(memory, streamed)
    features = {f["name"]: f for f in read(streamed, "preprocessing.json")["features"]}
    assert (
        features["color"]["type"] == "categorical" and "violet" in features["color"]["categories"]
    )
    assert features["size"]["missing"] > 0 and features["weight"]["missing"] > 0
    assert read(streamed, "labels.json") == ["big", "mid", "small"]
    learning = {"optimizer": {"type": "adam", "learning_rate": 0.01}, "metrics": ["accuracy"]}
    streamed = train(cli, tmp_path, {**config(data, True), "compile": learning}, "learning")
    assert (
        read(streamed, "metrics.json")["test"]["accuracy"] > 0.75
    )  # the majority class is under 0.5
    evaluated = cli("evaluate", streamed, "--split", "test", "--json")  # the split streamed again
    assert evaluated.exit_code == 0, evaluated.stderr
    scored = json.loads(evaluated.stdout)
    assert scored["samples"] == read(streamed, "run.json")["data"]["samples"]["test"]
    for key, value in read(streamed, "metrics.json")["test"].items():
        assert scored["metrics"][key] == pytest.approx(value, rel=1e-5)
    import csv  # the confusion matrix pairs each sample's target with its own prediction

    matrix = np.array(
        [row[1:] for row in csv.reader((streamed / scored["confusion_matrix"]).open())][1:],
        dtype=int,
    )
    assert matrix.sum() == scored["samples"]
    assert np.trace(matrix) / matrix.sum() == pytest.approx(scored["metrics"]["accuracy"], abs=1e-6)


@pytest.mark.slow
def test_a_separate_test_file_and_dropped_rows_stream_the_same(cli, tmp_path, monkeypatch):
    from dlcli.data.tables import pieces

    monkeypatch.setattr(pieces, "PIECE", 8192)
    data, test = (
        write_table(tmp_path / "train.csv", 2000, seed=1),
        write_table(tmp_path / "test.csv", 600, seed=2),
    )
    changes = {"test_path": str(test), "on_missing": "drop"}
    memory = train(cli, tmp_path, config(data, False, **changes), "memory")
    streamed = train(cli, tmp_path, config(data, True, **changes), "streamed")
    assert_same_runs(memory, streamed)
    rows = read(streamed, "preprocessing.json")["rows"]
    assert rows["train_file"]["dropped"]["missing cells"] > 0 and rows["test_file"]["read"] == 600


@pytest.mark.slow
def test_parquet_streams_one_row_group_at_a_time(cli, tmp_path):
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    table = pcsv.read_csv(
        write_table(tmp_path / "table.csv"),
        convert_options=pcsv.ConvertOptions(null_values=["?", ""], strings_can_be_null=True),
    )
    data = tmp_path / "table.parquet"
    pq.write_table(table, data, row_group_size=400)
    assert pq.ParquetFile(data).metadata.num_row_groups == 8
    memory = train(cli, tmp_path, config(data, False), "memory")
    streamed = train(cli, tmp_path, config(data, True), "streamed")
    assert_same_runs(memory, streamed)


@pytest.mark.slow
def test_an_npz_is_memory_mapped_and_trains_as_in_memory(cli, tmp_path, monkeypatch):
    from dlcli.data.sources import npzfile

    rng = np.random.default_rng(3)
    x = rng.normal(size=(1500, 6, 2))
    y = (x[:, 0, 0] + x[:, 1, 1] > 0).astype("int64") + (x[:, 2, 0] > 1)
    data = tmp_path / "arrays.npz"
    np.savez(data, x_train=x, y_train=y, x_test=x[:300] * 2, y_test=y[:300])
    monkeypatch.setattr(npzfile, "PIECE_BYTES", 4096)
    reads, raw = [], NpzRows.raw
    monkeypatch.setattr(NpzRows, "raw", lambda self, piece: reads.append(piece) or raw(self, piece))
    cfg = {
        **config(data, False),
        "data": {"source": "npz", "path": str(data), "streaming": False},
        "model": {"layers": [{"type": "Flatten"}, *SMALL]},
    }
    memory = train(cli, tmp_path, cfg, "memory")
    assert not reads
    cfg["data"]["streaming"] = True
    streamed = train(cli, tmp_path, cfg, "streamed")
    assert_same_runs(memory, streamed)
    assert len(reads) > 50  # a piece of the mapped member at a time
    rows = load_data(load_config(tmp_path / "streamed.yaml")).train.rows
    assert isinstance(rows, NpzRows) and rows.pieces > 10
    assert (
        data.read_bytes()[rows.offset : rows.offset + x.nbytes] == x.tobytes()
    )  # the member's data, in the zip
    assert np.array_equal(
        np.concatenate([rows.read(k) for k in range(rows.pieces)]), x.astype("float32")
    )


def test_a_compressed_npz_cannot_be_mapped_and_says_how_to_save_it(cli, tmp_path):
    data = tmp_path / "packed.npz"
    np.savez_compressed(data, x_train=np.ones((40, 3)), y_train=np.arange(40) % 2)
    cfg = {**config(data, True), "data": {"source": "npz", "path": str(data), "streaming": True}}
    result = cli(
        "train", write_yaml(tmp_path / "packed.yaml", cfg), "--runs-dir", tmp_path / "runs"
    )
    one_line_error(result, "numpy.savez", "compressed", "data.streaming: false")


def test_streaming_reports_a_bad_cell_at_the_same_line_as_reading_whole(cli, tmp_path):
    data = write_table(tmp_path / "table.csv")
    lines = data.read_text().splitlines()
    cells = lines[2001].split(",")  # data row 2000, at line 2002
    lines[2001] = ",".join([*cells[:3], "heavy", *cells[4:]])
    data.write_text("\n".join(lines) + "\n")
    errors = []
    for streaming in (False, True):
        result = cli(
            "validate", write_yaml(tmp_path / f"bad{streaming}.yaml", config(data, streaming))
        )
        errors.append(one_line_error(result, "column 'weight'", "'heavy'"))
    assert errors[0] == errors[1] and f"table.csv:{2002}:" in errors[1]


# The other Keras backends installed here (CI installs jax; torch where a developer has it).
OTHER_BACKENDS = [name for name in ("jax", "torch") if importlib.util.find_spec(name) is not None]


@pytest.mark.slow
@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_a_streamed_table_trains_on_the_other_backends(tmp_path, backend):
    from conftest import run_dlcli

    data = write_table(tmp_path / "table.csv", 4000)
    cfg = {
        **config(data, True),
        "runtime": {"backend": backend},
        "compile": {"optimizer": {"type": "adam", "learning_rate": 0.01}, "metrics": ["accuracy"]},
        "training": {"epochs": 5, "batch_size": 64},
    }
    result = run_dlcli(
        "train",
        write_yaml(tmp_path / "c.yaml", cfg),
        "--runs-dir",
        tmp_path / "runs",
        "--json",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    record = read(Path(out["run"]), "run.json")
    assert record["data"]["streaming"] is True and record["versions"]["backend"] == backend
    assert out["test"]["accuracy"] > 0.8  # learned: the majority class is under 0.5


# ---------------------------------------------------------------- the split itself


def test_streamed_splits_hold_the_same_rows_and_shard_evenly(tmp_path):
    data = write_table(tmp_path / "table.csv", 1234)
    whole = load_data(load_config(config(data, False)))
    streamed = load_data(load_config(config(data, True)))
    assert whole.fingerprint != streamed.fingerprint and streamed.summary()["streaming"] is True
    for name in ("train", "val", "test"):
        a, b = whole.split(name), streamed.split(name)
        assert isinstance(a, Split) and isinstance(b, StreamSplit) and len(a) == len(b)
        assert np.all(np.diff(b.index) > 0)  # file order
        # the same rows: compare the (sorted) feature rows themselves, NaN as -1
        rows_a = np.nan_to_num(a.x, nan=-1.0)
        rows_b = np.nan_to_num(np.concatenate(list(b.feature_batches(100))), nan=-1.0)
        assert np.array_equal(rows_a[np.lexsort(rows_a.T)], rows_b[np.lexsort(rows_b.T)])
        assert sorted(a.y.tolist()) == sorted(b.y.tolist())
    train = streamed.train
    for count, multiple in ((2, 1), (3, 4), (4, 8)):
        shards = [train.shard(i, count, multiple) for i in range(count)]
        sizes = {len(s) for s in shards}
        assert sizes == {len(whole.train.shard(0, count, multiple))} and sizes.pop() % multiple == 0
        taken = np.concatenate([s.index for s in shards])
        assert len(np.unique(taken)) == len(taken) and set(taken) <= set(train.index)
        assert all(len(list(s.epoch(32, 0))) == s.steps(32) for s in shards)


def test_each_epoch_is_shuffled_anew_with_the_seed_and_sees_every_row_once(tmp_path, monkeypatch):
    from dlcli.data import streaming

    monkeypatch.setattr(streaming, "WINDOW_BYTES", 64 * 4 * 2)  # windows of 64 rows of 2 numbers
    x = np.arange(2000, dtype="float64").reshape(1000, 2)
    np.savez(tmp_path / "a.npz", x_train=x, y_train=np.arange(1000) % 3)
    monkeypatch.setattr("dlcli.data.sources.npzfile.PIECE_BYTES", 16 * 2 * 8)  # pieces of 16 rows
    cfg = {
        "data": {"source": "npz", "path": str(tmp_path / "a.npz"), "streaming": True},
        "model": {"layers": SMALL},
        "seed": 9,
    }
    train = load_data(load_config(cfg)).train

    def order(number):
        batches = list(train.epoch(50, number))
        assert [len(b[0]) for b in batches] == [50] * (len(train) // 50) + (
            [len(train) % 50] if len(train) % 50 else []
        )
        rows = np.concatenate([b[0][:, 0] for b in batches]) / 2
        assert np.array_equal(
            train.y[np.searchsorted(train.index, rows.astype(int))],
            np.concatenate([b[1] for b in batches]),
        )
        return rows

    first, again, second = order(0), order(0), order(1)
    assert np.array_equal(first, again) and not np.array_equal(first, second)
    assert sorted(first) == sorted(second) == sorted(train.index.tolist())
    assert (
        abs(np.corrcoef(first, np.arange(len(first)))[0, 1]) < 0.5
    )  # pieces permuted, not in file order
    unshuffled = (
        np.concatenate(
            [b[0][:, 0] for b in StreamSplit(train.rows, train.index, train.y).epoch(50, 0)]
        )
        / 2
    )
    assert np.array_equal(unshuffled, train.index)


@pytest.mark.parametrize(
    "n, classes, fraction, seed", [(1000, 3, 0.2, 0), (5003, 7, 0.13, 5), (20_000, 60, 0.25, 42)]
)
def test_the_lean_stratified_split_draws_what_scikit_learn_draws(n, classes, fraction, seed):
    from sklearn.model_selection import train_test_split

    y = np.random.default_rng(seed).integers(0, classes, n)
    y[:2] = 0
    train, test, _, _ = train_test_split(
        np.arange(n), y, test_size=fraction, random_state=seed, stratify=y
    )
    lean_train, lean_test = stratified_rows(y, fraction, seed)
    assert np.array_equal(train, lean_train) and np.array_equal(test, lean_test)
    with pytest.raises(ValueError):
        stratified_rows(np.append(y, classes + 1), fraction, seed)  # a class of one sample


# ---------------------------------------------------------------- choosing, refusing, failing


def test_auto_streams_files_larger_than_a_quarter_of_memory(cli, tmp_path, monkeypatch):
    from dlcli.data.sources import datafile as files

    data = write_table(tmp_path / "table.csv", 400)
    cfg = {**config(data, "auto"), "training": {"epochs": 1, "batch_size": 64}}
    cfg["data"].pop("streaming")  # the default is auto
    path = write_yaml(tmp_path / "auto.yaml", cfg)
    assert load_config(path).data.streaming == "auto"
    assert validate(cli, path)["data"]["streaming"] is False
    monkeypatch.setattr(files, "machine_memory", lambda: 4 * data.stat().st_size - 4)
    assert validate(cli, path)["data"]["streaming"] is True


def test_streaming_a_dataset_that_is_not_a_file_is_a_one_line_error_at_its_line(
    cli, write_config, tmp_path
):
    path = write_config({"data": {"source": "digits", "streaming": True}})
    line = path.read_text().splitlines().index("  streaming: true") + 1
    result = cli("train", path, "--runs-dir", tmp_path / "runs")
    one_line_error(result, f"{path}:{line}: data.streaming:", "'digits'", "data.streaming: auto")
    result = cli("validate", write_config(), "--set", "data.streaming=true")
    one_line_error(result, "--set data.streaming=true", "csv, parquet and npz")
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_running_out_of_memory_while_streaming_is_one_line_and_a_failed_run(
    cli, tmp_path, monkeypatch
):
    from dlcli.data import streaming

    data = write_table(tmp_path / "table.csv", 1500)
    blocks = streaming.StreamSplit._blocks
    served = [0]

    def starved(self, pieces):
        for block in blocks(self, pieces):
            served[0] += 1
            if served[0] > 3:  # after loading: during the first epochs
                raise MemoryError(
                    "Unable to allocate 64.0 MiB for an array with shape (4096, 4096)"
                )
            yield block

    monkeypatch.setattr(streaming.StreamSplit, "_blocks", starved)
    result = cli(
        "train",
        write_yaml(tmp_path / "c.yaml", config(data, True)),
        "--runs-dir",
        tmp_path / "runs",
        "--quiet",
    )
    assert result.exit_code == 1, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: out of memory")
    (run,) = (tmp_path / "runs").iterdir()
    record = read(run, "run.json")
    assert record["status"] == "failed" and record["error"].startswith("out of memory")


def test_running_out_of_memory_while_loading_is_one_line(cli, tmp_path, monkeypatch):
    from dlcli.data.tables import stream as tablestream

    def starved(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(tablestream, "scan", starved)
    data = write_table(tmp_path / "table.csv", 100)
    result = cli(
        "train",
        write_yaml(tmp_path / "c.yaml", config(data, True)),
        "--runs-dir",
        tmp_path / "runs",
    )
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert (
        result.stderr.startswith("error: out of memory while loading the data")
        and result.stderr.count("\n") == 1
    )


# ---------------------------------------------------------------- memory stays bounded


def peak_rss(cmd: list[str]) -> tuple[int, subprocess.CompletedProcess]:
    """(peak RSS in bytes, the finished process): Linux's VmHWM polled while it runs (dlcli
    ends with os._exit; getrusage of a child would include this test process's own peak)."""
    process = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    peak = [0]

    def poll():
        while process.poll() is None:
            try:
                with open(f"/proc/{process.pid}/status") as handle:
                    found = [
                        int(line.split()[1]) * 1024 for line in handle if line.startswith("VmHWM:")
                    ]
                peak[0] = max([peak[0], *found])
            except OSError:
                pass
            time.sleep(0.02)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    out, err = process.communicate(timeout=300)
    watcher.join()
    return peak[0], subprocess.CompletedProcess(cmd, process.returncode, out, err)


def write_numbers(path: Path, rows: int, columns: int = 48, seed: int = 0) -> Path:
    """A CSV of `rows` x `columns` numbers (3 decimals) and a label 0..4, written by pyarrow."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    rng = np.random.default_rng(seed)
    with pcsv.CSVWriter(
        path,
        pa.schema([(f"f{j}", pa.float64()) for j in range(columns)] + [("label", pa.int64())]),
        write_options=pcsv.WriteOptions(quoting_style="none"),
    ) as writer:
        for start in range(0, rows, 50_000):
            n = min(50_000, rows - start)
            label = rng.integers(0, 5, n)
            values = np.round(rng.normal(size=(n, columns)) + label[:, None] * 0.1, 3)
            writer.write_table(
                pa.Table.from_arrays(
                    [*(pa.array(values[:, j]) for j in range(columns)), pa.array(label)],
                    names=[*(f"f{j}" for j in range(columns)), "label"],
                )
            )
    return path


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_file_when_streaming(tmp_path):
    # On TensorFlow: XLA's compile peaks on JAX move by ±20 MB from run to run (and a cache
    # hit peaks lower than a compile), which would drown the few MB this file size adds.
    # (Measured by hand on JAX: 538 MB streaming 80,000 rows, 540 MB streaming 320,000.)
    small, large = (
        write_numbers(tmp_path / "small.csv", 80_000),
        write_numbers(tmp_path / "large.csv", 320_000),
    )
    grown = large.stat().st_size - small.stat().st_size
    assert grown > 60e6

    def run(data: Path, streaming: bool) -> int:
        cfg = {
            "name": f"{data.stem}-{streaming}",
            "seed": 0,
            "data": {
                "source": "csv",
                "path": str(data),
                "target": "label",
                "streaming": streaming,
                "validation_split": 0.1,
                "test_split": 0.1,
            },
            "model": {
                "layers": [{"type": "Dense", "units": 8, "activation": "relu"}, {"type": "Dense"}]
            },
            "compile": {"loss": {"type": "sparse_categorical_crossentropy", "from_logits": True}},
            "training": {"epochs": 1, "batch_size": 2048},
            "output": {**QUIET, "baselines": "none"},  # memory of the network's run alone
            "runtime": {"backend": "tensorflow"},
        }
        path = write_yaml(tmp_path / f"{data.stem}-{streaming}.yaml", cfg)
        peak, done = peak_rss(
            [
                sys.executable,
                "-m",
                "dlcli",
                "train",
                str(path),
                "--runs-dir",
                str(tmp_path / "runs"),
                "--quiet",
            ]
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert read(Path(done.stdout.strip()), "run.json")["data"]["streaming"] is streaming
        return peak

    streamed_small, streamed_large, whole_large = (
        run(small, True),
        run(large, True),
        run(large, False),
    )
    # Streaming: a bounded window of the file, plus a few bytes per row (row numbers, targets:
    # ~10 MB for the 240,000 more rows) and the allocator's noise between two processes (a
    # clean-clone CI run saw 16 MB in all).
    assert streamed_large - streamed_small < 0.3 * grown, (streamed_small, streamed_large, grown)
    # Reading whole, the same file takes its features in memory: the probe sees that.
    assert whole_large - streamed_large > 0.4 * grown, (whole_large, streamed_large, grown)


# ---------------------------------------------------------------- helpers


def write_yaml(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def validate(cli, path: Path) -> dict:
    result = cli("validate", path, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def one_line_error(result, *needles) -> str:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]
