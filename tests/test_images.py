"""Images: a folder of class folders (or a table of paths) in, a convolutional model out;
raw files to predict, evaluate and export; every bad input one exit-2 line before any run
folder. The pictures are scikit-learn's digits (real handwriting), written as PNG files at
test time."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import refused_line, run_dlcli

from dlcli.config.load import load_config


def digit_images(folder: Path, per_class: int = 12, size: int = 16, classes: int = 3, mode="L"):
    """`per_class` digits of each of the first `classes` digits, as PNG files in class folders."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    taken = {c: 0 for c in range(classes)}
    for i, (image, label) in enumerate(zip(digits.images, digits.target)):
        label = int(label)
        if label not in taken or taken[label] >= per_class:
            continue
        taken[label] += 1
        pixels = (image / 16 * 255).astype("uint8")
        picture = Image.fromarray(pixels).resize((size, size), Image.BILINEAR).convert(mode)
        target = folder / f"digit{label}" / f"{i}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        picture.save(target)
    return folder


def image_config(tmp_path: Path, data: dict, layers: list | None = None, **top) -> Path:
    config = {
        "name": "pics",
        "seed": 3,
        "data": {"source": "images", **data},
        "model": {
            "layers": layers
            or [
                {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
                {"type": "MaxPooling2D"},
                {"type": "Flatten"},
                {"type": "Dense", "activation": "softmax"},
            ]
        },
        "compile": {"optimizer": "adam", "metrics": ["accuracy"]},
        "training": {"epochs": 2, "batch_size": 8},
        "output": {"tensorboard": False, "plots": False, "baselines": "none"},
        **top,
    }
    path = tmp_path / "images.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def one_run(runs: Path) -> Path:
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    return run


@pytest.fixture
def pictures(tmp_path) -> Path:
    return digit_images(tmp_path / "pictures")


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """One trained image run (with augmentation layers), shared by predict/evaluate/export."""
    tmp = tmp_path_factory.mktemp("image-run")
    folder = digit_images(tmp / "pictures", per_class=16)
    config = image_config(
        tmp,
        {"path": str(folder)},
        layers=[
            {"type": "RandomFlip", "mode": "horizontal"},
            {"type": "RandomRotation", "factor": 0.05},
            {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
            {"type": "MaxPooling2D"},
            {"type": "GlobalAveragePooling2D"},
            {"type": "Dense", "activation": "softmax"},
        ],
    )
    done = run_dlcli("train", config, "--runs-dir", tmp / "runs", "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    return {"run": one_run(tmp / "runs"), "folder": folder, "tmp": tmp, "stdout": done.stdout}


# -- training ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_image_folder_trains_and_its_run_records_classes_sizes_and_splits(image_run):
    stdout_lines = [line for line in image_run["stdout"].splitlines() if line.strip()]
    assert len(stdout_lines) == 1, "--json prints one object, not Keras's 'Found N files'"
    result = json.loads(stdout_lines[0])
    assert "accuracy" in result["test"]
    record = json.loads((image_run["run"] / "run.json").read_text())
    data = record["data"]
    assert data["source"] == "images" and data["input_shape"] == [16, 16, 3]
    images = data["images"]
    assert images["layout"] == "folders" and images["image_size"] == [16, 16]
    assert images["path"]["counts"] == {"digit0": 16, "digit1": 16, "digit2": 16}
    assert sum(data["samples"].values()) == 48
    per_split = images["split_counts"]
    assert sum(sum(c.values()) for c in per_split.values()) == 48
    assert set(per_split["test"]) == {"digit0", "digit1", "digit2"}
    config = yaml.safe_load((image_run["run"] / "config.yaml").read_text())
    assert config["data"]["image_size"] == [16, 16], "the resolved config records the size"
    labels = json.loads((image_run["run"] / "labels.json").read_text())
    assert labels == ["digit0", "digit1", "digit2"]


@pytest.mark.slow
def test_the_saved_model_holds_the_rescaling_and_takes_raw_pixels(image_run):
    from dlcli.runtime.keras_import import import_keras

    # the backend this test process already runs on (the one later in-process tests get)
    keras = import_keras(os.environ.get("KERAS_BACKEND", "jax"))

    model = keras.saving.load_model(image_run["run"] / "model.keras", safe_mode=True)
    names = [layer.name for layer in model.layers]
    assert names[0] == "dlcli_normalize"
    norm = model.layers[0]
    assert np.allclose(np.asarray(norm.variance), 255.0**2)
    pixels = np.full((1, 16, 16, 3), 255.0, "float32")
    # augmentation is the identity at inference: two calls agree exactly
    first = keras.ops.convert_to_numpy(model(pixels, training=False))
    assert np.array_equal(first, keras.ops.convert_to_numpy(model(pixels, training=False)))


@pytest.mark.slow
def test_a_mixed_folder_of_png_jpeg_bmp_gif_grayscale_and_rgb_trains(tmp_path):
    from PIL import Image

    folder = digit_images(tmp_path / "mixed", per_class=10, size=20, classes=2)
    kinds = [
        ("JPEG", "RGB", ".jpg"),
        ("BMP", "L", ".bmp"),
        ("GIF", "P", ".gif"),
        ("PNG", "RGBA", ".png"),
    ]
    for n, path in enumerate(sorted(folder.rglob("*.png"))):
        kind, mode, suffix = kinds[n % len(kinds)]
        with Image.open(path) as image:
            converted = image.convert(mode)
        path.unlink()
        converted.save(path.with_suffix(suffix), kind)
    config = image_config(tmp_path, {"path": str(folder), "image_size": [12, 12]})
    done = run_dlcli("train", config, "--runs-dir", tmp_path / "runs", "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    record = json.loads((one_run(tmp_path / "runs") / "run.json").read_text())
    assert record["data"]["input_shape"] == [12, 12, 3]
    assert record["data"]["images"]["path"]["files"] == 20


@pytest.mark.slow
def test_a_table_of_image_paths_trains_on_jax_and_predicts_from_the_same_table(tmp_path):
    folder = digit_images(tmp_path / "pictures", per_class=10)
    rows = ["picture,label"] + [
        f"{p.relative_to(tmp_path).as_posix()},{p.parent.name[-1]}"
        for p in sorted(folder.rglob("*.png"))
    ]
    table = tmp_path / "pictures.csv"
    table.write_text("\n".join(rows) + "\n")
    config = image_config(
        tmp_path,
        {"path": str(table), "target": "label", "features": [{"name": "picture", "type": "image"}]},
        runtime={"backend": "jax"},
    )
    done = run_dlcli("train", config, "--runs-dir", tmp_path / "runs", "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    run = one_run(tmp_path / "runs")
    record = json.loads((run / "run.json").read_text())
    assert record["versions"]["backend"] == "jax"
    assert record["data"]["images"]["layout"] == "table"
    assert record["data"]["images"]["path"]["column"] == "picture"
    assert json.loads((run / "labels.json").read_text()) == [0, 1, 2]
    predicted = run_dlcli("predict", run, table)
    assert predicted.returncode == 0, predicted.stderr
    lines = predicted.stdout.splitlines()
    assert lines[0] == "file,prediction" and len(lines) == 31
    assert lines[1].split(",")[0].endswith(".png")


# -- predict, evaluate, export -----------------------------------------------------------------


@pytest.mark.slow
def test_predict_takes_one_image_or_a_folder_recursively_with_probabilities(image_run):
    run, folder = image_run["run"], image_run["folder"]
    one = run_dlcli("predict", run, next((folder / "digit1").glob("*.png")), "--proba")
    assert one.returncode == 0, one.stderr
    header, row = one.stdout.splitlines()
    assert header == "file,prediction,proba_digit0,proba_digit1,proba_digit2"
    probabilities = [float(v) for v in row.split(",")[2:]]
    assert abs(sum(probabilities) - 1) < 1e-3
    (folder / "notes.txt").write_text("not a picture")  # passed over, and said so
    try:
        many = run_dlcli("predict", run, folder)
    finally:
        (folder / "notes.txt").unlink()
    assert many.returncode == 0, many.stderr
    lines = many.stdout.splitlines()
    assert len(lines) == 49 and lines[0] == "file,prediction"
    assert {line.split(",")[1] for line in lines[1:]} <= {"digit0", "digit1", "digit2"}
    assert "notes.txt" in many.stderr


@pytest.mark.slow
def test_evaluate_scores_a_labelled_folder_and_refuses_an_unknown_class(image_run, tmp_path):
    run, folder = image_run["run"], image_run["folder"]
    scored = run_dlcli("evaluate", run, "--data", folder, "--json")
    assert scored.returncode == 0, scored.stderr
    entry = json.loads(scored.stdout)
    assert entry["samples"] == 48 and 0 <= entry["metrics"]["accuracy"] <= 1
    changed = next((folder / "digit0").glob("*.png"))
    original = changed.read_bytes()
    changed.write_bytes(original + b"\0")  # still a PNG, but not the file trained on
    try:
        stale = run_dlcli("evaluate", run)
    finally:
        changed.write_bytes(original)
    assert stale.returncode == 2 and "changed since run" in stale.stderr
    strange = digit_images(tmp_path / "other", per_class=2, classes=1)
    (strange / "digit0").rename(strange / "seven")
    refused = run_dlcli("evaluate", run, "--data", strange)
    assert refused.returncode == 2
    assert "never seen in training: 'seven'" in refused.stderr


@pytest.mark.slow
def test_every_export_format_of_an_image_run_is_checked_and_takes_encoded_files(image_run):
    out = image_run["tmp"] / "exported"
    done = run_dlcli("export", image_run["run"], "--output", out, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((out / "exports.json").read_text())
    assert report["augmentation_removed"] == ["random_flip", "random_rotation"]
    for name in ("saved_model", "onnx", "litert", "keras"):
        assert report["formats"][name]["status"] == "ok", report["formats"][name]
    saved = report["formats"]["saved_model"]
    assert saved["encoded_images"]["max_abs_diff"] < 1e-4
    assert saved["inputs"][1]["signature"] == "serve_bytes"
    import tensorflow as tf

    model = tf.saved_model.load(str(out / "saved_model"))
    png = next((image_run["folder"] / "digit2").glob("*.png")).read_bytes()
    answer = model.signatures["serve_bytes"](encoded=tf.constant([png]))
    probabilities = next(iter(answer.values())).numpy()
    assert probabilities.shape == (1, 3) and abs(probabilities.sum() - 1) < 1e-3


# -- init --from-data ------------------------------------------------------------------------


@pytest.mark.slow
def test_init_from_an_image_folder_writes_a_config_that_reaches_95_percent_on_digits(tmp_path):
    folder = digit_images(tmp_path / "digits", per_class=1000, size=32, classes=10)
    assert sum(1 for _ in folder.rglob("*.png")) == 1797
    config = tmp_path / "digits.yaml"
    made = run_dlcli("init", "--from-data", folder, config)
    assert made.returncode == 0, made.stderr
    text = config.read_text()
    assert "image_size: [32, 32]" in text and "color_mode: grayscale" in text
    assert "#   digit3: 183" in text
    loaded = load_config(config)
    assert [layer.type for layer in loaded.model.layers].count("Conv2D") == 3
    done = run_dlcli(
        "train", config, "--runs-dir", tmp_path / "runs", "--json", "--quiet", timeout=900
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["test"]["accuracy"] >= 0.95


def test_init_from_a_table_of_image_paths_names_its_columns_and_validates(cli, tmp_path):
    folder = digit_images(tmp_path / "pictures", per_class=6)
    rows = ["id,picture,label"] + [
        f"{n},{p.relative_to(tmp_path).as_posix()},{p.parent.name}"
        for n, p in enumerate(sorted(folder.rglob("*.png")))
    ]
    table = tmp_path / "pictures.csv"
    table.write_text("\n".join(rows) + "\n")
    config = tmp_path / "from-table.yaml"
    made = cli("init", "--from-data", table, config, "--target", "label")
    assert made.exit_code == 0, made.stderr
    text = config.read_text()
    assert "target: label" in text and "features: [{name: picture, type: image}]" in text
    assert "image_size: [16, 16]" in text
    checked = cli("validate", config, "--json")
    assert checked.exit_code == 0, checked.stderr


# -- bad input: one line, exit 2, no run folder -----------------------------------------------


@pytest.fixture
def refused(cli, tmp_path):
    """refused(data, layers=None) -> the one line `dlcli train` exits 2 with, no run folder."""

    def train(data: dict, layers=None) -> str:
        return refused_line(cli, image_config(tmp_path, data, layers), tmp_path / "runs")

    return train


def test_a_truncated_image_is_named_with_the_count_of_the_others(pictures, tmp_path, refused):
    broken = sorted((pictures / "digit1").glob("*.png"))
    for path in broken[:3]:
        path.write_bytes(path.read_bytes()[:60])
    line = refused({"path": str(pictures)})
    assert str(broken[0]) in line and "2 other files failed too" in line
    assert "on_bad_file: skip" in line


@pytest.mark.slow
def test_on_bad_file_skip_trains_without_them_and_lists_each_in_run_json(pictures, tmp_path):
    (pictures / "digit2" / "notes.txt").write_text("hello")
    truncated = next((pictures / "digit0").glob("*.png"))
    truncated.write_bytes(truncated.read_bytes()[:50])
    config = image_config(tmp_path, {"path": str(pictures), "on_bad_file": "skip"})
    done = run_dlcli("train", config, "--runs-dir", tmp_path / "runs", "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    images = json.loads((one_run(tmp_path / "runs") / "run.json").read_text())["data"]["images"]
    skipped = {entry["file"]: entry["reason"] for entry in images["path"]["skipped"]}
    assert set(skipped) == {"digit2/notes.txt", f"digit0/{truncated.name}"}
    assert "not an image file" in skipped["digit2/notes.txt"]
    assert images["path"]["files"] == 35


def test_a_file_that_is_not_an_image_is_refused_by_name(pictures, tmp_path, refused):
    (pictures / "digit0" / "labels.csv").write_text("a,b\n")
    line = refused({"path": str(pictures)})
    assert "labels.csv" in line and "not an image file" in line


def test_files_at_the_top_level_of_a_class_layout_are_named(pictures, tmp_path, refused):
    (pictures / "stray.png").write_bytes(next(pictures.rglob("*.png")).read_bytes())
    line = refused({"path": str(pictures)})
    assert "stray.png" in line and "one sub-folder per class" in line


def test_an_empty_class_a_single_class_and_no_classes_are_refused(pictures, tmp_path, refused):
    (pictures / "digit9").mkdir()
    assert "class 'digit9' holds no image file" in refused({"path": str(pictures)})
    (pictures / "digit9").rmdir()
    lonely = digit_images(tmp_path / "lonely", classes=1)
    assert "a single class ('digit0')" in refused({"path": str(lonely)})
    (tmp_path / "empty").mkdir()
    assert "holds no class folders" in refused({"path": str(tmp_path / "empty")})


def test_a_symlink_that_leaves_the_folder_is_refused(pictures, tmp_path, refused):
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(next(pictures.rglob("*.png")).read_bytes())
    os.symlink(outside, pictures / "digit0" / "link.png")
    line = refused({"path": str(pictures)})
    assert "link.png" in line and "outside" in line


def test_a_decompression_bomb_is_refused_from_its_header(pictures, tmp_path, refused):
    bomb = pictures / "digit1" / "bomb.png"
    bomb.write_bytes(png_header(100_000, 100_000))
    line = refused({"path": str(pictures)})
    assert "bomb.png" in line and "10,000,000,000 pixels" in line and "decompression bomb" in line


def test_an_image_size_the_first_layers_cannot_take_is_refused_at_its_line(
    pictures, tmp_path, refused
):
    layers = [
        {"type": "Conv2D", "filters": 4, "kernel_size": 3},
        {"type": "Conv2D", "filters": 4, "kernel_size": 3},
        {"type": "Flatten"},
        {"type": "Dense", "activation": "softmax"},
    ]
    line = refused({"path": str(pictures), "image_size": [4, 4]}, layers)
    assert "images.yaml" in line and "model.layers[1]" in line and "4x4 (data.image_size)" in line


def test_a_target_beside_a_folder_layout_is_refused(pictures, tmp_path, refused):
    line = refused({"path": str(pictures), "target": "label"})
    assert "data.target is for a table" in line and "images.yaml" in line


def test_images_of_different_sizes_need_an_image_size(pictures, tmp_path, refused):
    from PIL import Image

    Image.new("L", (20, 24)).save(pictures / "digit0" / "larger.png")
    line = refused({"path": str(pictures)})
    assert "differ in size" in line and "data.image_size" in line


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares `width` x `height` pixels, with one tiny data chunk."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


def test_image_keys_belong_to_the_images_source_only(tmp_path):
    from dlcli.errors import ConfigError

    with pytest.raises(ConfigError, match="image_size: only for images"):
        load_config(
            {
                "data": {"source": "digits", "image_size": [8, 8]},
                "model": {"layers": [{"type": "Dense"}]},
            }
        )
    config = load_config(
        {"data": {"source": "images", "path": "x"}, "model": {"layers": [{"type": "Dense"}]}}
    )
    assert config.data.normalize == 255.0 and config.data.color_mode == "rgb"


def test_a_csv_feature_of_type_image_points_to_the_images_source(cli, tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("a,b,y\n" + "1,2,0\n3,4,1\n" * 4)
    config = tmp_path / "t.yaml"
    config.write_text(
        "data:\n  source: csv\n  path: t.csv\n  target: y\n"
        "  features: [{name: a, type: image}, b]\nmodel: {layers: [{type: Dense}]}\n"
    )
    done = cli("validate", config)
    assert done.exit_code == 2 and "Traceback" not in done.stderr
    assert "t.yaml:5" in done.stderr and "set data.source: images" in done.stderr


# -- memory: pixels stay in the unnamed file ------------------------------------------------


def test_decoded_images_are_read_back_a_piece_at_a_time_in_the_order_given(pictures):
    from dlcli.data.media.images import PIECE, decode_files

    files = sorted(str(p) for p in pictures.rglob("*.png"))
    decoded = decode_files(files, (16, 16), "grayscale")
    rows = decoded.rows
    assert len(rows) == 36 and rows.sample_shape == (16, 16, 1) and rows.dtype == "uint8"
    assert rows.pieces == -(-36 // PIECE)
    from PIL import Image

    first = np.asarray(Image.open(files[0]).convert("L"))
    assert np.array_equal(rows.read(0)[0, ..., 0], first)
    last = np.asarray(Image.open(files[-1]).convert("L"))
    assert np.array_equal(rows.read(rows.pieces - 1)[-1, ..., 0], last)
    assert not decoded.bad and len(decoded.digests) == 36
