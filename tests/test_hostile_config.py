"""Hostile or unlucky configs, through the real CLI: each is exit 2 with one `error:` line
per problem naming `file:line`, the dotted path and the fix; never a traceback, a hang or
unbounded memory; and `train` leaves no run folder.

- callback file names that reach outside the run folder by a format field or a non-text value;
- what the config file is (a FIFO, /dev/zero, 10 MB) and what its YAML expands to (an alias
  bomb, 10,000 levels of nesting), and keys given twice in one mapping;
- numbers: `epochs: true` and `epochs: "10"` are not numbers, a learning rate is a finite
  positive number (and `1` is one);
- a `monitor:` that training never logs (did-you-mean), and run names too long for a folder.

Config cases run in-process (`cli`); those that hung or ate memory before run the installed
command (`run_dlcli`) under a timeout.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
import yaml
from conftest import TINY, run_dlcli

from dlcli.config.text import MAX_BYTES, MAX_DEPTH, MAX_VALUES
from dlcli.model.checks import path_problem

# --------------------------------------------------------------------------------------
# helpers


def line_of(path: Path, pattern: str, nth: int = 0) -> int:
    """The 1-based line of the nth line of `path` matching the regex `pattern`."""
    hits = [
        i
        for i, text in enumerate(Path(path).read_text().splitlines(), start=1)
        if re.search(pattern, text)
    ]
    assert len(hits) > nth, f"{pattern!r} not found in {path}"
    return hits[nth]


def check_refused(
    output: str, code: int, *needles: str, where: str | None = None, problems: int = 1
) -> list[str]:
    """Exit 2, no traceback, `problems` lines each starting `error:`, one of them opening
    with `where`, every needle in the text."""
    context = f"\nexit: {code}\noutput: {output!r}"
    assert "Traceback" not in output, context
    assert code == 2, context
    lines = [line for line in output.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == problems, f"expected {problems} error line(s)" + context
    if where is not None:
        assert any(line.startswith((f"error: {where}:", f"error: {where} ")) for line in lines), (
            f"expected an error line starting with {where!r}" + context
        )
    for needle in needles:
        assert needle in output, f"expected {needle!r}" + context
    return lines


def assert_no_run_folder(runs_dir: Path) -> None:
    left = sorted(p.name for p in runs_dir.iterdir()) if runs_dir.exists() else []
    assert left == [], f"a config error left {left} in {runs_dir}"


@pytest.fixture
def refused(cli, runs_dir):
    """refused(config, *needles, where=..., problems=1): `validate` and `train` (in-process)
    both exit 2 with the message, and no run folder appears."""

    def check(
        config: Path, *needles: str, where: str | None = None, problems: int = 1
    ) -> list[str]:
        lines = []
        for args in (["validate", config], ["train", config, "--runs-dir", runs_dir]):
            result = cli(*args)
            lines = check_refused(
                result.stderr, result.exit_code, *needles, where=where, problems=problems
            )
            assert result.stdout.strip() == "", "errors go to stderr" + result.stdout
            assert_no_run_folder(runs_dir)
        return lines

    return check


@pytest.fixture
def refused_subprocess(runs_dir):
    """Like `refused`, through `python -m dlcli` with a timeout: a hang or a memory blow-up
    fails the test instead of stalling the suite."""

    def check(config: Path, *needles: str, where: str | None = None, timeout: float = 30) -> None:
        for args in (["validate", config], ["train", config, "--runs-dir", runs_dir]):
            started = time.perf_counter()
            result = run_dlcli(*args, timeout=timeout)
            check_refused(result.stderr, result.returncode, *needles, where=where)
            assert time.perf_counter() - started < timeout
            assert_no_run_folder(runs_dir)

    return check


def tiny_text(**sections: str) -> str:
    """TINY as YAML text, with whole sections replaced by hand-written text."""
    data = {k: v for k, v in TINY.items() if k not in sections}
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
    return text + "".join(sections.values())


# --------------------------------------------------------------------------------------
# 1. callback file names stay inside the run folder


def test_a_format_field_that_renders_to_dot_dot_is_refused(refused, write_config):
    filepath = "{epoch!s:.>2.0}/{epoch!s:.>2.0}/outside/x-{epoch}.keras"
    config = write_config(
        text=tiny_text(
            training=(
                "training:\n"
                "  epochs: 1\n"
                "  callbacks:\n"
                "    - type: ModelCheckpoint\n"
                f'      filepath: "{filepath}"\n'
            )
        )
    )
    line = line_of(config, "filepath:")
    refused(
        config,
        "training.callbacks[0].filepath",
        "not allowed",
        "{epoch:02d}",
        where=f"{config}:{line}",
    )


def test_a_bytes_file_name_is_refused(refused, write_config):
    config = write_config(
        text=tiny_text(
            training=(
                "training:\n"
                "  epochs: 1\n"
                "  callbacks:\n"
                "    - type: CSVLogger\n"
                "      filename: !!binary aGVsbG8=\n"
            )
        )
    )
    line = line_of(config, "filename:")
    refused(
        config,
        "training.callbacks[0].filename",
        "must be a file name in quotes, not bytes",
        "such as 'log.csv'",
        where=f"{config}:{line}",
    )


@pytest.mark.parametrize(
    "value, words",
    [
        ("{epoch!r}.keras", "not allowed"),
        ("{epoch.real}.keras", "not allowed"),
        ("{epoch:>9}.keras", "not allowed"),
        ("{epoch:999999999d}.keras", "not allowed"),
        ("{}.keras", "not allowed"),
        ("x-{.keras", "broken"),
        ("{val_loss:02d}.keras", "cannot be filled in"),
        ("../x.keras", "leaves the run folder"),
        ("/tmp/x.keras", "leaves the run folder"),
        ("", "names no file"),
        (None, "not null"),
        (3, "not int"),
    ],
)
def test_unsafe_file_names_are_named_with_a_fix(value, words):
    message = path_problem("filepath", value)
    assert message is not None and words in message and "filepath" in message, message


@pytest.mark.parametrize(
    "value",
    [
        "log.csv",
        "ckpt/model-{epoch:02d}-{val_loss:.4f}.keras",
        "a{{b}}.csv",
        "m-{epoch}-{batch:03d}.weights.h5",
        "logs/",
    ],
)
def test_plain_file_names_and_number_fields_pass(value):
    assert path_problem("filepath", value) is None


def test_a_checkpoint_with_number_fields_validates(cli, write_config):
    config = write_config(
        text=tiny_text(
            training=(
                "training:\n"
                "  epochs: 1\n"
                "  callbacks:\n"
                '    - {type: ModelCheckpoint, filepath: "ckpt-{epoch:02d}-{val_loss:.3f}.keras"}\n'
                "    - {type: CSVLogger, filename: log.csv}\n"
            )
        )
    )
    result = cli("validate", config, "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    report = json.loads(result.stdout)
    assert report["valid"] is True
    # The names are kept as written, for Keras to fill in at each epoch: not rendered, not refused.
    assert report["config"]["training"]["callbacks"] == [
        {"type": "ModelCheckpoint", "filepath": "ckpt-{epoch:02d}-{val_loss:.3f}.keras"},
        {"type": "CSVLogger", "filename": "log.csv"},
    ]


# --------------------------------------------------------------------------------------
# 2. what the config file is, and what its YAML expands to


@pytest.mark.slow
def test_dev_zero_as_the_config_is_refused_at_once(refused_subprocess, tmp_path):
    refused_subprocess(Path("/dev/zero"), "not a regular file", where="/dev/zero")


@pytest.mark.slow
def test_a_fifo_as_the_config_is_refused_without_blocking(refused_subprocess, tmp_path):
    fifo = tmp_path / "cfg.yaml"
    os.mkfifo(fifo)
    refused_subprocess(fifo, "not a regular file", where=str(fifo))


def test_a_ten_megabyte_config_is_refused_by_its_size(refused, write_config):
    config = write_config(text=tiny_text() + "# " + "x" * (10 * 1024 * 1024) + "\n")
    started = time.perf_counter()
    refused(
        config,
        f"over dlcli's limit of {MAX_BYTES:,} bytes",
        "data goes in a data file",
        where=str(config),
    )
    assert time.perf_counter() - started < 5


@pytest.mark.slow
def test_a_yaml_alias_bomb_is_refused_in_bounded_time(refused_subprocess, write_config):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    config = write_config(text=tiny_text() + "\n".join(lines) + "\n")
    refused_subprocess(
        config,
        f"holds over {MAX_VALUES:,} values",
        "anchors and aliases",
        where=f"{config}:1",
        timeout=30,
    )


@pytest.mark.slow
def test_a_config_of_too_many_values_is_refused_early(refused, write_config):
    config = write_config(
        text=tiny_text() + "extra: [" + ", ".join(["1"] * (MAX_VALUES + 10)) + "]\n"
    )
    started = time.perf_counter()
    refused(
        config, f"holds over {MAX_VALUES:,} values", where=f"{config}:{line_of(config, '^extra:')}"
    )
    assert time.perf_counter() - started < 10  # 4 reads on 2 busy cores; under 1 s each alone


@pytest.mark.slow
def test_yaml_nested_ten_thousand_deep_is_refused(refused, write_config):
    config = write_config(text=tiny_text() + "deep: " + "[" * 10_000 + "]" * 10_000 + "\n")
    refused(
        config,
        "nested too deeply",
        f"over {MAX_DEPTH} levels",
        where=f"{config}:{line_of(config, '^deep:')}",
    )


def test_aliases_and_merge_keys_within_bounds_still_work(cli, write_config):
    config = write_config(
        text=tiny_text(
            model=(
                "model:\n"
                "  layers:\n"
                "    - &hidden {type: Dense, units: 32, activation: relu}\n"
                "    - *hidden\n"
                "    - <<: *hidden\n"
                "      units: 10\n"
                "      activation: softmax\n"
            )
        )
    )
    result = cli("validate", config, "--json")
    assert result.exit_code == 0, result.output
    layers = json.loads(result.stdout)["config"]["model"]["layers"]
    assert [layer.get("units") for layer in layers] == [32, 32, 10]


# --------------------------------------------------------------------------------------
# 3. a key given twice in one mapping


def test_a_key_given_twice_names_both_lines(refused, write_config):
    config = write_config(
        text=tiny_text(training=("training:\n  epochs: 3\n  batch_size: 64\n  epochs: 5\n"))
    )
    first, second = line_of(config, "epochs:"), line_of(config, "epochs:", 1)
    lines = refused(config, where=f"{config}:{second}")
    assert lines == [
        (
            f"error: {config}:{second}: training: key 'epochs' appears twice "
            f"(lines {first} and {second}); keep one"
        )
    ]


def test_every_key_given_twice_is_reported(refused, write_config):
    config = write_config(text="name: a\n" + tiny_text() + "data: {source: iris, source: wine}\n")
    refused(config, "key 'name' appears twice", "data: key 'source' appears twice", problems=3)


# --------------------------------------------------------------------------------------
# 4. numbers are numbers


@pytest.mark.parametrize(
    "changes, path, words",
    [
        (
            {"training": {"epochs": True}},
            "training.epochs",
            "expected an integer such as 10, got True; true/false is not a number",
        ),
        (
            {"training": {"epochs": "10"}},
            "training.epochs",
            "got '10'; write the number without quotes",
        ),
        (
            {"training": {"batch_size": "64"}},
            "training.batch_size",
            "write the number without quotes",
        ),
        ({"training": {"epochs": 2.0}}, "training.epochs", "got 2.0; write 2"),
        ({"seed": True}, "seed", "true/false is not a number"),
        (
            {"training": {"early_stopping": {"patience": "3"}}},
            "training.early_stopping.patience",
            "without quotes",
        ),
        (
            {"data": {"validation_split": "0.2"}},
            "data.validation_split",
            "expected a number such as 0.5",
        ),
        (
            {"training": {"early_stopping": {"min_delta": True}}},
            "training.early_stopping.min_delta",
            "not a number",
        ),
        (
            {"training": {"reduce_lr_on_plateau": {"min_lr": float("inf")}}},
            "training.reduce_lr_on_plateau.min_lr",
            "expected a finite number",
        ),
        (
            {"training": {"shuffle": "false"}},
            "training.shuffle",
            "write true or false without quotes",
        ),
        ({"model": {"input_shape": [True]}}, "model.input_shape[0]", "not a number"),
    ],
)
def test_bools_and_quoted_numbers_are_not_numbers(refused, write_flow, changes, path, words):
    config = write_flow(changes)
    key = path.split(".")[-1].split("[")[0]
    line = line_of(config, rf"\b{key}:")
    refused(config, f"{path}: expected", words, where=f"{config}:{line}")


def test_an_int_is_a_number_where_a_float_is_taken(cli, write_flow):
    config = write_flow(
        {
            "data": {"validation_split": 0},
            "compile": {"optimizer": {"type": "adam", "learning_rate": 1}},
            "training": {"reduce_lr_on_plateau": {"monitor": "loss", "min_lr": 0}},
        }
    )
    result = cli("validate", config, "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    report = json.loads(result.stdout)
    resolved = report["config"]
    taken = {
        "data.validation_split": resolved["data"]["validation_split"],
        "compile.optimizer.learning_rate": resolved["compile"]["optimizer"]["learning_rate"],
        "training.reduce_lr_on_plateau.min_lr": resolved["training"]["reduce_lr_on_plateau"][
            "min_lr"
        ],
    }
    assert taken == {
        "data.validation_split": 0,
        "compile.optimizer.learning_rate": 1,
        "training.reduce_lr_on_plateau.min_lr": 0,
    }, taken
    assert all(type(value) in (int, float) for value in taken.values()), (
        taken
    )  # numbers, not text or bools
    assert report["data"]["samples"] == {
        "train": 1437,
        "test": 360,
    }  # validation_split 0: no val split


@pytest.mark.parametrize(
    "value, words",
    [
        ("-1.0", "above 0"),
        ("0", "above 0"),
        (".nan", "a finite number"),
        (".inf", "a finite number"),
        ("true", "a number such as 0.001"),
        ("'0.1'", "a number such as 0.001"),
    ],
)
def test_a_learning_rate_is_a_finite_positive_number(refused, write_config, value, words):
    config = write_config(
        text=tiny_text(
            compile=(
                "compile:\n"
                "  optimizer:\n"
                "    type: adam\n"
                f"    learning_rate: {value}\n"
                "  loss: sparse_categorical_crossentropy\n"
            )
        )
    )
    refused(
        config,
        "compile.optimizer.learning_rate: learning_rate must be",
        words,
        where=f"{config}:{line_of(config, 'learning_rate:')}",
    )


def test_an_optimizers_other_floats_refuse_text(refused, write_config):
    config = write_config(
        text=tiny_text(compile=("compile:\n  optimizer: {type: sgd, momentum: 'high'}\n"))
    )
    refused(
        config,
        "compile.optimizer.momentum: momentum must be a number such as 0.0",
        where=f"{config}:{line_of(config, 'momentum')}",
    )


# --------------------------------------------------------------------------------------
# 5. a monitor that training never logs


@pytest.mark.parametrize("section", ["early_stopping", "reduce_lr_on_plateau"])
def test_a_misspelt_monitor_gets_a_did_you_mean(refused, write_flow, section):
    config = write_flow({"training": {section: {"monitor": "val_acuracy"}}})
    refused(
        config,
        f"training.{section}.monitor: monitors 'val_acuracy', which training does not log",
        "(did you mean 'val_accuracy'?)",
        "val_loss",
        where=f"{config}:{line_of(config, 'val_acuracy')}",
    )


def test_a_callbacks_monitor_is_checked_too(refused, write_config):
    config = write_config(
        text=tiny_text(
            training=(
                "training:\n"
                "  epochs: 1\n"
                "  callbacks:\n"
                "    - {type: ModelCheckpoint, filepath: best.keras, monitor: val_los}\n"
            )
        )
    )
    refused(
        config,
        "training.callbacks[0].monitor",
        "(did you mean 'val_loss'?)",
        where=f"{config}:{line_of(config, 'val_los')}",
    )


def test_monitors_follow_the_compiled_metrics_logged_names(cli, write_flow):
    config = write_flow(
        {
            "compile": {
                "metrics": ["acc", {"type": "SparseTopKCategoricalAccuracy", "k": 2}, "mae"]
            },
            "training": {
                "early_stopping": {"monitor": "val_sparse_top_k_categorical_accuracy"},
                "reduce_lr_on_plateau": {"monitor": "val_acc"},
                "callbacks": [
                    {"type": "CSVLogger", "filename": "log.csv"},
                    {"type": "ModelCheckpoint", "filepath": "b.keras", "monitor": "mae"},
                ],
            },
        }
    )
    result = cli("validate", config, "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    training = json.loads(result.stdout)["config"]["training"]
    assert [
        training["early_stopping"]["monitor"],
        training["reduce_lr_on_plateau"]["monitor"],
        training["callbacks"][1]["monitor"],
    ] == ["val_sparse_top_k_categorical_accuracy", "val_acc", "mae"]
    # The names a monitor may take are the compiled metrics' logged names: 'acc' and 'mae' as
    # written, the class by its snake_case name, each with `val_`; a monitor outside them is refused.
    wrong = write_flow(
        {
            "compile": {
                "metrics": ["acc", {"type": "SparseTopKCategoricalAccuracy", "k": 2}, "mae"]
            },
            "training": {"early_stopping": {"monitor": "accuracy"}},
        },
        name="wrong.yaml",
    )
    refused = cli("validate", wrong)
    assert refused.exit_code == 2, refused.output
    assert (
        "monitor one of: loss, acc, sparse_top_k_categorical_accuracy, mae, val_loss, val_acc, "
        "val_sparse_top_k_categorical_accuracy, val_mae, learning_rate"
    ) in refused.stderr, refused.stderr


def test_a_val_monitor_without_validation_data_is_refused(refused, write_flow):
    config = write_flow(
        {
            "data": {"validation_split": 0},
            "training": {"early_stopping": {"monitor": "val_accuracy"}},
        }
    )
    refused(config, "training.early_stopping.monitor", "validation_split is 0")


# --------------------------------------------------------------------------------------
# 6. run names fit a folder name


def test_a_three_hundred_character_run_name_is_refused(refused, write_flow):
    config = write_flow({"name": "n" * 300})
    refused(
        config,
        "name: the run name has 300 characters; shorten it to at most 200",
        where=f"{config}:{line_of(config, '^name:')}",
    )


def test_a_long_file_stem_is_cut_to_a_run_name(cli, write_flow):
    config = write_flow({"name": None}, name="s" * 250 + ".yaml")
    result = cli("validate", config, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["config"]["name"] == "s" * 200


def test_callbacks_keras_refuses_to_build_are_found_by_validate(cli, write_config, tmp_path):
    """A ModelCheckpoint without `.keras` and a CSVLogger without a file name passed validate
    and failed at train time, leaving a failed run folder."""
    config = write_config(
        {
            "training": {
                "callbacks": [
                    {"type": "ModelCheckpoint", "filepath": "ckpt/model-{epoch:02d}"},
                    {"type": "CSVLogger"},
                ]
            }
        }
    )
    for command in ("validate", "train"):
        result = (
            cli(command, config, "--runs-dir", tmp_path / "runs")
            if command == "train"
            else cli(command, config)
        )
        assert result.exit_code == 2, result.stderr
        lines = result.stderr.splitlines()
        assert any(
            ":24: training.callbacks[0]: ModelCheckpoint" in line
            and "must end in `.keras`" in line
            and "filepath=ckpt/model-{epoch:02d}" in line
            for line in lines
        ), result.stderr
        assert any(
            "training.callbacks[1]: CSVLogger" in line and "filename" in line for line in lines
        ), result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()
