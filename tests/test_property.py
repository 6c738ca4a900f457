"""Property: whatever the config, `dlcli validate` answers 0 or 2 and never a traceback."""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import uuid
from pathlib import Path

import pytest
import yaml
from conftest import TINY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "",
            "adam",
            "Dense",
            "relu",
            "softmax",
            "mse",
            "val_loss",
            "digits",
            "csv",
            "auto",
            "../x",
            "Lambda",
        ]
    ),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
KEY_PATHS = [
    ("name",),
    ("seed",),
    ("data",),
    ("data", "source"),
    ("data", "validation_split"),
    ("data", "test_split"),
    ("data", "normalize"),
    ("data", "path"),
    ("data", "target"),
    ("model",),
    ("model", "layers"),
    ("model", "layers", 0),
    ("model", "layers", 0, "units"),
    ("model", "layers", 0, "activation"),
    ("model", "layers", 1, "type"),
    ("model", "layers", 1, "units"),
    ("model", "input_shape"),
    ("compile", "optimizer"),
    ("compile", "loss"),
    ("compile", "metrics"),
    ("training", "epochs"),
    ("training", "batch_size"),
    ("training", "early_stopping"),
    ("training", "callbacks"),
    ("runtime", "backend"),
    ("runtime", "precision"),
    ("runtime", "jit_compile"),
    ("output",),
    ("unknown_key",),
]


def _mutate(config: dict, path: tuple, value) -> dict:
    config = copy.deepcopy(config)
    node = config
    for part in path[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(part, {})
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return config
    if (
        isinstance(node, dict)
        or isinstance(node, list)
        and isinstance(path[-1], int)
        and path[-1] < len(node)
    ):
        node[path[-1]] = value
    return config


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(mutations=st.lists(st.tuples(st.sampled_from(KEY_PATHS), values), min_size=1, max_size=3))
@pytest.mark.slow
def test_mutated_configs_exit_0_or_2_without_traceback(cli, tmp_path, mutations):
    config = TINY
    for path, value in mutations:
        config = _mutate(config, path, value)
    path = tmp_path / "mutated.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    result = cli("validate", path)
    assert result.exit_code in (0, 2), result.stderr
    assert "Traceback" not in result.stderr
    if result.exit_code == 2:
        assert result.stderr.startswith("error: ")


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=200))
@pytest.mark.slow
def test_arbitrary_text_as_a_config_exits_2_without_traceback(cli, tmp_path, text):
    path = tmp_path / "random.yaml"
    path.write_text(text, encoding="utf-8")
    result = cli("validate", path)
    assert result.exit_code == 2, result.stdout
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: ")


# --------------------------------------------------------------------------------------
# Property: whatever is done to a run folder (links planted, files truncated, retyped,
# replaced by FIFOs or folders, deleted), every command answers with an exit code and one
# line, within a minute, and nothing outside the run folder changes.

PARTS = [
    "run.json",
    "config.yaml",
    "metrics.json",
    "history.csv",
    "labels.json",
    "evaluations.jsonl",
    "model.keras",
    "summary.txt",
    "checkpoints",
    "checkpoints/state.json",
    "CHECKPOINT",
    "tensorboard",
]
TAMPERINGS = [
    "link_dir",
    "link_file",
    "truncate",
    "retype_list",
    "retype_number",
    "retype_string",
    "garbage",
    "delete",
    "fifo",
    "folder",
    "huge_json",
]
COMMANDS = ["evaluate", "show", "runs", "predict", "resume", "compare"]


def _tamper(path: Path, how: str, outside: Path) -> None:
    if path.parent.is_symlink() or not path.parent.is_dir():
        return  # an earlier change replaced the folder: nothing to reach in it
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        data = (
            path.read_bytes()
            if how == "truncate" and path.is_file() and not path.is_symlink()
            else b""
        )
        path.unlink()
        if how == "truncate":
            path.write_bytes(data[: len(data) // 2])
            return
    content = {
        "retype_list": b"[1, 2, 3]\n",
        "retype_number": b"42\n",
        "retype_string": b'"run"\n',
        "garbage": bytes(range(256)) * 4,
        "truncate": b"",
        "huge_json": b"[" * 100_000,
    }
    if how == "link_dir":
        path.symlink_to(outside, target_is_directory=True)
    elif how == "link_file":
        path.symlink_to(outside / "keep.txt")
    elif how == "fifo":
        os.mkfifo(path)
    elif how == "folder":
        path.mkdir()
    elif how in content:
        path.write_bytes(content[how])


def _outside_state(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): (
            p.is_symlink(),
            p.read_bytes() if p.is_file() else None,
            p.lstat().st_mtime_ns,
        )
        for p in sorted(folder.rglob("*"))
    }


class _Hung(Exception):
    pass


def _alarm(signum, frame):
    raise _Hung()


@settings(
    max_examples=int(os.environ.get("DLCLI_TAMPER_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    changes=st.lists(
        st.tuples(st.sampled_from(PARTS), st.sampled_from(TAMPERINGS)), min_size=1, max_size=3
    ),
    command=st.sampled_from(COMMANDS),
)
@pytest.mark.slow
def test_tampered_run_folders_never_escape_hang_or_trace(
    cli, trained_run, tmp_path, changes, command
):
    base = tmp_path / uuid.uuid4().hex
    outside, runs = base / "outside", base / "runs"
    (outside / "sub").mkdir(parents=True)
    (outside / "keep.txt").write_text("mine\n")
    (outside / "epoch-0001.keras").write_text("mine\n")
    run = runs / trained_run.name
    shutil.copytree(trained_run, run)
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    for part, how in changes:
        name = f"checkpoints/{state['checkpoint']}" if part == "CHECKPOINT" else part
        _tamper(run / name, how, outside)
    features = base / "features.csv"
    features.write_text("\n".join(",".join(["1.0"] * 64) for _ in range(3)) + "\n")
    before = _outside_state(outside)
    args = {
        "evaluate": ["evaluate", run, "--json"],
        "show": ["show", run, "--json"],
        "runs": ["runs", "--runs-dir", runs],
        "predict": ["predict", run, features],
        "compare": ["compare", run, run, "--json"],
        "resume": ["train", "--resume", run, "--set", "training.epochs=11", "--quiet"],
    }[command]
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(60)
    try:
        result = cli(*args)
    except _Hung:
        pytest.fail(f"{command} hung on {changes}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert result.exit_code in (0, 1, 2), (changes, result.exit_code, result.stderr)
    assert "Traceback" not in result.stderr, (changes, result.stderr)
    if result.exit_code:
        assert result.stderr.startswith("error: "), (changes, result.stderr)
    assert _outside_state(outside) == before, changes
