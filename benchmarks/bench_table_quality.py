"""Test quality of dlcli's unedited `init --from-data` config on public tables, against baselines.

Does the network earn its keep? It is set against gradient boosting, a hand-written Keras MLP
and the majority (or mean) guess. The tables ship inside installable packages (statsmodels'
datasets, scikit-learn's bundled CSVs) and are written to CSV in a temporary folder at run
time. For each table:

  1. `dlcli init --from-data TABLE.csv --target COL CFG.yaml`, then `dlcli train CFG.yaml
     --json` with no edit: the test accuracy (classification) or MAE (regression, the metric
     the generated config compiles).
  2. The majority class (classification) or the training mean (regression), and scikit-learn's
     HistGradientBoosting with its defaults (categorical columns native), both fitted on the
     run's training split (not the validation rows) and scored on its test split: the run's
     own `baselines` of metrics.json where it has them, computed here the same way where not.
  3. A hand-written Keras MLP on the same split: the arrays `dlcli.data.dataset.load_data`
     gives for the run's config.yaml (its fingerprint is checked against the run's), numbers
     filled with the training mean and standardised, categories one-hot; Dense 64 relu,
     Dropout 0.2, Dense 32 relu, softmax or one linear unit; adam 1e-3, batch 32; a
     regression target standardised by hand; up to 300 epochs with EarlyStopping(val_loss,
     patience=30, restore_best_weights=True) on the validation split. The run's seed
     everywhere. It runs in a fresh process of its own (a Keras process that has fitted a
     model before trains another model from the same seed), on the dlcli run's backend.

It prints one row per table and flags where dlcli's test metric is worse than the majority
guess (exit status 1, as when dlcli fails on a table: this must never happen) or more than
0.02 accuracy / 15 % MAE behind the hand MLP. A table whose package is not installed is
skipped with a note. dlcli compiles into a fresh JAX cache in the work folder (times as of a
first run; `--shared-cache` for the usual one).

    python benchmarks/bench_table_quality.py                        # every table (~10 min on 2 cores)
    python benchmarks/bench_table_quality.py --tables iris,engel,grunfeld
    python benchmarks/bench_table_quality.py --keep tq-work --json results.json
"""

from __future__ import annotations

import argparse
import csv
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ACCURACY_GAP = 0.02  # dlcli's accuracy more than this below the hand MLP's is flagged
MAE_RATIO = 1.15  # dlcli's MAE more than this times the hand MLP's is flagged
TOLERANCE = 1e-6  # float32 metrics against float64 ones: a tie is not "worse"
HAND_EPOCHS, HAND_PATIENCE, HAND_BATCH = 300, 30, 32


# ---------------------------------------------------------------- the tables


def statsmodels_table(dataset: str, make=None):
    """A writer of statsmodels' `dataset` (its DataFrame, changed by `make`) as a CSV."""

    def write(folder: Path, name: str) -> Path:
        frame = importlib.import_module(f"statsmodels.datasets.{dataset}").load_pandas().data
        frame = make(frame) if make else frame
        path = folder / f"{name}.csv"
        frame.to_csv(path, index=False)
        return path

    return write


def sklearn_table(dataset: str, file: str | None = None):
    """A writer of scikit-learn's bundled CSV (`file`.csv, default `dataset`.csv) as it ships:
    a count line, then rows without a header, the class last. With `plain`, the arrays of
    its loader (`load_<dataset>`) as a plain CSV with a header instead."""

    def write(folder: Path, name: str, plain: bool = False) -> Path:
        path = folder / f"{name}.csv"
        if not plain:
            import sklearn

            bundled = Path(sklearn.__file__).parent / "datasets" / "data" / f"{file or dataset}.csv"
            shutil.copyfile(bundled, path)
            return path
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, f"load_{dataset}")()
        with open(path, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow([f"x{j}" for j in range(bunch.data.shape[1])] + ["target"])
            out.writerows(
                [*row, int(label)] for row, label in zip(bunch.data.tolist(), bunch.target)
            )
        return path

    return write


def _star98(frame):
    frame = frame.copy()
    frame.insert(0, "PCTABOVE", frame.NABOVE / (frame.NABOVE + frame.NBELOW))
    return frame.drop(columns=["NABOVE", "NBELOW"])


def _modechoice(frame):
    frame = frame.drop(columns=["individual"]).copy()
    frame["mode"] = frame["mode"].map({1: "air", 2: "train", 3: "bus", 4: "car"})
    frame["choice"] = frame["choice"].astype(int)
    return frame


def _fair(frame):
    frame = frame.copy()
    frame["affair"] = np.where(frame.pop("affairs") > 0, "yes", "no")
    return frame


def _ints(*columns):
    def make(frame):
        frame = frame.copy()
        for column in columns:
            frame[column] = frame[column].astype(int)
        return frame

    return make


@dataclass
class Table:
    name: str
    package: str
    target: str  # as `--target` takes it: a name, or a position (-1)
    task: str
    write: object  # (folder, name) -> the CSV's path
    about: str


TABLES = [
    Table("engel", "statsmodels", "foodexp", "regression", statsmodels_table("engel"),
          "food spending from income, 235 Belgian households"),
    Table("statecrime", "statsmodels", "murder", "regression", statsmodels_table("statecrime"),
          "murder rate of the 50 US states and DC from 6 rates"),
    Table("star98", "statsmodels", "PCTABOVE", "regression", statsmodels_table("star98", _star98),
          "share of pupils above the national median per California school district"),
    Table("grunfeld", "statsmodels", "invest", "regression", statsmodels_table("grunfeld"),
          "investment of 11 US firms, 1935-54; `firm` a text category"),
    Table("randhie", "statsmodels", "mdvis", "regression", statsmodels_table("randhie"),
          "doctor visits (a count) in the RAND health insurance experiment"),
    Table("ccard", "statsmodels", "AVGEXP", "regression", statsmodels_table("ccard"),
          "monthly credit card spending, 72 card holders"),
    Table("stackloss", "statsmodels", "STACKLOSS", "regression", statsmodels_table("stackloss"),
          "Brownlee's stack loss, 21 rows (a 5-row test split)"),
    Table("spector", "statsmodels", "GRADE", "classification",
          statsmodels_table("spector", _ints("GRADE", "PSI")),
          "grade improved after a teaching method, 32 students (a 7-row test split)"),
    Table("modechoice", "statsmodels", "choice", "classification",
          statsmodels_table("modechoice", _modechoice),
          "was this travel mode chosen (one row per person and mode); `mode` a text category"),
    Table("fair", "statsmodels", "affair", "classification", statsmodels_table("fair", _fair),
          "any extramarital affair (yes/no), 6,366 women"),
    Table("anes96", "statsmodels", "vote", "classification",
          statsmodels_table("anes96", _ints("vote")),
          "1996 US presidential vote (Clinton 0 / Dole 1) from the election survey"),
    Table("iris", "scikit-learn", "-1", "classification", sklearn_table("iris"),
          "scikit-learn's iris.csv as shipped (a count line first)"),
    Table("wine", "scikit-learn", "-1", "classification", sklearn_table("wine", "wine_data"),
          "scikit-learn's wine_data.csv as shipped"),
    Table("breast_cancer", "scikit-learn", "-1", "classification", sklearn_table("breast_cancer"),
          "scikit-learn's breast_cancer.csv as shipped"),
]  # fmt: skip


# ---------------------------------------------------------------- dlcli


def dlcli(*args: str, timeout: float | None = None, cache: Path | None = None) -> tuple[str, float]:
    """Run `python -m dlcli ARGS` (with `cache` as its JAX compilation cache): (stdout, wall
    seconds); a failure raises RuntimeError."""
    env = {**os.environ, "NO_COLOR": "1", **({"DLCLI_COMPILE_CACHE": str(cache)} if cache else {})}
    started = time.perf_counter()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "dlcli", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"dlcli {args[0]} ran past {timeout:.0f} s") from None
    if result.returncode != 0:
        tail = result.stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"dlcli {args[0]} failed ({result.returncode}): {' | '.join(tail)}")
    return result.stdout, time.perf_counter() - started


def history(run: Path) -> list[dict]:
    with open(run / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------- the comparisons


def majority(data, metric: str) -> float:
    y, test = np.asarray(data.train.y).reshape(-1), np.asarray(data.test.y).reshape(-1)
    if metric == "accuracy":
        return float(np.mean(test == np.bincount(y.astype("int64")).argmax()))
    return float(np.mean(np.abs(test - y.astype("float64").mean())))


def gradient_boosting(data, metric: str, seed: int) -> tuple[float, float]:
    """(test metric, fit seconds) of HistGradientBoosting fitted on the training split, as
    dlcli's own baseline does it: categorical columns as codes, missing ones as NaN."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    categorical = [j for j, f in enumerate(data.preprocessing.features) if f.type == "categorical"]

    def features(x):
        x = np.array(x, dtype="float64")
        for j in categorical:  # vocabulary index i (0: missing or unseen) -> code i - 1
            x[:, j] = np.where(x[:, j] < 1, np.nan, np.minimum(x[:, j], 255) - 1)
        return x

    classify = metric == "accuracy"
    model = (HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor)(
        categorical_features=categorical or None, random_state=seed
    )
    started = time.perf_counter()
    model.fit(features(data.train.x), np.asarray(data.train.y).reshape(-1))
    fit_s = time.perf_counter() - started
    predicted, y = model.predict(features(data.test.x)), np.asarray(data.test.y).reshape(-1)
    return float(np.mean(predicted == y) if classify else np.mean(np.abs(predicted - y))), fit_s


def model_input(data, x: np.ndarray) -> np.ndarray:
    """A split's features as the hand MLP takes them: numbers filled with the training mean
    and standardised with the training mean and standard deviation, categories one-hot (the
    vocabulary index 0, missing or unseen, is a category of its own)."""
    spec = data.preprocessing.layer_kwargs()
    numbers = x[:, spec["numeric"]].astype("float64")
    numbers = np.where(np.isnan(numbers), np.asarray(spec["fill"]), numbers)
    parts = [(numbers - np.asarray(spec["offset"])) / np.asarray(spec["scale"])]
    for column in spec["categorical"]:
        index = np.nan_to_num(x[:, column["index"]], nan=0.0).astype("int64")
        parts.append(np.eye(column["size"])[index])
    return np.concatenate(parts, axis=1).astype("float32")


def hand_mlp(data, metric: str, seed: int) -> dict:
    """The hand-written Keras MLP: its test metric, fit seconds, epochs run and best epoch.
    Run it first thing in a fresh process (`hand_mlp_process`): in a process that has already
    fitted a model, the same seed trains a different model (Keras 3.15 on JAX)."""
    import keras

    keras.utils.set_random_seed(seed)  # the first call imports TensorFlow (its seed): not timed
    x_train, x_val, x_test = (model_input(data, s.x) for s in (data.train, data.val, data.test))
    y_train, y_val, y_test = (
        np.asarray(s.y).reshape(-1) for s in (data.train, data.val, data.test)
    )
    classify = metric == "accuracy"
    if classify:
        output, loss = (
            keras.layers.Dense(data.n_classes, activation="softmax"),
            "sparse_categorical_crossentropy",
        )
    else:
        output, loss = keras.layers.Dense(1), "mean_squared_error"
        mean, std = y_train.mean(), y_train.std() or 1.0
        y_train, y_val = (y_train - mean) / std, (y_val - mean) / std
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input(shape=(x_train.shape[1],)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(32, activation="relu"),
            output,
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3), loss=loss)
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=HAND_PATIENCE, restore_best_weights=True
    )
    started = time.perf_counter()
    fitted = model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=HAND_EPOCHS,
        batch_size=HAND_BATCH,
        callbacks=[stop],
        verbose=0,
    )
    fit_s = time.perf_counter() - started
    predicted = model.predict(x_test, batch_size=1024, verbose=0)
    if classify:
        score = float(np.mean(predicted.argmax(axis=1) == y_test))
    else:
        score = float(np.mean(np.abs(predicted.reshape(-1) * std + mean - y_test)))
    losses = fitted.history["val_loss"]
    return {
        "score": score,
        "fit_s": fit_s,
        "epochs": len(losses),
        "best_epoch": int(np.argmin(losses)) + 1,
    }


def hand_mlp_process(run: Path, backend: str, timeout: float) -> dict:
    """`hand_mlp` on the splits of `run`, in a fresh process on the run's Keras backend."""
    result = subprocess.run(
        [sys.executable, __file__, "--hand-mlp", str(run)],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": backend},
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        tail = result.stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"the hand MLP failed ({result.returncode}): {' | '.join(tail)}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def splits_of(run: Path):
    """(the run's splits as `load_data` gives them for its config.yaml, its metric, its seed);
    the split is checked against the run's own by fingerprint."""
    from dlcli.config.load import load_config
    from dlcli.data.dataset import load_data

    config = load_config(run / "config.yaml")
    data = load_data(config)
    recorded = json.loads((run / "run.json").read_text())["data"].get("fingerprint")
    if data.fingerprint != recorded:
        raise RuntimeError("load_data's split differs from the run's (fingerprints differ)")
    return data, ("accuracy" if data.task == "classification" else "mae"), config


# ---------------------------------------------------------------- one table


def train_unedited(table: Table, folder: Path, options, plain: bool):
    """init --from-data + train with no edit (but `--dlcli-set`): (run folder, train's JSON,
    wall seconds)."""
    path = table.write(folder, table.name, plain=True) if plain else table.write(folder, table.name)
    config = folder / f"{table.name}.yaml"
    target = "target" if plain else table.target
    dlcli("init", "--from-data", str(path), "--target", target, str(config), "--force")
    extra = [arg for setting in options.dlcli_set for arg in ("--set", setting)]
    out, wall = dlcli(
        "train",
        str(config),
        "--json",
        "--runs-dir",
        str(folder / "runs"),
        *extra,
        timeout=options.timeout,
        cache=options.cache,
    )
    result = json.loads(out)
    return Path(result["run"]), result, wall


def run_table(table: Table, folder: Path, options) -> dict:
    row = {"table": table.name, "task": table.task, "notes": []}
    try:
        run, result, wall = train_unedited(table, folder, options, plain=False)
    except RuntimeError as exc:
        if table.package != "scikit-learn":
            raise
        row["notes"].append(f"the CSV as shipped failed ({exc}); a plain CSV from load_*() instead")
        run, result, wall = train_unedited(table, folder, options, plain=True)
    info = json.loads((run / "run.json").read_text())
    data, metric, config = splits_of(run)
    if metric not in result["test"]:
        raise RuntimeError(f"the generated config does not compile {metric}: {result['test']}")
    steps = history(run)
    row.update(
        task=data.task,
        metric=metric,
        rows=sum(info["data"]["samples"].values()),
        samples=info["data"]["samples"],
        config={
            "epochs": config.training.epochs,
            "batch_size": config.training.batch_size,
            "patience": getattr(config.training.early_stopping, "patience", None),
        },
        run=str(run),
        dlcli=result["test"][metric],
        dlcli_wall_s=wall,
        dlcli_fit_s=sum(float(h["epoch_time_s"]) for h in steps),
        dlcli_epochs=len(steps),
        dlcli_best_epoch=result.get("best_epoch"),
    )
    baselines = result.get("baselines") or {}
    if metric in baselines.get("majority", {}):
        row["majority"] = baselines["majority"][metric]
    else:
        row["majority"] = majority(data, metric)
        row["notes"].append("majority computed here (no baseline in metrics.json)")
    if metric in baselines.get("gradient_boosting", {}):
        row["gb"], row["gb_fit_s"] = (
            baselines["gradient_boosting"][metric],
            baselines["gradient_boosting"]["fit_s"],
        )
    else:
        row["gb"], row["gb_fit_s"] = gradient_boosting(data, metric, config.seed)
        row["notes"].append("gradient boosting computed here (no baseline in metrics.json)")
    hand = hand_mlp_process(run, info["versions"]["backend"], options.timeout)
    row.update(
        hand=hand["score"],
        hand_fit_s=hand["fit_s"],
        hand_epochs=hand["epochs"],
        hand_best_epoch=hand["best_epoch"],
    )
    row["flags"] = flags(row, table.task)
    return row


def guessed_task(folder: Path, table: Table) -> str:
    """The task the generated config says (`table.task` if there is none)."""
    import yaml

    try:
        text = (folder / f"{table.name}.yaml").read_text()
        return yaml.safe_load(text)["data"]["task"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return table.task


def flags(row: dict, expected: str) -> list[str]:
    accuracy = row["metric"] == "accuracy"
    found = [] if row["task"] == expected else [f"init guessed {row['task']}"]
    if (
        row["dlcli"] < row["majority"] - TOLERANCE
        if accuracy
        else row["dlcli"] > row["majority"] * (1 + TOLERANCE)
    ):
        found.append("WORSE THAN MAJORITY")
    if accuracy and row["dlcli"] < row["hand"] - ACCURACY_GAP:
        test = row["samples"]["test"]
        found.append(
            f"behind hand MLP ({round((row['hand'] - row['dlcli']) * test)} of {test} test rows)"
        )
    if not accuracy and row["dlcli"] > row["hand"] * MAE_RATIO:
        found.append(f"behind hand MLP (MAE +{row['dlcli'] / row['hand'] - 1:.0%})")
    return found


# ---------------------------------------------------------------- report


def number(value: float) -> str:
    return (
        f"{value:.4f}"
        if abs(value) < 10
        else f"{value:.2f}"
        if abs(value) < 1000
        else f"{value:,.0f}"
    )


TASKS = {"classification": "class", "regression": "regr"}


def print_table(rows: list[dict]) -> None:
    head = (
        f"{'table':<14}{'task':<6}{'rows':>6} {'metric':<7}{'dlcli':>10}{'hand MLP':>10}"
        f"{'grad.boost':>11}{'majority':>10} {'dlcli s':>8}{'fit s':>7}{'ep/best':>9}{'batch':>6}"
        f"{'hand s':>8}{'ep/best':>9}{'gb s':>6}  flags"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        if "error" in r:
            print(f"{r['table']:<14}{TASKS.get(r['task'], r['task']):<6} ERROR: {r['error'][:400]}")
            continue
        print(
            f"{r['table']:<14}{TASKS.get(r['task'], r['task']):<6}{r['rows']:>6} {'acc' if r['metric'] == 'accuracy' else 'mae':<7}"
            f"{number(r['dlcli']):>10}{number(r['hand']):>10}{number(r['gb']):>11}{number(r['majority']):>10}"
            f" {r['dlcli_wall_s']:>8.1f}{r['dlcli_fit_s']:>7.1f}"
            f"{r['dlcli_epochs']:>5}/{r['dlcli_best_epoch'] or 0:<3}{r['config']['batch_size']:>6}"
            f"{r['hand_fit_s']:>8.1f}{r['hand_epochs']:>5}/{r['hand_best_epoch']:<3}{r['gb_fit_s']:>6.2f}"
            f"  {', '.join(r['flags'])}"
        )
    print(
        "\nacc: test accuracy (higher is better); mae: test mean absolute error in the target's units"
        " (lower is better). dlcli s: the whole `dlcli train` process; fit s: its epochs (history.csv; the first's compiling included);"
        " ep/best: epochs run / best epoch; batch: the generated config's batch size (the hand MLP's"
        f" is {HAND_BATCH}); hand s and gb s: fitting alone. Gradient boosting and majority: fitted"
        " on the training split only."
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--tables", help=f"comma-separated subset of: {','.join(t.name for t in TABLES)}"
    )
    p.add_argument("--timeout", type=float, default=1800, help="seconds one `dlcli train` may take")
    p.add_argument(
        "--keep", type=Path, help="work in this folder (tables, configs, runs) and keep it"
    )
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument(
        "--dlcli-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra `--set` for dlcli train (a diagnosis: the gate is the unedited config)",
    )
    p.add_argument(
        "--shared-cache",
        action="store_true",
        help="let dlcli use its usual JAX compilation cache (default: a fresh one in the work folder)",
    )
    p.add_argument("--hand-mlp", type=Path, help=argparse.SUPPRESS)  # the worker: RUN folder
    args = p.parse_args()
    if args.hand_mlp:
        data, metric, config = splits_of(args.hand_mlp)
        print(json.dumps(hand_mlp(data, metric, config.seed)))
        return 0
    chosen = TABLES
    if args.tables:
        names = [n.strip() for n in args.tables.split(",") if n.strip()]
        unknown = sorted(set(names) - {t.name for t in TABLES})
        if unknown:
            p.error(
                f"unknown tables: {', '.join(unknown)}; known: {', '.join(t.name for t in TABLES)}"
            )
        chosen = [t for t in TABLES if t.name in names]
    rows, notes = [], []
    with tempfile.TemporaryDirectory(prefix="dlcli-bench-quality-") as tmp:
        work = args.keep or Path(tmp)
        args.cache = None if args.shared_cache else work / f"jax-cache-{os.getpid()}"
        for table in chosen:
            module = "sklearn" if table.package == "scikit-learn" else table.package
            if importlib.util.find_spec(module) is None:
                notes.append(f"{table.name}: skipped, {table.package} is not installed")
                continue
            folder = work / table.name
            folder.mkdir(parents=True, exist_ok=True)
            print(f"... {table.name}: {table.about}", file=sys.stderr, flush=True)
            try:
                row = run_table(table, folder, args)
            except Exception as exc:  # noqa: BLE001 - one table's failure is reported, not fatal
                row = {"table": table.name, "task": guessed_task(folder, table), "notes": []}
                wrong = row["task"] != table.task
                message = str(exc).replace(f"{folder}{os.sep}", "")  # file names, not paths
                row["error"] = (f"init guessed {row['task']}; " if wrong else "") + message
            rows.append(row)
            notes += [f"{table.name}: {note}" for note in row["notes"]]
    print()
    print_table(rows)
    for note in notes:
        print(f"note: {note}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    failed = [r["table"] for r in rows if "error" in r or "WORSE THAN MAJORITY" in r["flags"]]
    behind = [r["table"] for r in rows if any(f.startswith("behind") for f in r.get("flags", []))]
    print(
        f"\ndlcli worse than majority (or failed): {', '.join(failed) or 'none'}"
        f"\ndlcli behind the hand MLP (> {ACCURACY_GAP} accuracy or > {MAE_RATIO - 1:.0%} MAE):"
        f" {', '.join(behind) or 'none'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
