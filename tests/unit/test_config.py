"""ferry.config: config.yaml is validated strictly; every mistake says what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ferry.config import ModelConfig, load_config, parse_config
from ferry.errors import ConfigError
from ferry.signature import TensorSpec


def _load(tmp_path: Path, text: str | bytes) -> ModelConfig:
    path = tmp_path / "config.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return load_config(path)


def _error(tmp_path: Path, text: str | bytes) -> str:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    return str(info.value)


def test_full_config(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        """
runtime: onnx
description: digits classifier
max_batch_size: 8
max_delay_ms: 2.5
instances: 2
max_queue_size: 10
timeout_ms: 500
trusted: true
trusted_types: [numpy.dtype]
device: cpu
threads: 4
warmup: false
inputs:
  - {name: x, datatype: FP32, shape: [-1, 64]}
outputs:
  - {name: y, datatype: INT64, shape: [-1]}
""",
    )
    assert config.runtime == "onnx"
    assert config.max_batch_size == 8
    assert config.max_delay_ms == 2.5
    assert config.instances == 2
    assert config.timeout_ms == 500
    assert config.trusted is True
    assert config.trusted_types == ["numpy.dtype"]
    assert config.device == "cpu"
    assert config.warmup is False
    assert config.inputs is not None
    assert config.inputs[0].spec() == TensorSpec("x", "FP32", (-1, 64))
    assert config.outputs is not None
    assert config.outputs[0].spec() == TensorSpec("y", "INT64", (-1,))


def test_defaults() -> None:
    config = ModelConfig()
    assert config.runtime is None
    assert config.max_batch_size == 32
    assert config.max_delay_ms == 0
    assert config.instances == 1
    assert config.trusted is False
    assert config.inputs is None


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "~\n"])
def test_empty_file_is_all_defaults(tmp_path: Path, text: str) -> None:
    assert _load(tmp_path, text) == ModelConfig()


def test_unknown_key_names_the_key_and_the_allowed_keys(tmp_path: Path) -> None:
    message = _error(tmp_path, "max_batch: 8\n")
    assert message.startswith("config.yaml: ")
    assert "unknown key 'max_batch'" in message
    assert "allowed: " in message
    for key in ("runtime", "max_batch_size", "max_delay_ms", "instances", "trusted", "inputs"):
        assert key in message.split("allowed: ", 1)[1]


def test_unknown_key_inside_a_tensor_names_its_place(tmp_path: Path) -> None:
    message = _error(tmp_path, "inputs:\n  - {name: x, datatype: FP32, shape: [1], dims: [1]}\n")
    assert "unknown key 'inputs.0.dims'" in message
    assert "allowed" not in message


def test_every_error_is_reported(tmp_path: Path) -> None:
    message = _error(tmp_path, "bogus: 1\ninstances: 0\n")
    assert "unknown key 'bogus'" in message
    assert "instances: " in message
    assert "; " in message


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("runtime: tensorflow\n", "runtime"),
        ("max_batch_size: -1\n", "max_batch_size"),
        ("max_batch_size: many\n", "max_batch_size"),
        ("max_batch_size: 1.5\n", "max_batch_size"),
        ("max_delay_ms: -1\n", "max_delay_ms"),
        ("max_delay_ms: 10001\n", "max_delay_ms"),
        ("instances: 0\n", "instances"),
        ("instances: 65\n", "instances"),
        ("max_queue_size: 0\n", "max_queue_size"),
        ("timeout_ms: 0\n", "timeout_ms"),
        ("trusted: maybe\n", "trusted"),
        ("device: tpu\n", "device"),
        ("threads: -2\n", "threads"),
        ("trusted_types: numpy.dtype\n", "trusted_types"),
        ("inputs: {name: x}\n", "inputs"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, field: str) -> None:
    message = _error(tmp_path, text)
    assert message.startswith(f"config.yaml: {field}")
    assert "unknown key" not in message


@pytest.mark.parametrize(
    ("tensor", "expected"),
    [
        ("{name: x, datatype: FLOAT, shape: [1]}", "unknown datatype 'FLOAT'"),
        ("{name: x, datatype: FP32, shape: [-2, 3]}", "dimensions are sizes >= 0, or -1"),
        ("{name: x, datatype: FP32}", "inputs.0.shape"),
        ("{datatype: FP32, shape: [1]}", "inputs.0.name"),
    ],
)
def test_bad_tensors(tmp_path: Path, tensor: str, expected: str) -> None:
    assert expected in _error(tmp_path, f"inputs:\n  - {tensor}\n")


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "42\n"])
def test_yaml_that_is_not_a_mapping(tmp_path: Path, text: str) -> None:
    assert _error(tmp_path, text) == "config.yaml: must be a mapping of keys to values"


@pytest.mark.parametrize("text", ["key: [unclosed\n", "a: b: c\n", "\tkey: 1\n"])
def test_invalid_yaml(tmp_path: Path, text: str) -> None:
    assert _error(tmp_path, text).startswith("config.yaml: cannot read it: ")


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    assert _error(tmp_path, b"description: \xff\xfe\n").startswith("config.yaml: cannot read it: ")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config\.yaml: cannot read it"):
        load_config(tmp_path / "config.yaml")


def test_parse_config_names_where_the_mapping_came_from() -> None:
    with pytest.raises(ConfigError, match=r"^registry: unknown key 'nope'"):
        parse_config({"nope": 1}, "registry")


def test_parse_config_accepts_a_plain_mapping() -> None:
    raw: dict[str, Any] = {"max_batch_size": 0, "runtime": "python"}
    config = parse_config(raw)
    assert config.max_batch_size == 0
    assert config.runtime == "python"


def _alias_bomb(levels: int = 9, fan: int = 7) -> str:
    """The "billion laughs": each level lists the previous one ``fan`` times (about 40
    million leaves from 354 bytes by default)."""
    lines = ["a0: &a0 [x]"] + [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * fan) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_an_uploaded_config_with_aliases_is_refused_before_expanding() -> None:
    from ferry.config import parse_uploaded_config

    # Refused at the first alias, while composing: walking the expansion (the JSON
    # check that follows) took 8 s and 660 MB on the event loop.
    with pytest.raises(ConfigError, match=r"not valid YAML: .*aliases \(\*name\) are not allowed"):
        parse_uploaded_config(_alias_bomb())


def test_an_uploaded_config_nested_too_deeply_is_a_config_error() -> None:
    from ferry.config import parse_uploaded_config

    depth = 200_000
    with pytest.raises(ConfigError, match="nested too deeply"):
        parse_uploaded_config("description: " + "[" * depth + "]" * depth + "\n")
