"""The pure pieces, one behaviour each: metric direction, best epoch, final metrics, config
differences, `--set` parsing, runtime choices and conflicts, did-you-mean spelling, splits,
normalisation statistics, the sources table. No training, no subprocess: milliseconds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlcli.config.load import load_config
from dlcli.config.schema import Config
from dlcli.config.text import apply_overrides, config_differences, parse_override, resumable
from dlcli.errors import ConfigError, first_line
from dlcli.files import csv_text
from dlcli.runs.metrics import best_epoch, direction, final_metrics
from dlcli.runtime.choices import choose_runtime, runtime_problems

MINIMAL = {"data": {"source": "iris"}, "model": {"layers": [{"type": "Dense"}]}}


# -- metric direction, best epoch, metrics.json ------------------------------------------


def test_recorded_direction_wins_over_the_name():
    # A custom metric named like a loss but recorded by Keras as growing.
    assert direction("val_my_score", {"my_score": "max"}) == "max"
    assert direction("test.accuracy", {"accuracy": "max"}) == "max"
    assert direction("mean_absolute_error", {"mean_absolute_error": "min"}) == "min"


def test_without_a_record_losses_go_down_and_accuracies_up():
    assert direction("val_loss") == "min"
    assert direction("focal_loss") == "min"
    assert direction("val_accuracy") == "max"
    assert direction("auc") == "max"
    assert direction("mean_squared_error") == "min"


def test_best_epoch_follows_the_direction_and_skips_nan():
    rows = [
        {"epoch": 1, "m": 0.5},
        {"epoch": 2, "m": float("nan")},
        {"epoch": 3, "m": 0.7},
        {"epoch": 4, "m": 0.6},
    ]
    assert best_epoch(rows, "m", "max") == 3
    assert best_epoch(rows, "m", "min") == 1
    assert best_epoch(rows, "absent", "min") == 4
    assert best_epoch([], "m", "min") == 0


def test_final_metrics_take_train_and_val_from_the_kept_epoch():
    rows = [
        {
            "epoch": 1,
            "loss": 0.9,
            "accuracy": 0.5,
            "val_loss": 0.8,
            "val_accuracy": 0.6,
            "lr": 1e-3,
            "epoch_time_s": 1.0,
        },
        {
            "epoch": 2,
            "loss": 0.4,
            "accuracy": 0.8,
            "val_loss": 0.5,
            "val_accuracy": 0.7,
            "lr": 1e-3,
            "epoch_time_s": 1.0,
        },
    ]
    out = final_metrics(rows, {"loss": 0.45}, 1234.56, best=2, kept_epoch=1)
    assert out["train"] == {"loss": 0.9, "accuracy": 0.5}
    assert out["val"] == {"loss": 0.8, "accuracy": 0.6}
    assert out["test"] == {"loss": 0.45}
    assert (out["best_epoch"], out["epochs_run"], out["samples_per_s"]) == (2, 2, 1234.6)


# -- config: differences, --set, resumable keys -------------------------------------------


def test_config_differences_name_dotted_keys_and_list_items():
    old = {
        "training": {"epochs": 3, "batch_size": 32},
        "model": {"layers": [{"units": 8}, {"units": 2}]},
    }
    new = {
        "training": {"epochs": 5, "batch_size": 32},
        "model": {"layers": [{"units": 16}, {"units": 2}]},
        "seed": 1,
    }
    assert config_differences(old, new) == ["model.layers.0.units", "seed", "training.epochs"]
    assert config_differences(old, old) == []


def test_only_epochs_and_runtime_are_resumable():
    assert resumable("training.epochs") and resumable("runtime.backend") and resumable("runtime")
    assert not resumable("training.batch_size") and not resumable("runtimes")


def test_set_values_are_yaml_scalars_with_list_indices():
    assert parse_override("model.layers.0.units=256") == (("model", "layers", 0, "units"), 256)
    assert parse_override("compile.optimizer.learning_rate=1e-3")[1] == 0.001
    assert parse_override("output.plots=false")[1] is False
    assert parse_override("name=abc")[1] == "abc"
    data, origins = apply_overrides(
        {"compile": {"optimizer": "adam"}}, ["compile.optimizer.learning_rate=0.01"]
    )
    assert data["compile"]["optimizer"] == {"type": "adam", "learning_rate": 0.01}
    assert origins == {
        ("compile", "optimizer", "learning_rate"): "compile.optimizer.learning_rate=0.01"
    }


@pytest.mark.parametrize("text", ["epochs", "=3", "model.layers.5.units=3", "seed.x=1"])
def test_malformed_set_is_a_config_error(text):
    with pytest.raises(ConfigError):
        apply_overrides({"seed": 1, "model": {"layers": [{}]}}, [text])


def test_load_config_returns_a_config_and_leaves_inferred_keys_empty():
    config = load_config(MINIMAL, ["training.epochs=2"])
    assert isinstance(config, Config)
    assert (
        config.training.epochs == 2
        and config.model.input_shape is None
        and config.compile.loss is None
    )


# -- runtime choices and conflicts ---------------------------------------------------------


def runtime(**changes):
    """A runtime section as choose_runtime gets it: on a concrete backend (tensorflow unless given)."""
    return load_config({**MINIMAL, "runtime": {"backend": "tensorflow", **changes}}).runtime


def test_auto_runtime_on_cpu_is_float32_without_distribution():
    chosen = choose_runtime(runtime(), [{"type": "CPU", "name": "cpu"}], steps_per_epoch=10)
    assert chosen.precision == "float32" and chosen.distribution == "none"
    assert chosen.steps_per_execution == 10


def test_auto_runtime_on_gpus_picks_mixed_precision_and_a_strategy_per_backend():
    gpus = [{"type": "GPU", "name": "a", "compute_capability": [9, 0]}] * 2
    assert choose_runtime(runtime(), gpus, 500).precision == "mixed_bfloat16"
    assert choose_runtime(runtime(), gpus, 500).distribution == "mirrored"
    assert choose_runtime(runtime(backend="jax"), gpus, 500).distribution == "data_parallel"
    assert choose_runtime(runtime(backend="torch"), gpus, 500).distribution == "none"
    volta = [{"type": "GPU", "name": "v", "compute_capability": [7, 0]}]
    assert choose_runtime(runtime(), volta, 500).precision == "mixed_float16"
    assert choose_runtime(runtime(backend="jax"), gpus, 500).steps_per_execution == 64
    # MirroredStrategy runs one step per execution (keras-team/keras#19246)
    assert choose_runtime(runtime(), gpus, 500).steps_per_execution == 1
    assert choose_runtime(runtime(), gpus, 500).replicas == 2
    assert choose_runtime(runtime(), gpus[:1], 500).steps_per_execution == 64


def test_several_processes_share_the_training_through_data_parallel():
    cpus = [{"type": "CPU", "name": "cpu", "process": i} for i in range(2)]
    chosen = choose_runtime(runtime(backend="jax"), cpus, 10, processes=2)
    assert chosen.distribution == "data_parallel" and chosen.replicas == 2 and chosen.processes == 2
    with pytest.raises(
        ConfigError, match="2 processes share the training through distribution: data_parallel"
    ):
        choose_runtime(runtime(backend="jax", distribution="none"), cpus, 10, processes=2)


def test_torch_runs_one_step_per_execution():
    assert (
        choose_runtime(
            runtime(backend="torch"), [{"type": "CPU", "name": "cpu"}], 100
        ).steps_per_execution
        == 1
    )


@pytest.mark.parametrize(
    ("settings", "key", "words"),
    [
        (
            {"backend": "torch", "steps_per_execution": 8},
            "steps_per_execution",
            "one step per execution",
        ),
        (
            {"backend": "torch", "distribution": "data_parallel"},
            "distribution",
            "runs on runtime.backend: jax",
        ),
        (
            {"backend": "tensorflow", "distribution": "data_parallel"},
            "distribution",
            "use mirrored",
        ),
        (
            {"backend": "jax", "distribution": "mirrored"},
            "distribution",
            "use distribution: data_parallel",
        ),
    ],
)
def test_settings_a_backend_cannot_honour_are_found_before_import(settings, key, words):
    problems = runtime_problems(runtime(**settings))
    assert [path for path, _ in problems] == [("runtime", key)]
    assert words in problems[0][1]


def test_compatible_runtime_settings_have_no_problem():
    assert runtime_problems(runtime(backend="torch", steps_per_execution=1)) == []
    assert runtime_problems(runtime(backend="jax", distribution="data_parallel")) == []


# -- names, errors, files -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "keras_name", "shown"),
    [
        (
            "sparse_categorical_crossentrpy",
            "SparseCategoricalCrossentropy",
            "sparse_categorical_crossentropy",
        ),
        (
            "SparseCategoricalCrossentrpy",
            "SparseCategoricalCrossentropy",
            "SparseCategoricalCrossentropy",
        ),
        ("adamm", "Adam", "adam"),
        ("Desne", "Dense", "Dense"),
        ("kl_divergense", "KLDivergence", "kl_divergence"),
    ],
)
def test_did_you_mean_is_spelt_the_users_way(word, keras_name, shown):
    from dlcli.runtime.keras_names import suggest

    assert suggest(word, {keras_name.lower(): keras_name}) == f" (did you mean '{shown}'?)"


def test_first_line_of_an_exception():
    assert first_line(ValueError("bad shape\nmore")) == "bad shape"
    assert first_line(KeyError()) == "KeyError"


def test_csv_text_keeps_every_digit_of_a_float():
    text = csv_text([{"epoch": 1, "loss": 0.1 + 0.2, "gone": None}])
    assert text == "epoch,loss,gone\n1,0.30000000000000004,\n"
    assert float(text.splitlines()[1].split(",")[1]) == 0.1 + 0.2


# -- data: splits, statistics, sources ------------------------------------------------------


def test_split_steps_batches_and_shards():
    from dlcli.data.dataset import Split

    split = Split(np.arange(20, dtype="float32").reshape(10, 2), np.arange(10))
    assert len(split) == 10 and split.steps(4) == 3
    assert [len(b) for b in split.feature_batches(4)] == [4, 4, 2]
    shards = [split.shard(i, 3) for i in range(3)]
    assert [s.y.tolist() for s in shards] == [
        [0, 3, 6],
        [1, 4, 7],
        [2, 5, 8],
    ]  # equal shares: 9 is left out
    assert [len(split.shard(i, 2, 2)) for i in range(2)] == [4, 4]
    inputs = split.keras_inputs(lambda y: y * 2, batch_size=5)
    assert inputs["batch_size"] == 5 and inputs["y"].tolist() == [2 * i for i in range(10)]


@pytest.mark.parametrize(
    ("shape", "mode"),
    [((3,), "standard"), ((3,), "minmax"), ((4, 4, 3), "standard"), ((6, 6), "standard")],
)
def test_statistics_over_batches_equal_those_of_the_whole_split(shape, mode):
    from dlcli.model.inputs import statistics

    rng = np.random.default_rng(0)
    x = (rng.normal(size=(257, int(np.prod(shape)))) * 3 + 5).astype("float32")
    whole = statistics([x], shape, mode)
    chunked = statistics([x[i : i + 50] for i in range(0, len(x), 50)], shape, mode)
    for a, b in zip(whole, chunked):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
    if mode == "standard" and len(shape) == 1:
        np.testing.assert_allclose(whole[0], x.astype("float64").mean(0), rtol=1e-12)
        np.testing.assert_allclose(whole[1], x.astype("float64").std(0), rtol=1e-10)


def test_every_schema_source_has_a_source_and_back():
    import typing

    from dlcli.config.schema import DataConfig
    from dlcli.data.sources import SOURCES

    schema_names = set(typing.get_args(DataConfig.model_fields["source"].annotation))
    assert schema_names == set(SOURCES)


def test_resolve_returns_a_new_config_and_leaves_the_given_one_alone():
    from dlcli.data.dataset import Dataset, Split
    from dlcli.model.build import resolve

    config = load_config(MINIMAL)
    data = Dataset(
        train=Split(np.zeros((8, 4), "float32"), np.arange(8) % 3),
        test=Split(np.zeros((4, 4), "float32"), np.arange(4) % 3),
        labels=["a", "b", "c"],
    )
    resolved = resolve(config, data)
    assert resolved.model.input_shape == [4] and resolved.model.layers[-1].kwargs["units"] == 3
    assert resolved.compile.loss.type == "sparse_categorical_crossentropy"
    assert config.model.input_shape is None and config.compile.loss is None
    assert "units" not in config.model.layers[-1].kwargs
    assert resolved.where(("model", "layers", 0)) == config.where(("model", "layers", 0))


@pytest.mark.slow
def test_importing_dlcli_and_its_light_modules_imports_no_keras():
    from conftest import run_python

    code = (
        "import sys, dlcli, dlcli.cli, dlcli.runs.catalog, dlcli.runs.runfolder, dlcli.config.schema, dlcli.runs.metrics, "
        "dlcli.init.templates, dlcli.data.dataset, dlcli.model.build, dlcli.training.session, dlcli.use.evaluate; "
        "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))"
    )
    out = run_python(code, env={"KERAS_BACKEND": ""})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_import_graph_runs_one_way_without_cycles():
    from import_graph import backward_edges, cycles, graph, stage_of

    edges = graph()
    assert cycles(edges) == []
    assert backward_edges(edges) == []
    assert all(stage_of(m) >= 0 for m in edges if m != "dlcli"), "every module belongs to a stage"


def test_nan_counts_as_worst_for_either_direction():
    rows = [{"epoch": 1, "m": math.inf}, {"epoch": 2, "m": 1.0}]
    assert best_epoch(rows, "m", "min") == 2
    assert best_epoch([{"epoch": 1, "m": -math.inf}, {"epoch": 2, "m": 1.0}], "m", "max") == 2


def test_env_says_what_an_explicit_precision_does_on_each_kind_of_gpu():
    from dlcli.runtime.environment import precision_effects

    ampere = {"type": "GPU", "name": "A100", "compute_capability": [8, 0]}
    volta = {"type": "GPU", "name": "V100", "compute_capability": [7, 0]}
    pascal = {"type": "GPU", "name": "P100", "compute_capability": [6, 0]}
    both = precision_effects([ampere])
    assert "tensor cores" in both["mixed_float16"] and "tensor cores" in both["mixed_bfloat16"]
    mixed = precision_effects([ampere, volta])
    assert "tensor cores" in mixed["mixed_float16"]
    assert mixed["mixed_bfloat16"].startswith(
        "bfloat16 math runs, but V100 (7.0) lacks fast bfloat16"
    )
    old = precision_effects([pascal])
    assert (
        "P100 (6.0) lacks fast float16" in old["mixed_float16"]
        and "slower than float32" in old["mixed_float16"]
    )
