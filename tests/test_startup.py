"""The commands that do not train start at once: `--help`, `runs`, `show`, `schema` and
`init` (from a template or fitted to a table) import none of TensorFlow, Keras, JAX, Optuna
or onnxruntime, checked in a fresh interpreter that runs the real `dlcli` program.
"""

from __future__ import annotations

import json

import pytest
from conftest import CONFIGS, run_python

HEAVY = ("tensorflow", "keras", "jax", "optuna", "onnxruntime")


def imported_by(*argv: str, cwd) -> tuple[list[str], str]:
    """(heavy modules imported, output) when `dlcli ARGV` runs to its end."""
    code = (
        "import os, sys, runpy\n"
        "def stay(code):\n    raise SystemExit(code)\n"
        "os._exit = stay  # the program ends with os._exit; stay to look at what it imported\n"
        f"os.chdir({str(cwd)!r})\n"
        f"sys.argv = ['dlcli', *{list(argv)!r}]\n"
        "try:\n    runpy.run_module('dlcli', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    return json.loads(
        result.stdout.strip().splitlines()[-1].replace("'", '"')
    ), result.stdout + result.stderr


def fake_run(runs) -> None:
    """A finished run folder as training writes it (what `runs` and `show` read)."""
    folder = runs / "digits-mlp-20261201-120000"
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(
        json.dumps(
            {
                "id": folder.name,
                "name": "digits-mlp",
                "status": "completed",
                "started": "2026-12-01T12:00:00+00:00",
                "ended": "2026-12-01T12:00:05+00:00",
                "duration_s": 5.0,
                "epochs": 2,
                "metric_directions": {"loss": "min"},
            }
        )
    )
    (folder / "metrics.json").write_text(
        json.dumps(
            {
                "train": {"loss": 0.3},
                "val": {"loss": 0.4},
                "test": {"loss": 0.5},
                "best_epoch": 2,
                "epochs_run": 2,
            }
        )
    )
    (folder / "config.yaml").write_text((CONFIGS / "digits_mlp.yaml").read_text())
    (folder / "history.csv").write_text("epoch,loss,val_loss\n1,0.5,0.6\n2,0.3,0.4\n")


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv, shows",
    [
        (["--help"], "train"),
        (["runs", "--runs-dir", "runs"], "digits-mlp"),
        (["show", "latest", "--runs-dir", "runs"], "digits-mlp"),
        (["schema", "--output", "schema.json"], "wrote"),
        (["init", "--list"], "mlp"),
        (
            [
                "init",
                "--from-data",
                str(CONFIGS / "data" / "wine.csv"),
                "--target",
                "cultivar",
                "wine.yaml",
            ],
            "wine.yaml",
        ),
    ],
)
def test_commands_that_do_not_train_import_no_backend(tmp_path, argv, shows):
    fake_run(tmp_path / "runs")
    heavy, output = imported_by(*argv, cwd=tmp_path)
    assert heavy == [], output
    assert shows in output
