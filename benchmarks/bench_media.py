"""Text and audio: `dlcli train` on a folder of documents or recordings against the
hand-written Keras script, on the same training and test folders.

The folders are generated once (`make_media.py`: support tickets of four teams, or tones of
three pitch classes), a training folder and a test folder with another seed. Each repeat
runs, in alternating order and each in a fresh process, the same model for the same epochs:

  - hand: `keras.utils.text_dataset_from_directory` + a `TextVectorization` adapted on the
    training folder, mapped over the datasets (or `audio_dataset_from_directory` with
    `output_sequence_length`) + `cache()` + `prefetch()` + `fit`, scored on the test folder;
    for `table` (a CSV with a text column beside an amount and a channel), pandas reads it,
    and `Normalization`, `StringLookup` and a `tf_idf` `TextVectorization` adapted on the
    training rows are concatenated in a `tf.data` map;
  - dlcli: `dlcli train` with `path:` the training folder, `test_path:` the test folder and
    `validation_split: 0`, so both train on the same files and score the same test files.

It reports the end-to-end wall time of each process, the samples per second of `fit`, the
peak resident memory and the test accuracy; per pair the wall-time ratio and the accuracy
difference, and their medians.

    python benchmarks/bench_media.py text                 # 20,000 tickets, 10 epochs
    python benchmarks/bench_media.py table                # 20,000 rows with a text column
    python benchmarks/bench_media.py audio                # 6,000 recordings, 10 epochs
    python benchmarks/bench_media.py text --per-class 500 --epochs 3 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_images import peak_of
from make_media import tickets, tickets_table, tones

SETTINGS = {
    "text": {
        "data": {"text": {"max_tokens": 2000, "output_mode": "int", "sequence_length": 48}},
        "layers": [
            {"type": "Embedding", "input_dim": 2000, "output_dim": 32},
            {"type": "GlobalAveragePooling1D"},
            {"type": "Dense", "units": 32, "activation": "relu"},
            {"type": "Dense", "units": 4, "activation": "softmax"},
        ],
        "per_class": 5000,
    },
    "table": {
        "data": {
            "target": "team",
            "features": ["amount", "channel", {"name": "body", "type": "text"}],
            "text": {"max_tokens": 2000, "output_mode": "tf_idf"},
        },
        "layers": [
            {"type": "Dense", "units": 32, "activation": "relu"},
            {"type": "Dense", "units": 4, "activation": "softmax"},
        ],
        "per_class": 5000,
    },
    "audio": {
        "data": {"sampling_rate": 4000, "output_sequence_length": 2000},
        "layers": [
            {
                "type": "MelSpectrogram",
                "sampling_rate": 4000,
                "num_mel_bins": 32,
                "fft_length": 128,
                "sequence_stride": 64,
            },
            {"type": "Permute", "dims": [2, 1]},
            {"type": "BatchNormalization"},
            {"type": "Conv1D", "filters": 16, "kernel_size": 3, "activation": "relu"},
            {"type": "GlobalAveragePooling1D"},
            {"type": "Dense", "units": 3, "activation": "softmax"},
        ],
        "per_class": 2000,
    },
}

HAND = textwrap.dedent(
    """
    import json, sys, time
    import keras, tensorflow as tf
    kind, train_dir, test_dir, epochs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    layers = json.loads(sys.argv[5])
    keras.utils.set_random_seed(1)
    if kind == "table":
        import pandas as pd
        frames = [pd.read_csv(p, keep_default_na=False) for p in (train_dir, test_dir)]
        classes = sorted(set(frames[0]["team"]))
        def columns(frame):
            x = {"amount": frame["amount"].to_numpy("float32")[:, None],
                 "channel": frame["channel"].to_numpy(str)[:, None],
                 "body": frame["body"].to_numpy(str)}
            return x, frame["team"].map(classes.index).to_numpy("int64")
        (x_train, y_train), (x_test, y_test) = map(columns, frames)
        amount = keras.layers.Normalization(); amount.adapt(x_train["amount"])
        channel = keras.layers.StringLookup(output_mode="one_hot"); channel.adapt(x_train["channel"])
        words = keras.layers.TextVectorization(max_tokens=2000, output_mode="tf_idf")
        words.adapt(x_train["body"])
        raw = tf.data.Dataset.from_tensor_slices((x_train, y_train)).shuffle(len(y_train), seed=1)
        encode = lambda x, y: (tf.concat([amount(x["amount"]), tf.cast(channel(x["channel"]), "float32"),
                                          words(x["body"])], -1), y)
        train = raw.batch(32).map(encode)
        test = tf.data.Dataset.from_tensor_slices((x_test, y_test)).batch(32).map(encode)
        prepare = lambda x, y: (x, y)
        first = keras.Input((1 + channel.vocabulary_size() + words.vocabulary_size(),))
    elif kind == "text":
        train = keras.utils.text_dataset_from_directory(train_dir, batch_size=32, seed=1, verbose=False)
        test = keras.utils.text_dataset_from_directory(test_dir, batch_size=32, shuffle=False, verbose=False)
        vectorize = keras.layers.TextVectorization(max_tokens=2000, output_sequence_length=48)
        vectorize.adapt(train.map(lambda x, y: x))
        prepare = lambda x, y: (vectorize(x), y)
        first = keras.Input((48,), dtype="int32")
    else:
        load = lambda folder, shuffle: keras.utils.audio_dataset_from_directory(
            folder, batch_size=32, seed=1, shuffle=shuffle, output_sequence_length=2000, verbose=False)
        train, test = load(train_dir, True), load(test_dir, False)
        prepare = lambda x, y: (tf.squeeze(x, -1), y)
        first = keras.Input((2000,))
    train = train.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).cache().prefetch(tf.data.AUTOTUNE)
    test = test.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).cache().prefetch(tf.data.AUTOTUNE)
    model = keras.Sequential([first] + [
        getattr(keras.layers, s.pop("type"))(**s) for s in map(dict, layers)])
    model.compile(keras.optimizers.Adam(0.005), "sparse_categorical_crossentropy", metrics=["accuracy"])
    started = time.perf_counter()
    model.fit(train, epochs=epochs, verbose=0)
    fit_s = time.perf_counter() - started
    samples = sum(int(x.shape[0]) for x, _ in train)
    accuracy = model.evaluate(test, verbose=0, return_dict=True)["accuracy"]
    print(json.dumps({"samples_per_s": samples * epochs / fit_s, "accuracy": accuracy}))
    """
)


def hand(kind: str, train: Path, test: Path, epochs: int, env: dict) -> dict:
    layers = json.dumps(SETTINGS[kind]["layers"])
    command = [sys.executable, "-c", HAND, kind, str(train), str(test), str(epochs), layers]
    wall, peak, out = peak_of(command, env)
    return {"wall_s": wall, "peak_mib": peak, **json.loads(out.strip().splitlines()[-1])}


def dlcli(kind: str, train: Path, test: Path, epochs: int, work: Path, env: dict) -> dict:
    import yaml

    layers = [dict(spec) for spec in SETTINGS[kind]["layers"]]
    config = {
        "name": f"bench-{kind}",
        "seed": 1,
        "data": {
            "source": "csv" if kind == "table" else kind,
            "path": str(train),
            "test_path": str(test),
            "validation_split": 0,
            **SETTINGS[kind]["data"],
        },
        "model": {"layers": layers},
        "compile": {
            "optimizer": {"type": "Adam", "learning_rate": 0.005},
            "metrics": ["accuracy"],
        },
        "training": {"epochs": epochs, "batch_size": 32},
        "runtime": {"backend": "tensorflow"},
        "output": {"tensorboard": False, "plots": False, "baselines": "none"},
    }
    path = work / f"{kind}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [sys.executable, "-m", "dlcli", "train", str(path), "--runs-dir", str(work / "runs")]
    wall, peak, out = peak_of([*command, "--json", "--quiet"], env)
    result = json.loads(out.strip().splitlines()[-1])
    return {
        "wall_s": wall,
        "peak_mib": peak,
        "samples_per_s": result.get("samples_per_s"),
        "accuracy": result["test"]["accuracy"],
    }


def show(name: str, result: dict) -> None:
    print(
        f"  {name:<18} wall {result['wall_s']:7.1f} s   fit {result['samples_per_s'] or 0:8.0f} "
        f"samples/s   peak {result['peak_mib']:6.0f} MiB   test accuracy {result['accuracy']:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["text", "table", "audio"])
    parser.add_argument("--per-class", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folder", type=Path, default=None, help="where the data goes (kept)")
    args = parser.parse_args()
    per_class = args.per_class or SETTINGS[args.kind]["per_class"]
    work = Path(tempfile.mkdtemp(prefix=f"bench-{args.kind}-"))
    base = (args.folder or work) / f"{args.kind}-{per_class}"
    make = {"text": tickets, "table": tickets_table, "audio": tones}[args.kind]
    train, test = base / "train", base / "test"
    if args.kind == "table":
        base.mkdir(parents=True, exist_ok=True)
        train, test = base / "train.csv", base / "test.csv"
    if not (base / ".made").exists():
        make(train, per_class, seed=0)
        make(test, max(10, per_class // 4), seed=1)
        (base / ".made").write_text("")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "DLCLI_COMPILE_CACHE": str(work / "cache")}
    print(f"{args.kind}: {per_class:,} per class, {args.epochs} epochs, {os.cpu_count()} cores")
    pairs = []
    for repeat in range(args.repeats):
        order = ("hand", "dlcli") if repeat % 2 == 0 else ("dlcli", "hand")
        results = {}
        for side in order:
            if side == "hand":
                results[side] = hand(args.kind, train, test, args.epochs, env)
            else:
                results[side] = dlcli(args.kind, train, test, args.epochs, work, env)
        print(f"repeat {repeat + 1}:")
        show("hand-written keras", results["hand"])
        show("dlcli train", results["dlcli"])
        ratio = results["dlcli"]["wall_s"] / results["hand"]["wall_s"]
        gap = results["dlcli"]["accuracy"] - results["hand"]["accuracy"]
        pairs.append((ratio, gap))
        print(f"  dlcli / hand: wall {ratio:.2f}x, test accuracy {gap:+.4f}")
    if pairs:
        print(
            f"median: wall {statistics.median(r for r, _ in pairs):.2f}x, "
            f"test accuracy {statistics.median(g for _, g in pairs):+.4f}"
        )


if __name__ == "__main__":
    main()
