"""The hand-written pandas + Keras script that `dlcli train` is measured against on a table.

It is what a practitioner would write for a table config such as
benchmarks/configs/census_mlp.yaml: read the CSV with pandas, split off a stratified test
set and then a stratified validation set exactly as dlcli does (same seed, fractions and
label order), fit the preprocessing on the training split only (numbers: missing cells
filled with the training mean, then standardised with the training mean and standard
deviation; text columns: one-hot over the training categories, most frequent first, with
one more column for a missing or unseen category), build the config's keras.Sequential,
compile, fit with validation_data, evaluate on the test split and save a .keras file.

Everything it trains with is read from the config given on the command line (data path,
columns, target, missing markers, splits, seed, layers, optimizer, loss, batch size,
epochs); a config it cannot follow is refused, so the two cannot drift apart.

    python benchmarks/baseline_table.py benchmarks/configs/census_mlp.yaml

It prints one JSON line on stdout: the test metrics and what was trained.
"""

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as dlcli does
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import numpy as np
import pandas as pd
import yaml
from sklearn.model_selection import train_test_split


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", type=Path, help="a dlcli table config (data.source: csv)")
    # Diagnostic only (bench_train.py --match-runtime): Keras's default is 1, and that is
    # what the plain script uses.
    p.add_argument("--steps-per-execution", type=int, default=1)
    p.add_argument(
        "--seed", type=int, help="instead of the config's seed (bench_train.py --vary-seed)"
    )
    return p.parse_args()


def read_config(path: Path) -> dict:
    """The config's settings, checked to be what this script does."""
    cfg = yaml.safe_load(path.read_text())
    data, training, comp = cfg["data"], cfg["training"], cfg["compile"]
    if (
        data.get("source") != "csv"
        or data.get("header", "auto") is not False
        or not data.get("columns")
    ):
        raise SystemExit(
            f"{path}: the baseline reads a csv without a header, named by data.columns"
        )
    if (
        data.get("features") is not None
        or data.get("on_missing", "fill") != "fill"
        or data.get("normalize", "standard") != "standard"
        or data.get("test_path")
    ):
        raise SystemExit(
            f"{path}: the baseline uses every column, on_missing: fill, normalize: standard"
        )
    if (
        training.get("early_stopping")
        or training.get("reduce_lr_on_plateau")
        or training.get("callbacks")
    ):
        raise SystemExit(f"{path}: the benchmark needs a fixed number of epochs and no callbacks")
    optimizer = comp["optimizer"]
    optimizer = {"type": optimizer} if isinstance(optimizer, str) else optimizer
    if optimizer["type"] != "adam" or set(optimizer) - {"type", "learning_rate"}:
        raise SystemExit(f"{path}: the baseline uses adam with at most a learning_rate")
    if comp.get(
        "loss", "sparse_categorical_crossentropy"
    ) != "sparse_categorical_crossentropy" or comp.get("metrics", ["accuracy"]) != ["accuracy"]:
        raise SystemExit(f"{path}: the baseline uses sparse_categorical_crossentropy and accuracy")
    layers = cfg["model"]["layers"]
    for i, layer in enumerate(layers):
        last = i == len(layers) - 1
        known = {"type", "units", "activation"} if layer["type"] == "Dense" else {"type", "rate"}
        if (
            layer["type"] not in ("Dense", "Dropout")
            or set(layer) - known
            or (last and (layer["type"] != "Dense" or layer.get("activation") != "softmax"))
        ):
            raise SystemExit(f"{path}: layer {i} ({layer}) is not what baseline_table.py builds")
    return {
        "path": (path.parent / data["path"]),
        "columns": data["columns"],
        "target": data["target"],
        "missing": data.get("missing", []),
        "test_split": data.get("test_split", 0.2),
        "validation_split": data.get("validation_split", 0.2),
        "seed": cfg.get("seed", 42),
        "layers": layers,
        "learning_rate": optimizer.get("learning_rate", 0.001),
        "epochs": training["epochs"],
        "batch_size": training.get("batch_size", 32),
    }


def fit_preprocessing(train: pd.DataFrame, numeric: list, categorical: list) -> dict:
    """Statistics and vocabularies of the training split only."""
    stats = {}
    for name in numeric:
        values = train[name].dropna().to_numpy("float64")
        std = values.std()
        stats[name] = (values.mean(), std if std > 1e-12 else 1.0)
    vocab = {}
    for name in categorical:
        counts = train[name].value_counts()  # missing cells are not counted
        vocab[name] = sorted(counts.index, key=lambda c: (-counts[c], c))  # most frequent first
    return {"stats": stats, "vocab": vocab}


def transform(frame: pd.DataFrame, prep: dict) -> np.ndarray:
    """Numbers filled and standardised, then each text column one-hot (column 0: missing or
    unseen), side by side: float32, one row per sample."""
    parts = []
    for name, (mean, std) in prep["stats"].items():
        parts.append(((frame[name].fillna(mean).to_numpy("float64") - mean) / std)[:, None])
    for name, categories in prep["vocab"].items():
        codes = (
            pd.Categorical(frame[name], categories=categories).codes + 1
        )  # -1 (missing, unseen) -> 0
        parts.append(np.eye(len(categories) + 1)[codes])
    return np.concatenate(parts, axis=1).astype("float32")


def main():
    args = parse_args()
    cfg = read_config(args.config)
    if args.seed is not None:
        cfg["seed"] = args.seed
    keras.utils.set_random_seed(cfg["seed"])

    frame = pd.read_csv(
        cfg["path"],
        header=None,
        names=cfg["columns"],
        skipinitialspace=True,
        na_values=cfg["missing"],
    )
    frame = frame.dropna(subset=[cfg["target"]])
    y = frame.pop(cfg["target"]).astype(str).to_numpy()
    numeric = frame.select_dtypes("number").columns.tolist()
    categorical = [c for c in frame.columns if c not in numeric]

    # The same splits as dlcli: test first (stratified by the labels), labels encoded in
    # sorted order, then validation from the rest (stratified by the encoded labels).
    seed = cfg["seed"]
    rest, test, y_rest, y_test = train_test_split(
        frame, y, test_size=cfg["test_split"], random_state=seed, stratify=y
    )
    classes, y_rest = np.unique(y_rest, return_inverse=True)
    y_test = np.searchsorted(classes, y_test)
    train, val, y_train, y_val = train_test_split(
        rest, y_rest, test_size=cfg["validation_split"], random_state=seed, stratify=y_rest
    )

    prep = fit_preprocessing(train, numeric, categorical)
    x_train, x_val, x_test = (transform(part, prep) for part in (train, val, test))

    model = keras.Sequential([keras.Input(shape=x_train.shape[1:])])
    for layer in cfg["layers"][:-1]:
        if layer["type"] == "Dense":
            model.add(keras.layers.Dense(layer["units"], activation=layer.get("activation")))
        else:
            model.add(keras.layers.Dropout(layer["rate"]))
    model.add(keras.layers.Dense(len(classes), activation="softmax"))

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=cfg["learning_rate"]),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=args.steps_per_execution,
    )
    history = model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        verbose=0,
    )
    test_loss, test_accuracy = model.evaluate(
        x_test, y_test, batch_size=cfg["batch_size"], verbose=0
    )

    with tempfile.TemporaryDirectory() as folder:
        model.save(os.path.join(folder, "model.keras"))

    print(
        json.dumps(
            {
                "test_loss": float(test_loss),
                "test_accuracy": float(test_accuracy),
                "epochs_run": len(history.history["loss"]),
                "samples": {"train": len(x_train), "val": len(x_val), "test": len(x_test)},
                "inputs": int(x_train.shape[1]),
            }
        )
    )


if __name__ == "__main__":
    main()
