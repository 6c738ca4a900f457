"""`dlcli export` (SPEC 8): each copy is written, loaded back in its own runtime, checked
against the model on the test split, and recorded in exports.json.

Exports run on TensorFlow, so they run in subprocesses (the in-process runs of this suite
share one Keras import on JAX). The copies are then read again here without dlcli: by
TensorFlow's SavedModel loader, onnxruntime, the LiteRT interpreter and Keras, fed raw
features, and compared with the run's own model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import CONFIGS, TINY, deep_update, run_dlcli, run_python
from typer.testing import CliRunner

from dlcli.cli import app

FORMATS = ("saved_model", "onnx", "litert", "keras")
CENSUS = CONFIGS / "data" / "census.csv"
CENSUS_COLUMNS = ["age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
                  "sex", "hours_per_week", "native_country", "income"]
pytestmark = pytest.mark.slow


def train(config: dict, base: Path) -> Path:
    path = base / "cfg.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = CliRunner().invoke(app, ["train", str(path), "--runs-dir", str(base / "runs"), "--quiet"],
                                catch_exceptions=False)
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
        on_disk = path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        assert entry["bytes"] == on_disk > 0
        assert entry["max_abs_diff"] <= (1e-2 if name == "litert" else 1e-4), (name, entry)
        assert entry["agreement"] >= 0.999
        assert entry["takes"] == "raw features" and entry["precision"] == "float32"
        assert set(entry["latency_ms_per_sample"]) == {"1", "256"}
        assert all(v > 0 for v in entry["latency_ms_per_sample"].values())
        assert entry["inputs"] and entry["inputs"][0]["shape"][-1] == 64
    assert set(report["reference"]["latency_ms_per_sample"]) == {"1", "256"}
    assert not [p for p in (run / "export").iterdir() if p.name.startswith(".")]  # no half-built copy left
    assert result.stderr.strip() == ""  # --json: nothing but the object


def test_each_copy_runs_raw_features_in_its_own_runtime(digits_export):
    """Without dlcli: raw digit pixels (0..16, normalisation is inside every copy) through
    TensorFlow's SavedModel loader, onnxruntime, the LiteRT interpreter and Keras agree
    with the run's model.keras loaded by Keras."""
    run, _, _ = digits_export
    code = f"""
import json, os
os.environ["KERAS_BACKEND"] = "tensorflow"
import numpy as np, keras, tensorflow as tf, onnxruntime
from ai_edge_litert.interpreter import Interpreter
from sklearn.datasets import load_digits
run = {str(run)!r}
x = load_digits().data[:40].astype("float32")
want = np.asarray(keras.saving.load_model(run + "/model.keras").predict(x, verbose=0))
serve = tf.saved_model.load(run + "/export/saved_model").signatures["serving_default"]
name = list(serve.structured_input_signature[1])[0]
saved = list(serve(**{{name: tf.constant(x)}}).values())[0].numpy()
session = onnxruntime.InferenceSession(run + "/export/onnx/model.onnx", providers=["CPUExecutionProvider"])
onnx = session.run(None, {{session.get_inputs()[0].name: x}})[0]
lite = Interpreter(model_path=run + "/export/litert/model.tflite")
spec = lite.get_input_details()[0]
lite.resize_tensor_input(spec["index"], list(x.shape)); lite.allocate_tensors()
lite.set_tensor(spec["index"], x); lite.invoke()
litert = lite.get_tensor(lite.get_output_details()[0]["index"])
copy = np.asarray(keras.saving.load_model(run + "/export/keras/model.keras").predict(x, verbose=0))
print(json.dumps({{k: float(np.abs(v - want).max()) for k, v in
                  dict(saved_model=saved, onnx=onnx, litert=litert, keras=copy).items()}}))
print(json.dumps(float((want.argmax(1) == load_digits().target[:40]).mean())))
"""
    result = run_python(code, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    diffs, accuracy = json.loads(lines[-2]), json.loads(lines[-1])
    assert diffs["saved_model"] <= 1e-4 and diffs["onnx"] <= 1e-4 and diffs["keras"] <= 1e-4, diffs
    assert diffs["litert"] <= 1e-2, diffs
    assert accuracy > 0.8  # the copies compute a trained model, not a blank one


def test_show_lists_the_exports(digits_export, cli):
    run, _, _ = digits_export
    result = cli("show", run)
    assert result.exit_code == 0
    text = result.stdout
    assert "exports of" in text and "(the model)" in text
    for name in FORMATS:
        assert any(line.split("│")[1:2] and name in line and " ok " in line for line in text.splitlines()), name
    details = json.loads(cli("show", run, "--json").stdout)
    assert details["exports"]["formats"]["onnx"]["status"] == "ok"


def test_a_mixed_table_in_bfloat16_exports_with_the_lookup_inside_the_saved_model(tmp_path):
    """The census table (text categories, '?' cells) trained in mixed_bfloat16: the
    SavedModel takes the raw columns (category text looked up inside it); ONNX and LiteRT
    take category indices and are made in float32. The SavedModel, fed rows of the raw CSV
    here, predicts what `dlcli predict` does on the same rows."""
    config = {
        "name": "census", "seed": 3,
        "data": {"source": "csv", "path": str(CENSUS), "header": False, "columns": CENSUS_COLUMNS,
                 "target": "income", "missing": ["?"], "validation_split": 0.2, "test_split": 0.2},
        "model": {"layers": [{"type": "Dense", "units": 32, "activation": "relu"},
                             {"type": "Dense", "activation": "softmax"}]},
        "compile": {"optimizer": "adam", "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]},
        "training": {"epochs": 2, "batch_size": 64},
        "runtime": {"precision": "mixed_bfloat16"},
        "output": {"tensorboard": False, "plots": False},
    }
    run = train(config, tmp_path)
    report, result = export(run)
    assert result.returncode == 0, result.stderr
    assert report["precision"] == "mixed_bfloat16" and report["thresholds"]["max_abs_diff"] == 1e-2
    formats = report["formats"]
    assert all(entry["status"] == "ok" and entry["max_abs_diff"] <= 1e-2 and entry["agreement"] >= 0.999
               for entry in formats.values()), formats
    saved = formats["saved_model"]
    assert saved["takes"] == "raw features"
    assert [(i["column"], i["dtype"]) for i in saved["inputs"]][:4] == [
        ("age", "float32"), ("workclass", "string"), ("fnlwgt", "float32"), ("education", "string")]
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
    want = [[p[f"proba_{label}"] for label in labels] for p in json.loads(predicted.stdout)["predictions"]]
    assert any(row[i] == "?" for row in rows for i in (1, 6, 9))  # missing categories are among them
    columns = {name: [row[i] for row in rows] for i, name in enumerate(CENSUS_COLUMNS[:-1])}
    numeric = {"age", "fnlwgt", "education_num", "hours_per_week"}
    feed = {name: ([float("nan") if v == "?" else float(v) for v in values] if name in numeric else values)
            for name, values in columns.items()}
    code = f"""
import json, os
import tensorflow as tf
serve = tf.saved_model.load({str(run / 'export' / 'saved_model')!r}).signatures["serving_default"]
feed = json.loads({json.dumps(json.dumps(feed))})
out = serve(**{{k: tf.constant(v, tf.float32 if isinstance(v[0], float) else tf.string) for k, v in feed.items()}})
print(json.dumps(list(out.values())[0].numpy().astype(float).tolist()))
"""
    served = run_python(code, timeout=300)
    assert served.returncode == 0, served.stderr[-3000:]
    got = np.array(json.loads(served.stdout.strip().splitlines()[-1]))
    assert got.shape == (60, len(labels))
    assert np.abs(got - np.array(want)).max() <= 1e-2
    assert (got.argmax(1) == np.array(want).argmax(1)).all()


def test_a_regression_exports_to_another_folder_and_writes_nothing_in_the_run(tmp_path):
    config = deep_update(TINY, {"name": "diabetes", "data": {"source": "diabetes"},
                                "model": {"layers": [{"type": "Dense", "units": 16, "activation": "relu"},
                                                     {"type": "Dense"}]},
                                "compile": {"loss": "mean_squared_error", "metrics": ["mean_absolute_error"]},
                                "training": {"epochs": 5, "batch_size": 32}})
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
    assert scale >= 1 and onnx["max_abs_diff"] <= 1e-4 * scale and onnx["tolerance"] == pytest.approx(1e-4 * scale)
    # exporting one format again into the same folder keeps the others' records
    report2, result2 = export(run, "--format", "keras", "--output", out)
    assert result2.returncode == 0, result2.stderr
    assert set(report2["formats"]) == set(FORMATS) and report2["formats"]["onnx"] == onnx
    assert report2["formats"]["keras"]["status"] == "ok" and report2["time"] >= report["time"]


def test_a_copy_that_differs_from_the_model_fails_with_exit_1(run_copy):
    code = f"""
import sys
import dlcli.export as export
export.TOLERANCE = export.LOOSE_TOLERANCE = -1.0  # no copy can be this close
sys.argv = ["dlcli", "export", {str(run_copy)!r}, "--format", "keras"]
from dlcli.cli import main
main()
"""
    result = run_python(code, env={"NO_COLOR": "1"}, timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith("error: export failed for keras: max_abs_diff")
    assert "Traceback" not in result.stderr
    entry = json.loads((run_copy / "exports.json").read_text())["formats"]["keras"]
    assert entry["status"] == "failed" and "exceeds" in entry["error"]


@pytest.mark.parametrize("option, needle", [
    ("onxx", "no export format 'onxx' (did you mean 'onnx'?)"),
])
def test_an_unknown_format_is_a_usage_error(cli, run_copy, option, needle):
    result = cli("export", run_copy, "--format", option)
    assert result.exit_code == 2
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (run_copy / "export").exists() and not (run_copy / "exports.json").exists()


def test_a_missing_export_library_names_the_install(cli, run_copy, monkeypatch):
    import importlib.util

    import dlcli.export

    real = importlib.util.find_spec
    monkeypatch.setattr(dlcli.export.importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    result = cli("export", run_copy, "--format", "onnx")
    assert result.exit_code == 2
    assert "onnx needs onnxruntime, which is not installed: pip install 'dlcli[export]'" in result.stderr
    assert not (run_copy / "export").exists()
    chosen, skipped = dlcli.export.chosen_formats([])  # by default the others are made, onnx skipped
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
        module="keras.src.backend.torch.optimizers.torch_adam", registered_name="Adam")  # as torch writes it
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    report, result = export(run_copy, "--format", "onnx")
    assert result.returncode == 0, result.stderr[-2000:]
    assert report["formats"]["onnx"]["status"] == "ok"
