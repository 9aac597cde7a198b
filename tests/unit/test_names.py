"""ferry.names: the one place names, version numbers and file names are checked."""

from __future__ import annotations

import re

import pytest

from ferry.errors import InvalidInput
from ferry.names import MAX_VERSION, check_file_name, is_model_name, is_stage_name, parse_version, version_number


@pytest.mark.parametrize("name", ["simple\n", "simple\r", "\nsimple", "simple\x00", "simple\u200b", ""])
def test_names_match_as_a_whole(name: str) -> None:
    assert not is_model_name(name)
    assert not is_stage_name(name.lower())


@pytest.mark.parametrize(
    ("text", "number"),
    [("1", 1), ("007", 7), ("0", 0), (str(MAX_VERSION), MAX_VERSION), ("0" * 5000 + "3", 3)],
)
def test_version_numbers(text: str, number: int) -> None:
    assert version_number(text) == number
    assert parse_version(text) == number


@pytest.mark.parametrize("text", [str(MAX_VERSION + 1), "9" * 20, "9" * 5000, "1\n", "-1", "+1", "1_0", "\u00b2", ""])
def test_not_version_numbers(text: str) -> None:
    assert version_number(text) is None
    with pytest.raises(InvalidInput, match="version must be a positive integer of at most 19 digits") as refused:
        parse_version(text)
    assert len(refused.value.message) < 200  # a long text is not echoed back whole


@pytest.mark.parametrize("name", ["model.onnx", "modèle.onnx", "my model (2).skops", "x" * 200, "é" * 100])
def test_file_names_taken(name: str) -> None:
    assert check_file_name(name) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "needs a name"),
        ("..", "needs a name"),
        ("a/b.onnx", "a name, not a path"),
        ("a\\b.onnx", "a name, not a path"),
        ("x" * 201, "201 bytes long in UTF-8; the limit is 200"),
        ("é" * 101, "202 bytes long"),
        ("a\tb.onnx", "U+0009"),
        ("a\x7fb.onnx", "U+007F"),
        ("a\u0085b.onnx", "U+0085"),
        ("\u202exnno.onnx", "U+202E (right-to-left override)"),
        ("a\u2066b.onnx", "U+2066 (left-to-right isolate)"),
        ("a\ufeffb.onnx", "U+FEFF (zero width no-break space)"),
        ("a\u2029b.onnx", "U+2029 (paragraph separator)"),
    ],
)
def test_file_names_refused(name: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        check_file_name(name)
