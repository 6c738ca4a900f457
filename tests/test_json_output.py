"""`--json` on every command: stdout is exactly one JSON object, logs go to stderr."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import CONFIGS
from sklearn.datasets import load_digits


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, trained_run):
    base = tmp_path_factory.mktemp("json")
    runs = base / "runs"
    runs.mkdir()
    shutil.copytree(trained_run, runs / trained_run.name)
    np.savez(base / "x.npz", x=load_digits().data[:2])
    return base, runs, runs / trained_run.name


COMMANDS = {
    "validate": lambda b, r, run: ["validate", CONFIGS / "digits_mlp.yaml"],
    "evaluate": lambda b, r, run: ["evaluate", run],
    "predict": lambda b, r, run: ["predict", run, b / "x.npz"],
    "runs": lambda b, r, run: ["runs", "--runs-dir", r],
    "show": lambda b, r, run: ["show", run],
    "compare": lambda b, r, run: ["compare", run, run],
    "init": lambda b, r, run: ["init", b / "new.yaml", "--force"],
    "init --list": lambda b, r, run: ["init", "--list"],
    "schema": lambda b, r, run: ["schema"],
    "env": lambda b, r, run: ["env"],
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_json_is_one_object_on_stdout(cli, workspace, name):
    result = cli(*COMMANDS[name](*workspace), "--json")
    assert result.exit_code == 0, result.stderr
    assert isinstance(json.loads(result.stdout), dict)
    assert result.stdout.strip().count("\n") == 0


def test_json_errors_are_one_object_too(cli, workspace):
    result = cli("show", "no-such-run", "--runs-dir", workspace[1], "--json")
    assert result.exit_code == 2
    payload = json.loads(result.stdout)
    assert payload["exit_code"] == 2 and "no-such-run" in payload["error"]
