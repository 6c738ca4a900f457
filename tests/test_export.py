"""`dlcli export`: each copy is written, loaded back in its own runtime, checked
against the model on the test split, and recorded in exports.json.

Exports run on TensorFlow, so they run in subprocesses (the in-process runs of this suite
share one Keras import on JAX). The copies are then read again here without dlcli: by
TensorFlow's SavedModel loader, onnxruntime, the LiteRT interpreter and Keras, fed raw
features, and compared with the run's own model.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import CENSUS, CENSUS_COLUMNS, CENSUS_DATA, TINY, deep_update, run_dlcli, run_python
from typer.testing import CliRunner

from dlcli.cli import app

FORMATS = ("saved_model", "onnx", "litert", "keras")
pytestmark = pytest.mark.slow


def train(config: dict, base: Path) -> Path:
    path = base / "cfg.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = CliRunner().invoke(
        app,
        ["train", str(path), "--runs-dir", str(base / "runs"), "--quiet"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])


def export(run: Path, *options) -> tuple[dict, object]:
    result = run_dlcli("export", run, "--json", *options, timeout=600)
    return (json.loads(result.stdout) if result.stdout.strip() else {}), result


@pytest.fixture(scope="module")
def digits_export(trained_run, tmp_path_factory):
    """The shared digits run (trained on JAX in this process), copied and exported to every
    format."""
    run = tmp_path_factory.mktemp("export-digits") / trained_run.name
    shutil.copytree(trained_run, run)
    report, result = export(run)
    assert result.returncode == 0, result.stderr
    return run, report, result


def test_every_format_is_written_and_matches_the_model(digits_export):
    run, report, result = digits_export
    assert report == json.loads((run / "exports.json").read_text())
    assert report["trained_on"] == "jax" and report["backend"] == "tensorflow"
    assert report["failed"] == [] and report["test_samples"] == 360
    assert set(report["formats"]) == set(FORMATS)
    for name, entry in report["formats"].items():
        path = run / entry["path"]
        assert entry["status"] == "ok" and path.exists(), (name, entry)
        on_disk = (
            path.stat().st_size
            if path.is_file()
            else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        )
        assert entry["bytes"] == on_disk > 0
        assert entry["max_abs_diff"] <= (1e-2 if name == "litert" else 1e-4), (name, entry)
        assert entry["agreement"] >= 0.999
        assert entry["takes"] == "raw features" and entry["precision"] == "float32"
        assert set(entry["latency_ms_per_sample"]) == {"1", "256"}
        assert all(v > 0 for v in entry["latency_ms_per_sample"].values())
        assert entry["inputs"] and entry["inputs"][0]["shape"][-1] == 64
    assert set(report["reference"]["latency_ms_per_sample"]) == {"1", "256"}
    assert not [
        p for p in (run / "export").iterdir() if p.name.startswith(".")
    ]  # no half-built copy left
    assert result.stderr.strip() == ""  # --json: nothing but the object


OWN_RUNTIMES = """
import json, os, sys
os.environ["KERAS_BACKEND"] = "tensorflow"
import numpy as np, keras, tensorflow as tf, onnxruntime
from ai_edge_litert.interpreter import Interpreter
folder, model, rows, feed = sys.argv[1:5]
x = np.load(rows)["x"]
if feed != "-":
    import dlcli.data.tables.encoder  # registers a table model's first layer (the README says so)
want = keras.saving.load_model(model).predict(x, verbose=0)
serve = tf.saved_model.load(folder + "/saved_model").signatures["serving_default"]
specs = serve.structured_input_signature[1]
if feed == "-":  # one input: the rows themselves
    saved = serve(**{next(iter(specs)): tf.constant(x)})
else:  # a table: one named input per column, category text as strings
    saved = serve(**{k: tf.constant(v, specs[k].dtype) for k, v in json.load(open(feed)).items()})
session = onnxruntime.InferenceSession(folder + "/onnx/model.onnx", providers=["CPUExecutionProvider"])
lite = Interpreter(model_path=folder + "/litert/model.tflite")
spec = lite.get_input_details()[0]
lite.resize_tensor_input(spec["index"], list(x.shape)); lite.allocate_tensors()
lite.set_tensor(spec["index"], x); lite.invoke()
outputs = {"model": want, "saved_model": list(saved.values())[0].numpy(),
           "onnx": session.run(None, {session.get_inputs()[0].name: x})[0],
           "litert": lite.get_tensor(lite.get_output_details()[0]["index"]),
           "keras": keras.saving.load_model(folder + "/keras/model.keras").predict(x, verbose=0)}
print(json.dumps({k: np.asarray(v, "float64").tolist() for k, v in outputs.items()}))
"""


def in_own_runtimes(
    folder: Path, model: Path, x: np.ndarray, tmp: Path, feed: dict | None = None
) -> dict:
    """Each copy in `folder` (the export layout) run on `x` by its own runtime, without
    dlcli: TensorFlow's SavedModel loader (`feed`, a table's raw columns, when given),
    onnxruntime, the LiteRT interpreter, Keras; and the run's model.keras in Keras on
    TensorFlow (`model`). Returns each one's outputs."""
    np.savez(tmp / "rows.npz", x=x.astype("float32"))
    if feed is not None:
        (tmp / "feed.json").write_text(json.dumps(feed))
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            OWN_RUNTIMES,
            str(folder),
            str(model),
            str(tmp / "rows.npz"),
            str(tmp / "feed.json") if feed is not None else "-",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {k: np.array(v) for k, v in json.loads(result.stdout.strip().splitlines()[-1]).items()}


def assert_close(outputs: dict, tolerance: float, litert: float = 1e-2) -> None:
    want = outputs["model"]
    for name in FORMATS:
        assert outputs[name].shape == want.shape, name
        assert np.abs(outputs[name] - want).max() <= (litert if name == "litert" else tolerance), (
            name
        )


def test_each_copy_runs_raw_features_in_its_own_runtime(digits_export, tmp_path):
    """Raw digit pixels (0..16; normalisation is inside every copy) give the model's
    outputs in every runtime, and those are a trained model's."""
    from sklearn.datasets import load_digits

    run, _, _ = digits_export
    digits = load_digits()
    outputs = in_own_runtimes(run / "export", run / "model.keras", digits.data[:40], tmp_path)
    assert_close(outputs, 1e-4)
    assert (
        outputs["onnx"].argmax(1) == digits.target[:40]
    ).mean() > 0.8  # a trained model, not a blank one


def test_show_lists_the_exports(digits_export, cli):
    run, _, _ = digits_export
    result = cli("show", run)
    assert result.exit_code == 0
    text = result.stdout
    assert "exports of" in text and "(the model)" in text
    for name in FORMATS:
        assert any(
            line.split("│")[1:2] and name in line and " ok " in line for line in text.splitlines()
        ), name
    details = json.loads(cli("show", run, "--json").stdout)
    assert details["exports"]["formats"]["onnx"]["status"] == "ok"


def test_a_mixed_table_in_bfloat16_exports_with_the_lookup_inside_the_saved_model(tmp_path):
    """The census table (text categories, '?' cells) trained in mixed_bfloat16: the
    SavedModel takes the raw columns (category text looked up inside it); ONNX and LiteRT
    take category indices and are made in float32. The SavedModel, fed rows of the raw CSV
    here, predicts what `dlcli predict` does on the same rows."""
    config = {
        "name": "census",
        "seed": 3,
        "data": CENSUS_DATA,
        "model": {
            "layers": [
                {"type": "Dense", "units": 32, "activation": "relu"},
                {"type": "Dense", "activation": "softmax"},
            ]
        },
        "compile": {
            "optimizer": "adam",
            "loss": "sparse_categorical_crossentropy",
            "metrics": ["accuracy"],
        },
        "training": {"epochs": 2, "batch_size": 64},
        "runtime": {"precision": "mixed_bfloat16"},
        "output": {"tensorboard": False, "plots": False},
    }
    run = train(config, tmp_path)
    report, result = export(run)
    assert result.returncode == 0, result.stderr
    assert report["precision"] == "mixed_bfloat16" and report["thresholds"]["max_abs_diff"] == 1e-2
    formats = report["formats"]
    assert all(
        entry["status"] == "ok" and entry["max_abs_diff"] <= 1e-2 and entry["agreement"] >= 0.999
        for entry in formats.values()
    ), formats
    saved = formats["saved_model"]
    assert saved["takes"] == "raw features"
    assert [(i["column"], i["dtype"]) for i in saved["inputs"]][:4] == [
        ("age", "float32"),
        ("workclass", "string"),
        ("fnlwgt", "float32"),
        ("education", "string"),
    ]
    for name in ("onnx", "litert", "keras"):
        assert formats[name]["takes"] == "category indices"
        assert formats[name]["inputs"][0]["shape"] == [None, 10]
    assert formats["onnx"]["precision"].startswith("float32 (the run trained in mixed_bfloat16")
    assert formats["keras"]["precision"] == "mixed_bfloat16"

    rows = [line.split(", ") for line in CENSUS.read_text().splitlines()[:60]]
    sample = tmp_path / "sample.csv"
    sample.write_text("\n".join(", ".join(row) for row in rows) + "\n")
    predicted = CliRunner().invoke(app, ["predict", str(run), str(sample), "--proba", "--json"])
    assert predicted.exit_code == 0, predicted.stderr
    labels = json.loads((run / "labels.json").read_text())
    want = [
        [p[f"proba_{label}"] for label in labels]
        for p in json.loads(predicted.stdout)["predictions"]
    ]
    assert any(
        row[i] == "?" for row in rows for i in (1, 6, 9)
    )  # missing categories are among them
    # Without dlcli: the SavedModel gets the raw columns; the others get category indices made
    # as the README says (1 + the category's place in preprocessing.json, 0 for missing).
    features = json.loads((run / "preprocessing.json").read_text())["features"]
    feed, x = {}, np.zeros((len(rows), len(features)), "float32")
    for j, feature in enumerate(features):
        values = [row[CENSUS_COLUMNS.index(feature["name"])] for row in rows]
        if feature["type"] == "numeric":
            x[:, j] = [float("nan") if v == "?" else float(v) for v in values]
            feed[feature["name"]] = x[:, j].tolist()
        else:
            place = {c: i + 1 for i, c in enumerate(feature["categories"])}
            x[:, j] = [place.get(v, 0) for v in values]
            feed[feature["name"]] = values
    outputs = in_own_runtimes(run / "export", run / "model.keras", x, tmp_path, feed)
    assert outputs["saved_model"].shape == (60, len(labels))
    assert (
        np.abs(outputs["saved_model"] - np.array(want)).max() <= 1e-2
    )  # what `dlcli predict` says
    assert (outputs["saved_model"].argmax(1) == np.array(want).argmax(1)).all()
    assert_close(outputs, 1e-2)  # bfloat16 model vs its float32 copies


def test_a_regression_exports_to_another_folder_and_writes_nothing_in_the_run(tmp_path):
    config = deep_update(
        TINY,
        {
            "name": "diabetes",
            "data": {"source": "diabetes"},
            "model": {
                "layers": [{"type": "Dense", "units": 16, "activation": "relu"}, {"type": "Dense"}]
            },
            "compile": {"loss": "mean_squared_error", "metrics": ["mean_absolute_error"]},
            "training": {"epochs": 5, "batch_size": 32},
        },
    )
    run = train(config, tmp_path)
    before = sorted(p.name for p in run.iterdir())
    out = tmp_path / "shipped"
    report, result = export(run, "--output", out)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in run.iterdir()) == before  # nothing written into the run folder
    assert json.loads((out / "exports.json").read_text()) == report
    assert set(report["formats"]) == set(FORMATS) and "skipped" not in report
    assert all(entry["status"] == "ok" for entry in report["formats"].values())
    onnx = report["formats"]["onnx"]
    assert onnx["path"] == "onnx/model.onnx" and (out / "onnx" / "model.onnx").is_file()
    assert onnx["agreement"] is None  # a regression has no classes to agree on
    scale = report["thresholds"]["times"]
    assert (
        scale >= 1
        and onnx["max_abs_diff"] <= 1e-4 * scale
        and onnx["tolerance"] == pytest.approx(1e-4 * scale)
    )
    from sklearn.datasets import load_diabetes

    outputs = in_own_runtimes(out, run / "model.keras", load_diabetes().data[:50], tmp_path)
    assert_close(outputs, 1e-4 * scale, litert=1e-2 * scale)


def test_a_copy_that_differs_from_the_model_fails_with_exit_1_and_the_other_records_stay(
    digits_export, tmp_path
):
    exported = tmp_path / digits_export[0].name
    shutil.copytree(digits_export[0], exported)
    code = f"""
import importlib, sys
export = importlib.import_module("dlcli.use.export")  # the module (dlcli.use.export is the API function)
export.TOLERANCE = export.LOOSE_TOLERANCE = -1.0  # no copy can be this close
sys.argv = ["dlcli", "export", {str(exported)!r}, "--format", "keras"]
from dlcli.cli import main
main()
"""
    result = run_python(code, env={"NO_COLOR": "1"}, timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("error: export failed for keras: max_abs_diff")
    )
    assert "Traceback" not in result.stderr
    formats = json.loads((exported / "exports.json").read_text())["formats"]
    assert formats["keras"]["status"] == "failed" and "exceeds" in formats["keras"]["error"]
    # the formats this export did not redo keep their records
    assert (
        formats["onnx"] == digits_export[1]["formats"]["onnx"] and formats["onnx"]["status"] == "ok"
    )


@pytest.mark.parametrize(
    "option, needle",
    [
        ("onxx", "no export format 'onxx' (did you mean 'onnx'?)"),
    ],
)
def test_an_unknown_format_is_a_usage_error(cli, run_copy, option, needle):
    result = cli("export", run_copy, "--format", option)
    assert result.exit_code == 2
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (run_copy / "export").exists() and not (run_copy / "exports.json").exists()


def test_a_missing_export_library_names_the_install(cli, run_copy, monkeypatch):
    import importlib
    import importlib.util

    exports = importlib.import_module("dlcli.use.export")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnxruntime" else real(name, *a),
    )
    result = cli("export", run_copy, "--format", "onnx")
    assert result.exit_code == 2
    assert (
        "onnx needs onnxruntime, which is not installed: pip install 'dlcli[export]'"
        in result.stderr
    )
    assert not (run_copy / "export").exists()
    chosen, skipped = exports.chosen_formats([])  # by default the others are made, onnx skipped
    assert [f.name for f in chosen] == ["saved_model", "litert", "keras"]
    assert skipped == {"onnx": "needs onnxruntime: pip install 'dlcli[export]'"}


def test_a_model_saved_on_torch_exports_on_tensorflow(run_copy):
    """Keras saves a torch run's optimizer under the torch backend's module; loading it on
    TensorFlow must not import torch (absent in CI; where installed, torch beside TensorFlow
    aborts the process). The digits run's model.keras is rewritten to say what torch's says."""
    import zipfile

    path = run_copy / "model.keras"
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    config["compile_config"]["optimizer"].update(
        module="keras.src.backend.torch.optimizers.torch_adam", registered_name="Adam"
    )  # as torch writes it
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    report, result = export(run_copy, "--format", "onnx")
    assert result.returncode == 0, result.stderr[-2000:]
    assert report["formats"]["onnx"]["status"] == "ok"


def test_raw_columns_carry_any_text_and_names_a_signature_accepts():
    from types import SimpleNamespace

    from dlcli.data.tables.preprocessing import Feature
    from dlcli.use.export_formats import RawTable

    table = RawTable(
        SimpleNamespace(
            features=[
                Feature("city name", "categorical", categories=["São Paulo", "Zürich"]),
                Feature("2nd", "numeric", mean=0.0, std=1.0),
                Feature("city_name", "categorical", categories=["x"]),
            ]
        )
    )
    assert [c.key for c in table.columns] == ["city_name", "2nd", "city_name_2"]
    raw = table.raw(np.array([[1, 0.5, 1], [2, np.nan, 0], [0, 3.0, 1]], "float32"))
    assert raw["city_name"].tolist() == ["São Paulo".encode(), "Zürich".encode(), b""]
    assert np.isnan(raw["2nd"][1]) and raw["city_name_2"].tolist() == [b"x", b"", b"x"]
