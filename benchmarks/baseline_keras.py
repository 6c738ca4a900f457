"""The hand-written Keras script that dlcli is measured against.

It is what a practitioner would write for the same work as a benchmark config
(benchmarks/configs/*.yaml): load the data, split off a stratified test set and then a
stratified validation set, standardise with training-split statistics (a Normalization
layer in the model), build a keras.Sequential MLP, compile, fit, evaluate, save.
Nothing is tuned beyond what the config says.

    python benchmarks/baseline_keras.py                       # digits, 20 epochs
    python benchmarks/baseline_keras.py --npz data.npz --epochs 10 --hidden 256,128
    python benchmarks/baseline_keras.py --csv table.csv --target label   # numpy.loadtxt, header row

The backend is Keras's default (TensorFlow) unless KERAS_BACKEND says otherwise.

It prints one JSON line on stdout: the test metrics and what was trained.
"""

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as dlcli does
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import numpy as np
from sklearn.model_selection import train_test_split


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--npz", help="an NPZ with x_train / y_train (default: sklearn digits)")
    p.add_argument("--csv", help="a CSV with a header row, all numbers (read with numpy.loadtxt)")
    p.add_argument("--target", default="label", help="the CSV's target column")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--hidden", default="128,64", help="units of the hidden Dense layers")
    p.add_argument(
        "--dropout", type=float, default=0.2, help="Dropout after the first hidden layer"
    )
    p.add_argument("--seed", type=int, default=42)
    # Diagnostic only (bench_train.py --match-runtime): Keras's default is 1, and that is
    # what the plain script uses.
    p.add_argument("--steps-per-execution", type=int, default=1)
    return p.parse_args()


def main():
    args = parse_args()
    keras.utils.set_random_seed(args.seed)

    if args.npz:
        with np.load(args.npz) as data:
            x, y = data["x_train"].astype("float32"), data["y_train"]
    elif args.csv:
        with open(args.csv) as handle:
            names = handle.readline().strip().split(",")
        table = np.loadtxt(args.csv, delimiter=",", skiprows=1, dtype="float32")
        target = names.index(args.target)
        y = table[:, target].astype("int64")
        x = np.ascontiguousarray(np.delete(table, target, axis=1))
    else:
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        x = x.astype("float32")

    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=0.2, random_state=args.seed, stratify=y
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=0.2, random_state=args.seed, stratify=y_rest
    )
    n_classes = len(np.unique(y_train))

    # Standardise with the training split's statistics (constant columns left unscaled);
    # accumulated in float64, as dlcli does, so both runs see bit-identical inputs.
    mean = x_train.mean(axis=0, dtype="float64")
    variance = x_train.var(axis=0, dtype="float64")
    variance[variance == 0] = 1.0

    hidden = [int(u) for u in args.hidden.split(",")]
    model = keras.Sequential(
        [
            keras.Input(shape=x_train.shape[1:]),
            keras.layers.Normalization(mean=mean, variance=variance),
        ]
    )
    for i, units in enumerate(hidden):
        model.add(keras.layers.Dense(units, activation="relu"))
        if i == 0 and args.dropout:
            model.add(keras.layers.Dropout(args.dropout))
    model.add(keras.layers.Dense(n_classes, activation="softmax"))

    model.compile(
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=args.steps_per_execution,
    )
    epoch_times = []

    class EpochTimes(keras.callbacks.Callback):  # for the per-epoch comparison; costs nothing
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_times.append(time.perf_counter() - self.started)

    history = model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=args.epochs,
        batch_size=args.batch_size,
        verbose=0,
        callbacks=[EpochTimes()],
    )
    test_loss, test_accuracy = model.evaluate(x_test, y_test, batch_size=args.batch_size, verbose=0)

    with tempfile.TemporaryDirectory() as folder:
        model.save(os.path.join(folder, "model.keras"))

    print(
        json.dumps(
            {
                "test_loss": float(test_loss),
                "test_accuracy": float(test_accuracy),
                "epochs_run": len(history.history["loss"]),
                "epoch_times": epoch_times,
                "backend": keras.backend.backend(),
                "samples": {"train": len(x_train), "val": len(x_val), "test": len(x_test)},
            }
        )
    )


if __name__ == "__main__":
    main()
