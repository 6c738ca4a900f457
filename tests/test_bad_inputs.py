"""Every bad input, through the real CLI: exit 2, one clear `error:` line per problem on
stderr naming the file (`path:LINE` where there is a line) and the problem, no traceback,
and no run folder left behind.

Most cases run in-process (`cli`), and config cases run both `validate` and
`train --runs-dir` so that the "no run folder" promise is checked on every one of them.
A few end-to-end checks run the installed command in a subprocess (`run_dlcli`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import deep_update, run_dlcli

# --------------------------------------------------------------------------------------
# helpers

_BASETEMP: list[str] = []


@pytest.fixture(autouse=True)
def _remember_basetemp(tmp_path_factory):
    _BASETEMP[:] = [str(tmp_path_factory.getbasetemp())]


def _plain(text: str) -> str:
    """Text with pytest's temporary folders masked, so that a needle such as 'empty'
    cannot match the test's own folder name (test_empty_config0) instead of the message."""
    return re.sub(re.escape(_BASETEMP[0]) + r"/[^/\s:]+", "<tmp>", text) if _BASETEMP else text


def line_of(path: Path, pattern: str, nth: int = 0) -> int:
    """The 1-based line of the nth line of `path` matching the regex `pattern`."""
    hits = [
        i
        for i, text in enumerate(Path(path).read_text().splitlines(), start=1)
        if re.search(pattern, text)
    ]
    assert len(hits) > nth, f"{pattern!r} not found in {path}:\n{Path(path).read_text()}"
    return hits[nth]


def show(result, args=()) -> str:
    return f"\n$ dlcli {' '.join(map(str, args))}\nexit: {result.exit_code}\nstdout: {result.stdout!r}\nstderr: {result.stderr!r}"


def assert_usage_error(
    result, *needles: str, where: str | None = None, problems: int = 1, args=()
) -> list[str]:
    """Exit 2, no traceback, empty stdout, `problems` lines on stderr each starting `error:`.

    `where` (such as `/tmp/x/cfg.yaml:12`) must open one of the lines, followed by ':'
    or a space; each needle must be in stderr. Returns the error lines.
    """
    context = show(result, args)
    assert "Traceback" not in result.stdout + result.stderr, context
    assert result.exit_code == 2, context
    assert result.stdout.strip() == "", "errors go to stderr, stdout stays empty" + context
    lines = result.stderr.strip().splitlines()
    assert len(lines) == problems, f"expected {problems} error line(s)" + context
    assert all(line.startswith("error: ") for line in lines), context
    if where is not None:
        assert any(line.startswith((f"error: {where}:", f"error: {where} ")) for line in lines), (
            f"expected an error line that starts with {where!r}" + context
        )
    for needle in needles:
        assert _plain(needle) in _plain(result.stderr), (
            f"expected {needle!r} in the message" + context
        )
    return lines


def assert_no_run_folder(runs_dir: Path) -> None:
    """Nothing under the runs dir (an empty runs dir is tolerated, a run folder is not)."""
    if runs_dir.exists():
        left = sorted(p.name for p in runs_dir.iterdir())
        assert left == [], f"a config error left {left} in {runs_dir}"


@pytest.fixture
def config_error(cli, runs_dir):
    """config_error(path, *needles, where=..., problems=1, extra=()): both `validate` and
    `train --runs-dir` exit 2 with the same message, and no run folder appears."""

    def check(
        config: Path, *needles: str, where: str | None = None, problems: int = 1, extra=()
    ) -> list[str]:
        lines = None
        for args in (
            ["validate", config, *extra],
            ["train", config, *extra, "--runs-dir", runs_dir],
        ):
            result = cli(*args)
            lines = assert_usage_error(result, *needles, where=where, problems=problems, args=args)
            assert_no_run_folder(runs_dir)
        return lines

    return check


def layers(*specs) -> dict:
    return {"model": {"layers": list(specs)}}


HIDDEN = {"type": "Dense", "units": 32, "activation": "relu"}
OUTPUT = {"type": "Dense", "units": 10, "activation": "softmax"}

# A small 3-class CSV/NPZ problem.
THREE_CLASS_MODEL = layers(
    {"type": "Dense", "units": 8, "activation": "relu"},
    {"type": "Dense", "units": 3, "activation": "softmax"},
)


def csv_rows(n: int = 30) -> list[str]:
    rng = np.random.default_rng(0)
    return ["a,b,label"] + [f"{rng.normal():.4f},{rng.normal():.4f},{i % 3}" for i in range(n)]


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n")
    return path


def csv_changes(path: Path, **data) -> dict:
    return deep_update(
        THREE_CLASS_MODEL,
        {
            "data": {
                "source": "csv",
                "path": str(path),
                "target": "label",
                "validation_split": 0.2,
                "test_split": 0.2,
                **data,
            }
        },
    )


def npz_changes(path: Path) -> dict:
    return deep_update(
        THREE_CLASS_MODEL,
        {
            "data": {
                "source": "npz",
                "path": str(path),
                "validation_split": 0.2,
                "test_split": 0.2,
            }
        },
    )


# --------------------------------------------------------------------------------------
# the YAML file itself


def test_yaml_syntax_error_names_file_and_line(config_error, write_config):
    text = (
        "name: tiny\n"
        "data:\n"
        "  source: digits: oops\n"  # line 3: a mapping value where none is allowed
        "model:\n"
        "  layers:\n"
        "    - {type: Dense, units: 10, activation: softmax}\n"
    )
    config = write_config(text=text)
    config_error(config, "invalid YAML", where=f"{config}:3")


@pytest.mark.parametrize("text", ["", "# only a comment\n"], ids=["empty", "comment-only"])
def test_empty_config_is_refused(config_error, write_config, text):
    config = write_config(text=text)
    config_error(config, "empty", where=str(config))


@pytest.mark.parametrize("text", ["- data\n- model\n", "just a string\n"], ids=["list", "scalar"])
def test_config_that_is_not_a_mapping_is_refused(config_error, write_config, text):
    config = write_config(text=text)
    config_error(config, "must be a mapping", where=str(config))


def test_missing_config_file(config_error, tmp_path):
    missing = tmp_path / "no_such_config.yaml"
    config_error(missing, "no such file", where=str(missing))


@pytest.mark.parametrize(
    "tag", ["!!python/object/apply:os.system", "!!python/object/new:os.system"]
)
def test_python_tags_are_refused_and_never_run(config_error, write_config, tmp_path, tag):
    marker = tmp_path / "pwned"
    config = write_config(
        text=(
            f"name: {tag} ['touch {marker}']\n"
            "data: {source: digits}\n"
            "model:\n"
            "  layers:\n"
            "    - {type: Dense, units: 10, activation: softmax}\n"
        )
    )
    config_error(config, "python/object", where=f"{config}:1")
    assert not marker.exists(), "the YAML tag ran a command"


# --------------------------------------------------------------------------------------
# unknown keys


def test_unknown_top_level_key(config_error, write_config):
    config = write_config({"trainin": {"epochs": 2}})
    config_error(
        config,
        "unknown key 'trainin'",
        "did you mean 'training'",
        where=f"{config}:{line_of(config, r'^trainin:')}",
    )


def test_unknown_key_in_a_layer_did_you_mean(config_error, write_flow):
    # The spec's own example: `configs/x.yaml:14: model.layers[1]: unknown key 'unit' (did you mean 'units'?)`
    config = write_flow(layers(HIDDEN, {"type": "Dense", "unit": 10, "activation": "softmax"}))
    config_error(
        config,
        "model.layers[1]",
        "unknown key 'unit'",
        "did you mean 'units'",
        where=f"{config}:{line_of(config, r'unit: 10')}",
    )


def test_unknown_key_in_a_block_style_layer_points_at_its_own_line(config_error, write_config):
    config = write_config(layers(HIDDEN, {"type": "Dense", "activation": "softmax", "unit": 10}))
    line = line_of(config, r"^\s+unit: 10")
    config_error(config, "unknown key 'unit'", "did you mean 'units'", where=f"{config}:{line}")


def test_unknown_nested_key_did_you_mean(config_error, write_config):
    config = write_config({"training": {"early_stoping": {"patience": 2}}})
    config_error(
        config,
        "unknown key 'early_stoping'",
        "did you mean 'early_stopping'",
        where=f"{config}:{line_of(config, r'early_stoping:')}",
    )


# --------------------------------------------------------------------------------------
# several problems at once


def test_three_schema_mistakes_give_three_error_lines(config_error, write_config):
    config = write_config(
        {"trainin": 1, "data": {"validation_split": 1.5}, "training": {"epochs": 0}}
    )
    lines = config_error(config, "trainin", "validation_split", "epochs", problems=3)
    expected = {
        line_of(config, r"^trainin:"),
        line_of(config, r"validation_split:"),
        line_of(config, r"epochs:"),
    }
    assert {
        int(re.match(rf"error: {re.escape(str(config))}:(\d+):", line).group(1)) for line in lines
    } == expected


def test_three_keras_name_mistakes_give_three_error_lines(config_error, write_flow):
    config = write_flow(
        {
            **layers({"type": "Dens", "units": 32}, OUTPUT),
            "compile": {"optimizer": "adamm", "metrics": ["acuracy"]},
        }
    )
    config_error(
        config,
        "unknown layer 'Dens'",
        "unknown optimizer 'adamm'",
        "unknown metric 'acuracy'",
        problems=3,
    )


def test_schema_and_keras_level_mistakes_are_reported_together(config_error, write_flow):
    # Two unknown keys (one in a layer, one in training) and a bad epochs: every problem
    # found is reported, not only those of the first stage that fails.
    config = write_flow(
        {
            **layers(HIDDEN, {"type": "Dense", "unit": 10, "activation": "softmax"}),
            "training": {"epochs": 0, "early_stoping": {"patience": 2}},
        }
    )
    config_error(
        config, "unknown key 'unit'", "unknown key 'early_stoping'", "training.epochs", problems=3
    )


# --------------------------------------------------------------------------------------
# wrong types and values


@pytest.mark.parametrize(
    ("changes", "key", "needles"),
    [
        ({"training": {"epochs": 0}}, "epochs", ["training.epochs", "greater than 0", "got 0"]),
        ({"training": {"epochs": -1}}, "epochs", ["training.epochs", "got -1"]),
        (
            {"training": {"batch_size": "abc"}},
            "batch_size",
            ["training.batch_size", "integer", "'abc'"],
        ),
        (
            {"data": {"validation_split": 1.5}},
            "validation_split",
            ["data.validation_split", "less than 1", "1.5"],
        ),
        (
            {"data": {"normalize": "foo"}},
            "normalize",
            ["data.normalize", "standard, minmax, none", "'foo'"],
        ),
        (
            {"runtime": {"jit_compile": "maybe"}},
            "jit_compile",
            ["runtime.jit_compile", "'auto' or true/false", "'maybe'"],
        ),
        (
            {"data": {"source": "digitz"}},
            "source",
            ["data.source", "'digitz'", "did you mean 'digits'"],
        ),
    ],
    ids=[
        "epochs-0",
        "epochs-negative",
        "batch_size-text",
        "validation_split-1.5",
        "normalize-foo",
        "jit_compile-maybe",
        "source-typo",
    ],
)
def test_wrong_type_or_out_of_range_value(config_error, write_config, changes, key, needles):
    config = write_config(changes)
    line = line_of(config, rf"^\s*{key}:")
    config_error(config, *needles, where=f"{config}:{line}")


# --------------------------------------------------------------------------------------
# Keras names: layers, optimizers, losses, metrics, activations, callbacks


@pytest.mark.parametrize(
    ("changes", "pattern", "needles"),
    [
        (
            layers({"type": "Dens", "units": 32}, OUTPUT),
            r"type: Dens,",
            ["model.layers[0]", "unknown layer 'Dens'", "did you mean 'Dense'"],
        ),
        (
            {"compile": {"optimizer": "adamm"}},
            r"optimizer:",
            ["compile.optimizer", "unknown optimizer 'adamm'", "did you mean 'adam'"],
        ),
        (
            {"compile": {"optimizer": "Adamm"}},
            r"optimizer:",
            ["compile.optimizer", "unknown optimizer 'Adamm'", "did you mean 'Adam'"],
        ),
        (
            {"compile": {"loss": "categorical_crosentropy"}},
            r"loss:",
            [
                "compile.loss",
                "unknown loss 'categorical_crosentropy'",
                "did you mean 'categorical_crossentropy'",
            ],
        ),
        (
            {"compile": {"loss": "sparse_categorical_crossentrpy"}},
            r"loss:",
            [
                "compile.loss",
                "unknown loss 'sparse_categorical_crossentrpy'",
                "did you mean 'sparse_categorical_crossentropy'",
            ],
        ),
        (
            {"compile": {"loss": "CategoricalCrosentropy"}},
            r"loss:",
            [
                "compile.loss",
                "unknown loss 'CategoricalCrosentropy'",
                "did you mean 'CategoricalCrossentropy'",
            ],
        ),
        (
            {"compile": {"metrics": ["mean_absolute_eror"]}},
            r"metrics:",
            [
                "compile.metrics[0]",
                "unknown metric 'mean_absolute_eror'",
                "did you mean 'mean_absolute_error'",
            ],
        ),
        (
            layers({"type": "batch_normalizaton"}, OUTPUT),
            r"batch_normalizaton",
            [
                "model.layers[0]",
                "unknown layer 'batch_normalizaton'",
                "did you mean 'batch_normalization'",
            ],
        ),
        (
            {"compile": {"metrics": ["acuracy"]}},
            r"metrics:",
            ["compile.metrics[0]", "unknown metric 'acuracy'", "did you mean 'accuracy'"],
        ),
        (
            layers({"type": "Dense", "units": 32, "activation": "rellu"}, OUTPUT),
            r"activation: rellu",
            ["model.layers[0]", "unknown activation 'rellu'", "did you mean 'relu'"],
        ),
        (
            layers({"type": "Dense", "units": 32, "kernel_initialiser": "he_normal"}, OUTPUT),
            r"kernel_initialiser",
            [
                "model.layers[0]",
                "unknown key 'kernel_initialiser'",
                "did you mean 'kernel_initializer'",
            ],
        ),
        (
            layers(
                {"type": "Dense", "units": 32, "kernel_regularizer": {"type": "L3", "l2": 0.01}},
                OUTPUT,
            ),
            r"kernel_regularizer",
            [
                "model.layers[0].kernel_regularizer",
                "unknown regularizer 'L3'",
                "keras.regularizers: L1, L1L2, L2",
            ],
        ),
        (
            layers(
                {"type": "Dense", "units": 32, "bias_initializer": {"type": "Constant", "valu": 1}},
                OUTPUT,
            ),
            r"bias_initializer",
            [
                "model.layers[0].bias_initializer",
                "unknown key 'valu' for Constant",
                "did you mean 'value'",
            ],
        ),
    ],
    ids=[
        "layer",
        "optimizer",
        "optimizer-camel",
        "loss",
        "loss-sparse",
        "loss-camel",
        "metric-snake",
        "layer-snake",
        "metric",
        "activation",
        "layer-argument",
        "nested-regularizer",
        "nested-argument",
    ],
)
def test_unknown_keras_name_did_you_mean(config_error, write_flow, changes, pattern, needles):
    config = write_flow(changes)
    config_error(config, *needles, where=f"{config}:{line_of(config, pattern)}")


@pytest.mark.parametrize("name", ["Lambda", "lambda"])
def test_lambda_layer_is_refused(config_error, write_flow, tmp_path, name):
    marker = tmp_path / "pwned"
    code = f"lambda x: __import__('os').system('touch {marker}') or x"
    config = write_flow(layers({"type": name, "function": code}, OUTPUT))
    config_error(
        config,
        "model.layers[0]",
        f"'{name}' is refused",
        where=f"{config}:{line_of(config, rf'type: {name}')}",
    )
    assert not marker.exists()


@pytest.mark.parametrize("name", ["LambdaCallback", "RemoteMonitor"])
def test_code_running_callbacks_are_refused(config_error, write_flow, name):
    config = write_flow({"training": {"callbacks": [{"type": name}]}})
    config_error(
        config,
        "training.callbacks[0]",
        f"'{name}' is refused",
        where=f"{config}:{line_of(config, rf'type: {name}')}",
    )


# --------------------------------------------------------------------------------------
# run names


@pytest.mark.parametrize("name", ["a/b", "..", "../escape", "x/../../y"])
def test_unsafe_run_name_is_refused(config_error, write_config, name):
    config = write_config({"name": name})
    config_error(config, "name", "run name", where=f"{config}:{line_of(config, r'^name:')}")


# --------------------------------------------------------------------------------------
# --set


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("training.epochs", ["expected KEY=VALUE"]),
        ("=3", ["expected KEY=VALUE"]),
        ("training.epochs=abc", ["training.epochs", "integer", "'abc'"]),
        ("training.epochs=0", ["training.epochs", "greater than 0"]),
        ("model.layers.5.units=3", ["index 5 is out of range", "2 items"]),
        ("training.epoch=3", ["unknown key 'epoch'", "did you mean 'epochs'"]),
    ],
    ids=[
        "no-equals",
        "no-key",
        "bad-type",
        "out-of-range-value",
        "index-out-of-range",
        "unknown-key",
    ],
)
def test_set_errors_name_the_override(config_error, write_config, override, needles):
    config = write_config()
    config_error(config, *needles, where=f"--set {override}", extra=("--set", override))


# --------------------------------------------------------------------------------------
# mismatches Keras would only find mid-fit


def test_last_layer_units_do_not_match_the_classes(config_error, write_flow):
    config = write_flow(layers(HIDDEN, {"type": "Dense", "units": 3, "activation": "softmax"}))
    config_error(
        config,
        "model.layers[1]",
        "3 units",
        "10 classes",
        where=f"{config}:{line_of(config, r'units: 3,')}",
    )


def test_softmax_output_with_from_logits(config_error, write_config):
    config = write_config(
        {"compile": {"loss": {"type": "sparse_categorical_crossentropy", "from_logits": True}}}
    )
    line = line_of(config, r"^\s+loss:")
    config_error(config, "compile.loss", "from_logits", "softmax", where=f"{config}:{line}")


def test_binary_crossentropy_on_a_multi_unit_softmax(config_error, write_config):
    config = write_config({"compile": {"loss": "binary_crossentropy"}})
    line = line_of(config, r"^\s+loss:")
    config_error(config, "compile.loss", "binary", "10-unit softmax", where=f"{config}:{line}")


def test_early_stopping_on_val_loss_without_validation_data(config_error, write_config):
    config = write_config(
        {"data": {"validation_split": 0}, "training": {"early_stopping": {"monitor": "val_loss"}}}
    )
    lines = config_error(config, "validation_split", "early_stopping")
    # The problem sits at the early_stopping block (or its monitor, or the split): say which line.
    candidates = {
        line_of(config, r"early_stopping:"),
        line_of(config, r"monitor:"),
        line_of(config, r"validation_split:"),
    }
    assert any(lines[0].startswith(f"error: {config}:{n}:") for n in candidates), (
        f"expected {config}:LINE with LINE in {sorted(candidates)}, got {lines[0]!r}"
    )


# --------------------------------------------------------------------------------------
# data files


def test_csv_file_missing(config_error, write_config, tmp_path):
    missing = tmp_path / "nowhere.csv"
    config = write_config(csv_changes(missing))
    config_error(config, "not found", where=str(missing))


def test_csv_target_column_missing_did_you_mean(config_error, write_config, tmp_path):
    data = write_csv(tmp_path / "data.csv", csv_rows())
    config = write_config(csv_changes(data, target="lable"))
    config_error(
        config,
        "no target column 'lable'",
        "did you mean 'label'",
        "a, b, label",
        where=f"{config}:{line_of(config, r'target: lable')}",
    )


def test_csv_stray_text_in_a_column_of_numbers_names_the_cell_and_both_fixes(
    config_error, write_config, tmp_path
):
    rows = csv_rows()
    rows[5] = "0.5,abc,1"  # line 6 of the file
    data = write_csv(tmp_path / "data.csv", rows)
    config = write_config(csv_changes(data))
    config_error(
        config, "column 'b'", "'abc'", "data.missing", "type: categorical", where=f"{data}:6"
    )


@pytest.mark.parametrize("cell", ["", "nan", "NaN", "?"])
def test_csv_missing_cell_is_refused_with_on_missing_error(
    config_error, write_config, tmp_path, cell
):
    rows = csv_rows()
    rows[7] = f"0.5,{cell},1"  # line 8 of the file
    data = write_csv(tmp_path / "data.csv", rows)
    config = write_config(csv_changes(data, on_missing="error"))
    config_error(config, "column 'b' is missing", "on_missing", where=f"{data}:8")


def test_csv_infinite_cell_is_not_a_number(config_error, write_config, tmp_path):
    rows = csv_rows()
    rows[7] = "0.5,inf,1"
    data = write_csv(tmp_path / "data.csv", rows)
    config = write_config(csv_changes(data))
    config_error(config, "column 'b' holds numbers", "'inf'", "data.missing", where=f"{data}:8")


def test_csv_target_with_a_single_class(config_error, write_config, tmp_path):
    data = write_csv(
        tmp_path / "data.csv", ["a,b,label"] + [f"{i},{i * 2},only" for i in range(20)]
    )
    config = write_config(csv_changes(data))
    config_error(
        config, "single class", "'only'", where=f"{config}:{line_of(config, r'target: label')}"
    )


def test_npz_without_the_expected_arrays_lists_what_it_holds(config_error, write_config, tmp_path):
    data = tmp_path / "data.npz"
    np.savez(data, features=np.zeros((20, 4), "float32"), labels=np.arange(20) % 3)
    config = write_config(npz_changes(data))
    config_error(
        config,
        "no array 'x_train'",
        "features, labels",
        where=f"{config}:{line_of(config, r'path:')}",
    )


class _Boom:
    """Unpickling this runs a command: proof that dlcli never unpickles an NPZ."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_npz_with_an_object_array_is_refused_unpickled(config_error, write_config, tmp_path):
    marker = tmp_path / "pwned"
    data = tmp_path / "data.npz"
    x = np.empty(20, dtype=object)
    x[:] = [_Boom(marker) for _ in range(20)]
    np.savez(data, x_train=x, y_train=np.arange(20) % 3)
    assert not marker.exists()
    config = write_config(npz_changes(data))
    config_error(config, "Python objects", where=str(data))
    assert not marker.exists(), "the NPZ was unpickled"


def test_npz_with_nan_features(config_error, write_config, tmp_path):
    x = np.random.default_rng(0).normal(size=(30, 4)).astype("float32")
    x[4, 2] = np.nan
    data = tmp_path / "data.npz"
    np.savez(data, x_train=x, y_train=np.arange(30) % 3)
    config = write_config(npz_changes(data))
    config_error(config, "NaN", "sample 4", where=str(data))


# --------------------------------------------------------------------------------------
# evaluate and predict


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    """A private copy of the finished run, so that no test here writes into the shared one."""
    copy = tmp_path / "runs" / trained_run.name
    shutil.copytree(trained_run, copy)
    return copy


def evaluations(run: Path) -> int:
    path = run / "evaluations.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_evaluate_unknown_run(cli, run_copy):
    runs = run_copy.parent
    args = ("evaluate", "no-such-run", "--runs-dir", runs)
    assert_usage_error(cli(*args), "no run 'no-such-run'", str(runs), args=args)


def test_evaluate_with_no_runs_at_all(cli, tmp_path):
    args = ("evaluate", "--runs-dir", tmp_path / "empty-runs")
    assert_usage_error(cli(*args), "no runs yet", args=args)


@pytest.mark.parametrize(
    ("flag", "gate"),
    [
        ("--fail-under", "accuracy"),
        ("--fail-under", "accuracy="),
        ("--fail-under", "accuracy=high"),
        ("--fail-under", "=0.5"),
        ("--fail-over", "loss"),
    ],
)
def test_evaluate_malformed_gate(cli, run_copy, flag, gate):
    before = evaluations(run_copy)
    args = ("evaluate", run_copy, flag, gate, "--runs-dir", run_copy.parent)
    assert_usage_error(cli(*args), "METRIC=VALUE", gate, args=args)
    assert evaluations(run_copy) == before, "a malformed gate is refused before any work"


def test_evaluate_gate_on_unknown_metric_names_the_available_ones(cli, run_copy):
    args = ("evaluate", run_copy, "--fail-under", "nosuchmetric=0.5", "--runs-dir", run_copy.parent)
    lines = assert_usage_error(
        cli(*args), "no metric 'nosuchmetric'", "accuracy", "loss", args=args
    )
    assert "--fail-under nosuchmetric=0.5" in lines[0]


def test_evaluate_gate_metric_typo_did_you_mean(cli, run_copy):
    args = ("evaluate", run_copy, "--fail-under", "acuracy=0.5", "--runs-dir", run_copy.parent)
    assert_usage_error(cli(*args), "no metric 'acuracy'", "did you mean 'accuracy'", args=args)


def test_evaluate_bogus_split(cli, run_copy):
    before = evaluations(run_copy)
    args = ("evaluate", run_copy, "--split", "bogus", "--runs-dir", run_copy.parent)
    assert_usage_error(cli(*args), "--split", "train, val or test", "'bogus'", args=args)
    assert evaluations(run_copy) == before


def test_predict_csv_missing_feature_columns(cli, trained_run, tmp_path):
    features = tmp_path / "features.csv"
    features.write_text("pixel_0_0,pixel_0_1\n0,1\n2,3\n")
    args = ("predict", trained_run, features, "--runs-dir", trained_run.parent)
    assert_usage_error(cli(*args), "pixel_0_2", "feature column", where=str(features), args=args)


def test_predict_missing_input_file(cli, trained_run, tmp_path):
    missing = tmp_path / "nothing.csv"
    args = ("predict", trained_run, missing, "--runs-dir", trained_run.parent)
    assert_usage_error(cli(*args), "not found", where=str(missing), args=args)


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_corrupted_model_file(cli, run_copy, tmp_path, command):
    model = run_copy / "model.keras"
    model.write_bytes(b"\x00garbage, not a keras archive\xff" * 64)
    before = evaluations(run_copy)
    features = tmp_path / "features.npz"
    np.savez(features, x=np.zeros((2, 64), "float32"))
    args = (
        command,
        run_copy,
        *([features] if command == "predict" else []),
        "--runs-dir",
        run_copy.parent,
    )
    lines = assert_usage_error(cli(*args), where=str(model), args=args)
    # The file is there: a message saying it is "not found" sends the user the wrong way.
    assert "not found" not in _plain(lines[0]).lower(), (
        f"misleading message for a corrupted model: {lines[0]!r}"
    )
    assert evaluations(run_copy) == before


def test_foreign_model_file_with_a_lambda_is_refused(cli, run_copy):
    model = run_copy / "model.keras"
    model.unlink()
    with zipfile.ZipFile(model, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.0.0"}))
        archive.writestr(
            "config.json",
            json.dumps(
                {
                    "module": "keras.layers",
                    "class_name": "Lambda",
                    "config": {
                        "function": {
                            "class_name": "__lambda__",
                            "config": {"code": "", "defaults": None, "closure": None},
                        }
                    },
                }
            ),
        )
    args = ("evaluate", run_copy, "--runs-dir", run_copy.parent)
    assert_usage_error(cli(*args), "safely", where=str(model), args=args)


# --------------------------------------------------------------------------------------
# end to end, as a user runs it


@pytest.mark.slow
def test_subprocess_config_error_is_one_line_on_stderr(write_config, tmp_path):
    config = write_config({"training": {"epochs": 0}})
    runs = tmp_path / "runs"
    proc = run_dlcli("train", config, "--runs-dir", runs, cwd=tmp_path)
    context = f"\nexit {proc.returncode}\nstdout: {proc.stdout!r}\nstderr: {proc.stderr!r}"
    assert proc.returncode == 2, context
    assert proc.stdout == "", context
    assert "Traceback" not in proc.stderr, context
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), context
    assert f"{config}:{line_of(config, r'epochs:')}:" in lines[0], context
    assert "\x1b" not in proc.stderr, "no control characters off a terminal / with NO_COLOR"
    assert_no_run_folder(runs)


@pytest.mark.slow
def test_subprocess_json_error_is_exactly_one_json_object(write_flow, tmp_path):
    # A Keras-level error: Keras/TensorFlow get imported, and their chatter must not leak.
    config = write_flow(layers({"type": "Dens", "units": 32}, OUTPUT))
    runs = tmp_path / "runs"
    proc = run_dlcli("train", config, "--runs-dir", runs, "--json", cwd=tmp_path)
    context = f"\nexit {proc.returncode}\nstdout: {proc.stdout!r}\nstderr: {proc.stderr!r}"
    assert proc.returncode == 2, context
    assert "Traceback" not in proc.stdout + proc.stderr, context
    payload = json.loads(proc.stdout)  # exactly one JSON document, nothing else
    assert isinstance(payload, dict) and "error" in payload, context
    assert (
        "unknown layer 'Dens'" in payload["error"] and "did you mean 'Dense'" in payload["error"]
    ), context
    assert str(config) in payload["error"], context
    assert len(proc.stdout.strip().splitlines()) == 1, context
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error:"), context
    assert_no_run_folder(runs)


@pytest.mark.slow
def test_subprocess_corrupted_model_is_one_line(trained_run, tmp_path):
    copy = tmp_path / "runs" / trained_run.name
    shutil.copytree(trained_run, copy)
    (copy / "model.keras").write_bytes(b"garbage" * 100)
    proc = run_dlcli("evaluate", copy, "--runs-dir", copy.parent, cwd=tmp_path)
    context = f"\nexit {proc.returncode}\nstdout: {proc.stdout!r}\nstderr: {proc.stderr!r}"
    assert proc.returncode == 2, context
    assert "Traceback" not in proc.stdout + proc.stderr, context
    assert proc.stdout == "", context
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {copy / 'model.keras'}"), context
