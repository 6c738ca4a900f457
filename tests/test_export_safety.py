"""`dlcli export` never deletes what the user put there: it replaces a format's folder
only when it can prove the folder is its own earlier copy (exports.json beside it lists the
format and every file in it), refuses anything else with exit 2 before writing a thing, and
builds and swaps copies in temporary folders of its own making.

Exports run on TensorFlow, so every export here runs in a subprocess (as in test_export.py).
"""

from __future__ import annotations

import json

import pytest
from conftest import run_dlcli

pytestmark = pytest.mark.slow


def export(run, *options, cwd=None):
    return run_dlcli("export", run, "--quiet", *options, cwd=cwd, timeout=600)


def tree(folder) -> dict:
    """Every file under `folder` (dot-folders included) with its bytes."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def assert_refused(result, *names):
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    for name in names:
        assert name in result.stderr, (name, result.stderr)


def test_user_files_in_the_format_folders_survive_and_the_export_stops(run_copy, tmp_path):
    out = tmp_path / "out"
    mine = {
        "saved_model/readme.md": b"mine\n",
        "onnx/notes.txt": b"mine\n",
        "keras/other.keras": b"not a model",
    }
    for name, data in mine.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    result = export(run_copy, "--output", out, "-f", "saved_model", "-f", "onnx", "-f", "keras")
    assert_refused(result, *(str(out / name) for name in ("saved_model", "onnx", "keras")))
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3 and all(
        "move your files out of it or choose another --output" in line for line in lines
    )
    assert tree(out) == mine  # nothing deleted, nothing written (no exports.json either)
    assert sorted(p.name for p in out.iterdir()) == ["keras", "onnx", "saved_model"]


def test_leftover_temporary_looking_folders_of_the_user_stay(run_copy, tmp_path):
    out = tmp_path / "out"
    for name in (".onnx.old/keep", ".onnx.building/keep"):
        (out / name).parent.mkdir(parents=True)
        (out / name).write_text("mine\n")
    result = export(run_copy, "--output", out, "-f", "onnx")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / ".onnx.old" / "keep").read_text() == "mine\n"
    assert (out / ".onnx.building" / "keep").read_text() == "mine\n"
    assert (out / "onnx" / "model.onnx").is_file()
    assert sorted(p.name for p in out.iterdir()) == [
        ".onnx.building",
        ".onnx.old",
        "exports.json",
        "onnx",
    ]


def test_output_naming_a_file_is_one_line_and_exit_2(run_copy, tmp_path):
    (tmp_path / "out.txt").write_text("mine\n")
    result = export(run_copy, "--output", "out.txt", "-f", "keras", cwd=tmp_path)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "error: out.txt: --output names a file; give a folder (it is created if missing)"
    )
    assert (tmp_path / "out.txt").read_text() == "mine\n"


@pytest.mark.parametrize("text", ["my own notes\n", '{"formats": "mine"}\n', "[1, 2]\n"])
def test_an_exports_json_that_dlcli_did_not_write_is_left_alone(run_copy, tmp_path, text):
    out = tmp_path / "out"
    out.mkdir()
    (out / "exports.json").write_text(text)
    result = export(run_copy, "--output", out, "-f", "keras")
    assert_refused(result, f"{out / 'exports.json'}: is not a dlcli export record")
    assert len(result.stderr.strip().splitlines()) == 1
    assert tree(out) == {"exports.json": text.encode()}


def test_exporting_again_replaces_its_own_copy_and_keeps_the_other_records(run_copy, tmp_path):
    out = tmp_path / "out"
    assert export(run_copy, "--output", out, "-f", "keras", "-f", "onnx").returncode == 0
    first = json.loads((out / "exports.json").read_text())["formats"]
    assert first["keras"]["files"] == ["model.keras"] and first["onnx"]["files"] == ["model.onnx"]
    result = export(run_copy, "--output", out, "-f", "keras")
    assert result.returncode == 0, result.stderr[-3000:]
    again = json.loads((out / "exports.json").read_text())["formats"]
    assert again["onnx"] == first["onnx"] and again["keras"]["status"] == "ok"
    assert again["keras"]["files"] == ["model.keras"] and (out / "keras" / "model.keras").is_file()
    # an exports.json from before `files` was kept: a folder with only what the format writes is dlcli's
    record = json.loads((out / "exports.json").read_text())
    for entry in record["formats"].values():
        del entry["files"]
    (out / "exports.json").write_text(json.dumps(record))
    result = export(run_copy, "--output", out, "-f", "onnx")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "exports.json").read_text())["formats"]["onnx"]["files"] == [
        "model.onnx"
    ]
    assert sorted(p.name for p in out.iterdir()) == [
        "exports.json",
        "keras",
        "onnx",
    ]  # no temporary folder left


def test_a_user_file_in_the_runs_own_export_folder_stops_the_export(run_copy):
    assert export(run_copy, "-f", "onnx").returncode == 0
    (run_copy / "export" / "onnx" / "notes.txt").write_text("mine\n")
    before = tree(run_copy / "export"), (run_copy / "exports.json").read_bytes()
    result = export(run_copy, "-f", "onnx")
    assert_refused(
        result, f"{run_copy / 'export' / 'onnx'}: holds files dlcli did not write: notes.txt"
    )
    assert "export elsewhere with --output DIR" in result.stderr
    assert (tree(run_copy / "export"), (run_copy / "exports.json").read_bytes()) == before
