"""Text and audio: folders of class folders (or a table) in, the vocabulary or the
waveform handling inside the run; raw documents and recordings to predict, evaluate and
export; every bad input one exit-2 line before any run folder. The corpus and the tones are
generated at test time."""

from __future__ import annotations

import csv
import json
import wave
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import refused_line, run_dlcli, run_python

TOPICS = {
    "food": [
        "recipe",
        "taste",
        "dish",
        "flavor",
        "cook",
        "kitchen",
        "meal",
        "sauce",
        "bake",
        "fresh",
    ],
    "sports": [
        "game",
        "team",
        "score",
        "player",
        "coach",
        "season",
        "match",
        "goal",
        "win",
        "league",
    ],
    "tech": [
        "software",
        "computer",
        "chip",
        "code",
        "data",
        "network",
        "cloud",
        "device",
        "app",
        "server",
    ],
}
COMMON = [
    "the",
    "a",
    "and",
    "of",
    "to",
    "in",
    "is",
    "it",
    "that",
    "this",
    "was",
    "for",
    "on",
    "with",
    "as",
    "story",
    "plot",
]
TEST_ONLY = "zzqtestonly"  # a word only the test folder holds: never in the vocabulary


def corpus(folder: Path, per_class: int = 40, seed: int = 0, extra: str = "") -> Path:
    """`per_class` short documents per topic: topic words among common ones."""
    rng = np.random.default_rng(seed)
    for label, words in TOPICS.items():
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            count = int(rng.integers(8, 30))
            picked = [
                words[rng.integers(len(words))]
                if rng.random() < 0.3
                else COMMON[rng.integers(len(COMMON))]
                for _ in range(count)
            ]
            text = " ".join(picked).capitalize() + (f" {extra}" if extra else "") + ".\n"
            (folder / label / f"{i:03d}.txt").write_text(text, encoding="utf-8")
    return folder


def write_wav(path: Path, samples: np.ndarray, rate: int, width: int = 2) -> Path:
    """A PCM WAV of `samples` (-1..1, (frames,) or (frames, channels)) at `width` bytes."""
    samples = samples if samples.ndim == 2 else samples[:, None]
    path.parent.mkdir(parents=True, exist_ok=True)
    if width == 1:
        data = (np.clip(samples, -1, 1) * 127 + 128).astype("uint8").tobytes()
    elif width == 3:
        ints = (np.clip(samples, -1, 1) * (2**23 - 1)).astype("<i4")
        data = b"".join(int(v).to_bytes(3, "little", signed=True) for v in ints.ravel())
    else:
        data = (np.clip(samples, -1, 1) * (2 ** (8 * width - 1) - 1)).astype(f"<i{width}").tobytes()
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(samples.shape[1])
        handle.setsampwidth(width)
        handle.setframerate(rate)
        handle.writeframes(data)
    return path


def frames(path: Path) -> int:
    with wave.open(str(path)) as handle:
        return handle.getnframes()


PITCHES = {"low": 220.0, "mid": 440.0, "high": 880.0}


def tones(folder: Path, per_class: int = 16, rate: int = 8000, seed: int = 0) -> Path:
    """Noisy tones of three pitch classes, 0.3 to 0.6 s long."""
    rng = np.random.default_rng(seed)
    for label, pitch in PITCHES.items():
        for i in range(per_class):
            t = np.arange(int(rate * rng.uniform(0.3, 0.6))) / rate
            wave_ = 0.5 * np.sin(2 * np.pi * pitch * rng.uniform(0.95, 1.05) * t)
            write_wav(
                folder / label / f"{i:03d}.wav", wave_ + 0.05 * rng.standard_normal(len(t)), rate
            )
    return folder


TEXT_LAYERS = [
    {"type": "Embedding", "output_dim": 16},
    {"type": "GlobalAveragePooling1D"},
    {"type": "Dense", "activation": "softmax"},
]
AUDIO_LAYERS = [
    {
        "type": "MelSpectrogram",
        "sampling_rate": 8000,
        "num_mel_bins": 32,
        "fft_length": 256,
        "sequence_stride": 128,
    },
    {"type": "Permute", "dims": [2, 1]},
    {"type": "BatchNormalization"},
    {"type": "Conv1D", "filters": 16, "kernel_size": 3, "activation": "relu"},
    {"type": "GlobalAveragePooling1D"},
    {"type": "Dense", "activation": "softmax"},
]


def media_config(tmp_path: Path, source: str, data: dict, layers=None, **top) -> Path:
    config = {
        "name": source,
        "seed": 3,
        "data": {"source": source, **data},
        "model": {"layers": layers or (TEXT_LAYERS if source == "text" else AUDIO_LAYERS)},
        "compile": {"optimizer": {"type": "Adam", "learning_rate": 0.01}, "metrics": ["accuracy"]},
        "training": {"epochs": 12, "batch_size": 16},
        "output": {"tensorboard": False, "plots": False, "baselines": "none"},
        **top,
    }
    path = tmp_path / f"{source}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def one_run(runs: Path) -> Path:
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    return run


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """One trained text run (JAX, the default for Embedding), shared by the tests after it:
    a test folder with a word training never saw, and a Latin-1 file skipped."""
    tmp = tmp_path_factory.mktemp("text-run")
    train = corpus(tmp / "train", per_class=40)
    (train / "food" / "latin1.txt").write_bytes("un café crème".encode("latin-1"))
    test = corpus(tmp / "test", per_class=10, seed=1, extra=TEST_ONLY)
    config = media_config(
        tmp,
        "text",
        {
            "path": str(train),
            "test_path": str(test),
            "text": {"max_tokens": 500, "sequence_length": 32},
            "on_bad_file": "skip",
        },
    )
    done = run_dlcli("train", config, "--runs-dir", tmp / "runs", "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    return {"run": one_run(tmp / "runs"), "train": train, "test": test, "tmp": tmp, "out": done}


# -- text ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_text_folder_trains_with_a_vocabulary_of_the_training_split_only(text_run):
    lines = [line for line in text_run["out"].stdout.splitlines() if line.strip()]
    assert len(lines) == 1, "--json prints one object"
    result = json.loads(lines[0])
    assert result["test"]["accuracy"] >= 0.9
    run = text_run["run"]
    data = json.loads((run / "run.json").read_text())["data"]
    assert data["source"] == "text" and data["input_shape"] == [32]
    text = data["text"]
    assert text["path"]["counts"] == {"food": 40, "sports": 40, "tech": 40}
    assert [s["file"] for s in text["path"]["skipped"]] == ["food/latin1.txt"]
    assert "not UTF-8 (byte 0xe9 at offset 6)" in text["path"]["skipped"][0]["reason"]
    vocabulary = text["vocabulary"]
    assert vocabulary["documents"] == data["samples"]["train"], "adapted on the training split"
    assert 0 < vocabulary["unknown_token_share"]["test"] < 0.2
    saved = json.loads((run / "preprocessing.json").read_text())["text"]
    assert saved["output_mode"] == "int" and TEST_ONLY not in saved["vocabulary"]
    assert saved["vocabulary"][: len(vocabulary["most_frequent"])] == vocabulary["most_frequent"]
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["layers"][0]["input_dim"] == len(saved["vocabulary"]) + 2


@pytest.mark.slow
def test_the_text_model_keras_takes_raw_strings_and_agrees_with_predict(text_run):
    files = sorted((text_run["test"] / "sports").glob("*.txt"))[:4]
    done = run_dlcli("predict", text_run["run"], text_run["test"] / "sports", "--proba")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(done.stdout.splitlines()))
    assert len(rows) == 10 and rows[0]["file"].endswith("000.txt")
    assert sum(r["prediction"] == "sports" for r in rows) >= 8
    texts = [f.read_text() for f in files]
    code = (
        "import json, numpy as np, keras\n"
        f"m = keras.saving.load_model({str(text_run['run'] / 'model.keras')!r})\n"
        f"out = m.predict(np.array({texts!r}, dtype=object), verbose=0)\n"
        "print(json.dumps([m.layers[0].name, out.tolist()]))\n"
    )
    loaded = run_python(code, env={"KERAS_BACKEND": "tensorflow"}, timeout=180)
    assert loaded.returncode == 0, loaded.stderr
    name, outputs = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert name == "dlcli_text"
    expected = [[float(r[f"proba_{c}"]) for c in ("food", "sports", "tech")] for r in rows[:4]]
    assert np.allclose(outputs, expected, atol=1e-5)


@pytest.mark.slow
def test_predict_takes_one_document_or_a_table_and_evaluate_scores_a_labelled_folder(text_run):
    one = text_run["test"] / "tech" / "003.txt"
    done = run_dlcli("predict", text_run["run"], one)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].startswith(f"{one},")
    table = text_run["tmp"] / "docs.csv"
    with table.open("w", newline="") as handle:  # beside an id: the column called "text"
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        writer.writerows(
            [[7, "the game team score win league"], [8, "a recipe with sauce and taste"]]
        )
    done = run_dlcli("predict", text_run["run"], table)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(done.stdout.splitlines()))
    assert [r["row"] for r in rows] == ["1", "2"]
    assert [r["prediction"] for r in rows] == ["sports", "food"]
    done = run_dlcli("evaluate", text_run["run"], "--data", text_run["test"], "--json")
    assert done.returncode == 0, done.stderr
    entry = json.loads(done.stdout)
    assert entry["samples"] == 30 and entry["metrics"]["accuracy"] >= 0.9


@pytest.mark.slow
def test_every_export_of_a_text_run_takes_raw_text_or_token_ids(text_run):
    done = run_dlcli("export", text_run["run"], "--json", timeout=600)
    assert done.returncode == 0, done.stderr
    formats = json.loads(done.stdout)["formats"]
    assert {name: f["status"] for name, f in formats.items()} == {
        "saved_model": "ok",
        "onnx": "ok",
        "litert": "ok",
        "keras": "ok",
    }
    assert formats["keras"]["takes"].startswith("raw text")
    assert formats["saved_model"]["takes"].startswith("raw text")
    assert formats["onnx"]["takes"].startswith("token ids")
    assert formats["onnx"]["inputs"][0]["dtype"] == "tensor(int32)"


@pytest.mark.slow
def test_a_table_text_column_trains_with_tf_idf_on_tensorflow_and_predicts(tmp_path):
    rows = []
    for path in sorted(corpus(tmp_path / "docs", per_class=30).rglob("*.txt")):
        rows.append(
            {"id": path.stem, "review": path.read_text().strip(), "topic": path.parent.name}
        )
    table = tmp_path / "reviews.csv"
    with table.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["id", "review", "topic"])
        writer.writeheader()
        writer.writerows(rows)
    config = media_config(
        tmp_path,
        "text",
        {
            "path": str(table),
            "target": "topic",
            "features": [{"name": "review", "type": "text"}],
            "text": {"output_mode": "tf_idf", "max_tokens": 300, "ngrams": 2},
        },
        layers=[{"type": "Dense", "units": 16, "activation": "relu"}, {"type": "Dense"}],
        runtime={"backend": "tensorflow"},
    )
    done = run_dlcli("train", config, "--runs-dir", tmp_path / "runs", "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["test"]["accuracy"] >= 0.9
    run = one_run(tmp_path / "runs")
    record = json.loads((run / "run.json").read_text())["data"]
    assert record["input_shape"] == [300] and record["text"]["path"]["column"] == "review"
    assert record["text"]["path"]["rows"] == 90
    saved = json.loads((run / "preprocessing.json").read_text())["text"]
    assert len(saved["idf"]) == 300 and any(" " in token for token in saved["vocabulary"])
    done = run_dlcli("predict", run, table)
    assert done.returncode == 0, done.stderr
    predicted = [r["prediction"] for r in csv.DictReader(done.stdout.splitlines())]
    assert np.mean([p == r["topic"] for p, r in zip(predicted, rows)]) >= 0.9


@pytest.mark.slow
def test_a_text_column_beside_numbers_and_categories_joins_its_vector_to_theirs(tmp_path):
    rng = np.random.default_rng(5)
    rows = []
    for path in sorted(corpus(tmp_path / "docs", per_class=40).rglob("*.txt")):
        team = path.parent.name
        rows.append(
            {
                "amount": round(float(rng.normal(100 if team == "food" else 20, 10)), 2),
                "channel": str(rng.choice(["mail", "phone", "chat"])),
                "body": path.read_text().strip() if rng.random() > 0.1 else "",
                "team": team,
            }
        )
    table = tmp_path / "tickets.csv"
    with table.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    config = {
        "name": "mixed",
        "seed": 2,
        "data": {
            "source": "csv",
            "path": str(table),
            "target": "team",
            "features": ["amount", "channel", {"name": "body", "type": "text"}],
            "text": {"output_mode": "multi_hot", "max_tokens": 200},
        },
        "model": {
            "layers": [{"type": "Dense", "units": 16, "activation": "relu"}, {"type": "Dense"}]
        },
        "compile": {"optimizer": {"type": "Adam", "learning_rate": 0.01}, "metrics": ["accuracy"]},
        "training": {"epochs": 15, "batch_size": 16},
        "output": {"tensorboard": False, "plots": False},
    }
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    done = run_dlcli("train", path, "--runs-dir", tmp_path / "runs", "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["test"]["accuracy"] >= 0.85
    run = one_run(tmp_path / "runs")
    data = json.loads((run / "run.json").read_text())["data"]
    saved = json.loads((run / "preprocessing.json").read_text())
    assert [f["type"] for f in saved["features"]] == ["numeric", "categorical", "text"]
    assert data["input_shape"] == [3 + len(saved["text"]["vocabulary"]) + 1]
    assert saved["text"]["output_mode"] == "multi_hot" and "recipe" in saved["text"]["vocabulary"]
    done = run_dlcli("predict", run, table)
    assert done.returncode == 0, done.stderr
    predicted = [r["prediction"] for r in csv.DictReader(done.stdout.splitlines())]
    assert np.mean([p == r["team"] for p, r in zip(predicted, rows)]) >= 0.85
    done = run_dlcli("export", run, "--json", timeout=600)
    assert done.returncode == 0, done.stderr
    formats = json.loads(done.stdout)["formats"]
    assert all(f["status"] == "ok" for f in formats.values()), formats
    assert formats["onnx"]["takes"].startswith("category indices, then the text column's vector")


# -- audio ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_tones_reach_95_percent_through_a_mel_spectrogram_and_export_takes_waveforms(tmp_path):
    train, test = tones(tmp_path / "train"), tones(tmp_path / "test", per_class=6, seed=1)
    config = media_config(tmp_path, "audio", {"path": str(train), "test_path": str(test)})
    done = run_dlcli("train", config, "--runs-dir", tmp_path / "runs", "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["test"]["accuracy"] >= 0.95
    run = one_run(tmp_path / "runs")
    data = json.loads((run / "run.json").read_text())["data"]
    audio = data["audio"]
    longest = max(frames(p) for p in tmp_path.rglob("*.wav"))
    assert audio["sampling_rate"] == 8000 and audio["output_sequence_length"] == longest
    assert data["input_shape"] == [longest] and audio["path"]["counts"]["low"] == 16
    resolved = yaml.safe_load((run / "config.yaml").read_text())["data"]
    assert resolved["sampling_rate"] == 8000 and resolved["output_sequence_length"] == longest
    done = run_dlcli("predict", run, test / "high")
    assert done.returncode == 0, done.stderr
    predicted = [r["prediction"] for r in csv.DictReader(done.stdout.splitlines())]
    assert predicted.count("high") >= 5
    done = run_dlcli("export", run, "--json", timeout=600)
    assert done.returncode == 0, done.stderr
    formats = json.loads(done.stdout)["formats"]
    assert all(f["status"] == "ok" for f in formats.values()), formats
    assert formats["onnx"]["takes"] == f"waveforms: {longest} samples at 8000 Hz, -1..1"
    assert formats["onnx"]["inputs"][0]["shape"] == [None, longest]


def test_wavs_of_any_rate_width_and_channels_decode_to_one_rate_and_length(tmp_path):
    from dlcli.data.media.audio import decode

    t16, t8 = np.arange(16000) / 16000, np.arange(4000) / 8000
    tone16 = 0.5 * np.sin(2 * np.pi * 440 * t16)
    tone8 = 0.5 * np.sin(2 * np.pi * 440 * t8)
    files = {
        "stereo 16 kHz 16-bit": write_wav(tmp_path / "a.wav", np.stack([tone16, tone16], 1), 16000),
        "mono 8 kHz 8-bit": write_wav(tmp_path / "b.wav", tone8, 8000, width=1),
        "mono 8 kHz 24-bit": write_wav(tmp_path / "c.wav", tone8, 8000, width=3),
        "mono 8 kHz 32-bit": write_wav(tmp_path / "d.wav", tone8, 8000, width=4),
    }
    for what, path in files.items():
        wave_ = decode(path.read_bytes(), 8000, 6000)
        assert wave_.shape == (6000,) and wave_.dtype == np.float32, what
        spectrum = np.abs(np.fft.rfft(wave_[:4000]))
        assert abs(np.argmax(spectrum) * 8000 / 4000 - 440) <= 2, what
        assert 0.45 < np.abs(wave_[:4000]).max() < 0.55, what
        longer = len(np.trim_zeros(wave_, "b"))
        assert 3990 <= longer <= 4010 if "16 kHz" not in what else longer == 6000, what


# -- init ----------------------------------------------------------------------------------


def test_init_from_text_and_audio_folders_and_free_text_tables_writes_valid_configs(cli, tmp_path):
    docs = corpus(tmp_path / "docs", per_class=5)
    sounds = tones(tmp_path / "sounds", per_class=3)
    table = tmp_path / "tickets.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ticket", "priority", "team"])
        for i, path in enumerate(sorted(docs.rglob("*.txt"))):
            writer.writerow([f"{path.read_text().strip()} number {i}", i % 3, path.parent.name])
    reviews = tmp_path / "reviews.csv"
    with reviews.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["review", "team"])
        for i, path in enumerate(sorted(docs.rglob("*.txt"))):
            writer.writerow([f"{path.read_text().strip()} number {i}", path.parent.name])
    for source, kind, needle in (
        (docs, "text", "- {type: Embedding, output_dim: 64}"),
        (sounds, "audio", "MelSpectrogram, sampling_rate: 8000"),
        (reviews, "text", "features: [{name: review, type: text}]"),
        (table, "csv", "- {name: ticket, type: text}"),
    ):
        target = tmp_path / f"{source.stem}.yaml"
        done = cli("init", "--from-data", source, target)
        assert done.exit_code == 0, done.stderr
        written = target.read_text()
        assert f"source: {kind}" in written and needle in written
        assert "type: categorical" not in written, "free text is not a column of categories"
        config = yaml.safe_load(written)
        assert config["data"]["path"] == source.name
        done = cli("validate", target)
        assert done.exit_code == 0, done.stdout + done.stderr
    config = yaml.safe_load((tmp_path / "tickets.yaml").read_text())
    assert config["data"]["target"] == "team" and config["data"]["text"]["output_mode"] == "tf_idf"
    assert config["data"]["features"] == [{"name": "ticket", "type": "text"}, "priority"]


# -- bad input: one line, exit 2, no run folder --------------------------------------------


@pytest.fixture
def refused(cli, tmp_path):
    """refused(source, data, layers=None) -> the one line `dlcli train` exits 2 with."""

    def train(source: str, data: dict, layers=None) -> str:
        config = media_config(tmp_path, source, data, layers)
        return refused_line(cli, config, tmp_path / "runs")

    return train


def test_a_document_that_is_not_utf8_is_named_with_its_byte_offset(tmp_path, refused):
    docs = corpus(tmp_path / "docs", per_class=4)
    bad = docs / "tech" / "000.txt"
    bad.write_bytes(b"caf\xe9 au lait")
    line = refused("text", {"path": str(docs)})
    assert str(bad) in line and "not UTF-8 (byte 0xe9 at offset 3)" in line
    assert "on_bad_file: skip" in line


def test_a_folder_without_documents_and_an_empty_text_column_are_refused(tmp_path, refused):
    for label in ("a", "b"):
        (tmp_path / "notes" / label).mkdir(parents=True)
        (tmp_path / "notes" / label / "x.md").write_text("# not a .txt file")
    line = refused("text", {"path": str(tmp_path / "notes")})
    assert "holds no text file (.txt)" in line and "notes/a" in line
    table = tmp_path / "empty.csv"
    table.write_text("body,label\n,a\n,b\n,a\n,b\n")
    line = refused(
        "text",
        {"path": str(table), "target": "label", "features": [{"name": "body", "type": "text"}]},
    )
    assert "column 'body' is empty in every row" in line and "empty.csv" in line


def test_wavs_that_cannot_be_decoded_are_not_pcm_or_are_empty_are_named(tmp_path, refused):
    from scipy.io import wavfile

    sounds = tones(tmp_path / "sounds", per_class=4)
    garbage = sounds / "low" / "000.wav"
    garbage.write_bytes(b"RIFF\x00\x00garbage that is no wave")
    line = refused("audio", {"path": str(sounds), "output_sequence_length": 4000})
    assert str(garbage) in line and "cannot be decoded as WAV" in line
    garbage.unlink()
    floats = sounds / "mid" / "000.wav"
    wavfile.write(floats, 8000, np.zeros(800, dtype="float32"))
    line = refused("audio", {"path": str(sounds), "output_sequence_length": 4000})
    assert str(floats) in line and "floating-point WAV, not PCM" in line
    floats.unlink()
    empty = write_wav(sounds / "high" / "empty.wav", np.zeros(0), 8000)
    line = refused("audio", {"path": str(sounds), "output_sequence_length": 4000})
    assert str(empty) in line and "zero-length recording" in line


def test_lengths_the_first_layers_cannot_take_are_refused_at_their_line(tmp_path, refused):
    docs = corpus(tmp_path / "docs", per_class=4)
    line = refused(
        "text",
        {"path": str(docs), "text": {"sequence_length": 3}},
        [
            {"type": "Embedding", "output_dim": 8},
            {"type": "Conv1D", "filters": 4, "kernel_size": 5},
            {"type": "GlobalMaxPooling1D"},
            {"type": "Dense"},
        ],
    )
    assert "text.yaml" in line and "model.layers[1]" in line
    assert "data.text.sequence_length" in line
    sounds = tones(tmp_path / "sounds", per_class=3)
    line = refused(
        "audio",
        {"path": str(sounds), "output_sequence_length": 8},
        [
            {"type": "Conv1D", "filters": 4, "kernel_size": 16},
            {"type": "Flatten"},
            {"type": "Dense"},
        ],
    )
    assert "model.layers[0]" in line and "data.output_sequence_length" in line
    line = refused(
        "text",
        {"path": str(docs)},
        [
            {"type": "Embedding", "input_dim": 5, "output_dim": 8},
            {"type": "Flatten"},
            {"type": "Dense"},
        ],
    )
    assert "input_dim" in line and "is 5, but the vocabulary has" in line


def test_text_and_audio_keys_belong_to_their_sources(cli, tmp_path):
    from dlcli.config.load import load_config
    from dlcli.errors import ConfigError

    base = {"model": {"layers": [{"type": "Dense"}]}}
    for data, needle in (
        ({"source": "images", "path": "x", "text": {"max_tokens": 10}}, "text: only for text"),
        ({"source": "text", "path": "x", "sampling_rate": 8000}, "only for audio"),
        ({"source": "text", "path": "x", "normalize": "standard"}, "remove data.normalize"),
        ({"source": "digits", "on_bad_file": "skip"}, "only for images, text or audio"),
        (
            {
                "source": "csv",
                "path": "x.csv",
                "target": "y",
                "features": [{"name": "a", "type": "text"}],
                "text": {"output_mode": "int"},
            },
            "cannot sit beside a table's other columns",
        ),
        (
            {
                "source": "csv",
                "path": "x.csv",
                "target": "y",
                "features": [{"name": "a", "type": "text"}, {"name": "b", "type": "text"}],
            },
            "a table holds one text column",
        ),
    ):
        with pytest.raises(ConfigError) as caught:
            load_config({**base, "data": data})
        assert needle in str(caught.value), str(caught.value)
    config = load_config({**base, "data": {"source": "text", "path": "x"}})
    assert config.data.text.output_mode == "int" and config.data.normalize == "none"
    table = {
        "source": "csv",
        "path": "x.csv",
        "target": "y",
        "features": ["a", {"name": "b", "type": "text"}],
    }
    config = load_config({**base, "data": table})
    assert config.data.text.output_mode == "tf_idf" and config.data.text.max_tokens == 2000
