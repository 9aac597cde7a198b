"""The names, version numbers and file names clients may give, checked the same way
wherever they arrive (REST, gRPC, the web app, ``ferry push``, a model repository).

Patterns match the whole text (``fullmatch``): ``$`` also matches before a final newline,
which let ``"simple\\n"`` pass as a lookalike of ``simple``. Numbers are ASCII digits and
bounded before ``int()`` sees them (it refuses 4,300+ digits with a ValueError). File
names may not hide characters that make one look like another."""

from __future__ import annotations

import re
import unicodedata

from ferry.errors import InvalidInput

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# Stages ("production", "staging", aliases) and runtime names.
STAGE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
# Versions are 64-bit integers in the registry (PostgreSQL BIGINT).
MAX_VERSION = 2**63 - 1
_MAX_VERSION_DIGITS = len(str(MAX_VERSION))
# File systems limit a name to 255 bytes, not characters, and the server lays an upload
# out under its name plus a temporary prefix and suffix: 200 bytes of UTF-8 leave room.
MAX_FILE_NAME_BYTES = 200
# Control (Cc) and format (Cf: zero-width characters, the right-to-left override U+202E)
# characters and line and paragraph separators (Zl, Zp): no name needs them, and they
# make a name display as something else.
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def is_model_name(name: object) -> bool:
    return isinstance(name, str) and MODEL_NAME.fullmatch(name) is not None


def check_model_name(name: str) -> str:
    """``name`` if it can name a model; else InvalidInput (400) saying what a name is."""
    if not is_model_name(name):
        raise InvalidInput(f"invalid model name {name!r}: letters, digits, '_', '.', '-' (at most 128)")
    return name


def is_stage_name(name: object) -> bool:
    return isinstance(name, str) and STAGE_NAME.fullmatch(name) is not None


def version_number(text: str) -> int | None:
    """The version a path segment or gRPC field names, as an int; None when it is no
    number a version can have (not ASCII digits, or past 64 bits), checked before
    ``int()`` so no length of digits can make it raise."""
    if not (text.isascii() and text.isdigit()):
        return None
    digits = text.lstrip("0")
    if len(digits) > _MAX_VERSION_DIGITS:
        return None
    number = int(digits or "0")
    return number if number <= MAX_VERSION else None


def parse_version(text: str) -> int:
    """``version_number`` or InvalidInput (400) saying what a version is."""
    number = version_number(text)
    if number is None:
        shown = text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"
        raise InvalidInput(f"version must be a positive integer of at most {_MAX_VERSION_DIGITS} digits, not {shown!r}")
    return number


def hidden_character(text: str) -> str | None:
    """The first control, format or line-separator character in ``text``, if any."""
    for char in text:
        if unicodedata.category(char) in HIDDEN_CATEGORIES:
            return char
    return None


def check_file_name(name: str) -> str:
    """``name`` if it can be an uploaded file's name: a name, not a path, of at most 200
    bytes of UTF-8, and nothing hidden in it. InvalidInput (400) says what is wrong."""
    if not name or name in {".", ".."}:
        raise InvalidInput("the file needs a name (for example model.onnx)")
    if "/" in name or "\\" in name:
        raise InvalidInput(f"the file name must be a name, not a path: {name!r}")
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_FILE_NAME_BYTES:
        raise InvalidInput(f"the file name is {size} bytes long in UTF-8; the limit is {MAX_FILE_NAME_BYTES}")
    char = hidden_character(name)
    if char is not None:
        raise InvalidInput(
            f"the file name must not contain control or invisible characters: {name!r} has "
            f"U+{ord(char):04X} ({unicodedata.name(char, 'a control character').lower()})"
        )
    return name
