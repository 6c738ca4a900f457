"""Property: whatever the config, `dlcli validate` answers 0 or 2 and never a traceback."""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import TINY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 300), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "adam", "Dense", "relu", "softmax", "mse", "val_loss", "digits", "csv", "auto", "../x", "Lambda"]),
    st.text(max_size=12),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=6)
KEY_PATHS = [
    ("name",), ("seed",), ("data",), ("data", "source"), ("data", "validation_split"), ("data", "test_split"),
    ("data", "normalize"), ("data", "path"), ("data", "target"), ("model",), ("model", "layers"),
    ("model", "layers", 0), ("model", "layers", 0, "units"), ("model", "layers", 0, "activation"),
    ("model", "layers", 1, "type"), ("model", "layers", 1, "units"), ("model", "input_shape"),
    ("compile", "optimizer"), ("compile", "loss"), ("compile", "metrics"), ("training", "epochs"),
    ("training", "batch_size"), ("training", "early_stopping"), ("training", "callbacks"),
    ("runtime", "backend"), ("runtime", "precision"), ("runtime", "jit_compile"), ("output",), ("unknown_key",),
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
    if isinstance(node, dict) or isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node):
        node[path[-1]] = value
    return config


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
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


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
@pytest.mark.slow
def test_arbitrary_text_as_a_config_exits_2_without_traceback(cli, tmp_path, text):
    path = tmp_path / "random.yaml"
    path.write_text(text, encoding="utf-8")
    result = cli("validate", path)
    assert result.exit_code == 2, result.stdout
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: ")
