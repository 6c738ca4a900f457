"""Where results go and what a config left out becomes, through the real CLI.

- A closed standard output (`>&-`) is a one-line usage error before any work for the
  commands whose result goes there, and harmless for the others; a full device is exit 1
  whether the output was redirected (`> /dev/full`) or named (`--output /dev/full`).
- A compilation cache folder the user named that cannot be written is one warning line.
- A last Dense layer without an activation outputs logits: the default loss is told so, and
  an explicit cross-entropy that is not is refused with the fix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TINY, deep_update

LOGITS = [{"type": "Dense", "units": 32, "activation": "relu"}, {"type": "Dense", "units": 10}]


def shell(command: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """`command` in bash, `dlcli` being this interpreter's `python -m dlcli`."""
    dlcli = f"{sys.executable} -m dlcli"
    return subprocess.run(
        ["bash", "-c", command.replace("dlcli ", dlcli + " ", 1)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )


@pytest.mark.slow
def test_predict_with_standard_output_closed_says_so_before_any_work(run_copy, tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("\n".join(",".join(["0"] * 64) for _ in range(3)) + "\n")
    result = shell(f"dlcli predict {run_copy} {rows} >&-")
    assert result.returncode == 2, result.stderr
    assert (
        result.stderr.strip()
        == "error: standard output is closed (>&-), so the result would be lost; give --output FILE"
    )
    # With --output the closed stdout is no obstacle.
    result = shell(f"dlcli predict {run_copy} {rows} --output {tmp_path / 'out.csv'} >&-")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.csv").read_text().startswith("prediction")


@pytest.mark.slow
def test_commands_whose_result_is_not_on_stdout_run_with_it_closed(tmp_path, run_copy):
    for command in (
        f"dlcli runs --runs-dir {run_copy.parent} >&-",
        f"dlcli show {run_copy} >&- 2>&-",
        f"dlcli schema --output {tmp_path / 's.json'} >&-",
    ):
        result = shell(command)
        assert result.returncode == 0, (command, result.stderr)
        assert "Traceback" not in result.stderr
    assert json.loads((tmp_path / "s.json").read_text())["title"]
    result = shell(f"dlcli runs --runs-dir {run_copy.parent} --json >&-")
    assert result.returncode == 2 and "standard output is closed" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("how", ["> /dev/full", "--output /dev/full"])
def test_a_full_device_is_exit_1_however_the_output_was_given(how):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    result = shell(f"dlcli schema {how}")
    assert result.returncode == 1, result.stderr
    line = result.stderr.strip()
    assert line.count("\n") == 0 and "No space left on device" in line and "Traceback" not in line


@pytest.mark.slow
def test_an_unwritable_compilation_cache_the_user_chose_is_one_warning(write_config, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    config = write_config({"training": {"epochs": 1}, "runtime": {"backend": "jax"}})
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dlcli",
            "train",
            str(config),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "DLCLI_COMPILE_CACHE": str(blocker / "cache")},
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, result.stderr
    assert str(blocker / "cache") in warnings[0] and "cannot be written" in warnings[0]


@pytest.mark.slow
def test_a_linear_last_layer_gets_a_default_loss_that_reads_logits(cli, write_config, runs_dir):
    config = {
        k: v for k, v in deep_update(TINY, {"model": {"layers": LOGITS}}).items() if k != "compile"
    }
    path = write_config(text=yaml.safe_dump(config))
    result = cli("train", path, "--runs-dir", runs_dir, "--quiet", "--set", "training.epochs=8")
    assert result.exit_code == 0, result.output
    run = Path(result.stdout.strip().splitlines()[-1])
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["compile"]["loss"] == {
        "type": "sparse_categorical_crossentropy",
        "from_logits": True,
    }
    scored = cli("evaluate", run, "--json")
    assert scored.exit_code == 0, scored.output
    loss = json.loads(scored.stdout)["metrics"]["loss"]
    assert loss < 1.0  # on logits read as probabilities the loss stays near ln(10) = 2.3 or worse


@pytest.mark.parametrize(
    "loss, fix",
    [
        ("sparse_categorical_crossentropy", "activation: softmax"),
        ("categorical_crossentropy", "activation: softmax"),
    ],
)
def test_an_explicit_crossentropy_on_logits_without_from_logits_is_refused(
    cli, write_config, loss, fix
):
    path = write_flow_config(write_config, {"model": {"layers": LOGITS}, "compile": {"loss": loss}})
    result = cli("validate", path)
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert line.count("\n") == 0, line
    assert (
        "compile.loss" in line
        and "outputs logits" in line
        and "from_logits: true" in line
        and fix in line
    )
    fixed = write_flow_config(
        write_config,
        {"model": {"layers": LOGITS}, "compile": {"loss": {"type": loss, "from_logits": True}}},
    )
    assert cli("validate", fixed).exit_code == 0


def write_flow_config(write_config, changes: dict) -> Path:
    return write_config(text=yaml.safe_dump(deep_update(TINY, changes), sort_keys=False))


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_the_version_is_one_line(cli, flag):
    from dlcli import __version__

    result = cli(flag)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"dlcli {__version__}\n"
