"""Multipart form uploads to the V2 infer endpoint, for curl and browsers:
``curl -F image=@cat.png .../v2/models/m/infer``. Each form field is a BYTES input named
after the field; a field given several times is several rows. The answer is ordinary
V2 JSON.

Parsed with python-multipart (Starlette's parser): one flat pass over the body. A part
that is itself a multipart body is refused rather than parsed: nested forms (RFC 2388's
multipart/mixed, dropped by RFC 7578) serve no client, and a parser that follows them
recurses once per level."""

from __future__ import annotations

import base64
import binascii
import quopri
from typing import TYPE_CHECKING

import numpy as np
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from ferry.errors import InvalidInput, PayloadTooLarge
from ferry.inference import InferRequest

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

MULTIPART = "multipart/form-data"


def is_form(content_type: str | None) -> bool:
    return content_type is not None and content_type.lower().startswith(MULTIPART)


MAX_PARTS = 256


class _Part:
    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.data: list[bytes] = []


class _Fields:
    """The parser's callbacks: each part's headers and data, checked as they come."""

    def __init__(self) -> None:
        self.fields: dict[str, list[bytes]] = {}
        self.complete = False
        self._parts = 0
        self._part = _Part()
        self._field = b""
        self._value = b""

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._begin_part,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_part_data": self._part_data,
            "on_part_end": self._end_part,
            "on_end": self._end,
        }

    def _begin_part(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise PayloadTooLarge(f"the form has over {MAX_PARTS} parts; at most {MAX_PARTS} are taken")
        self._part = _Part()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._part.headers[self._field.lower()] = self._value
        self._field = self._value = b""

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self._part.data.append(data[start:end])

    def _end_part(self) -> None:
        headers = self._part.headers
        _, disposition = parse_options_header(headers.get(b"content-disposition"))
        try:
            name = disposition.get(b"name", b"").decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("a form field's name is not UTF-8 text") from None
        if not name:
            raise InvalidInput("every form field needs a name: the model input it is for")
        content_type, _ = parse_options_header(headers.get(b"content-type"))
        if content_type.startswith(b"multipart/"):
            raise InvalidInput(f"form field {name!r} is itself a multipart body; nested forms are not accepted")
        value = _decoded(name, headers.get(b"content-transfer-encoding", b""), b"".join(self._part.data))
        self.fields.setdefault(name, []).append(value)

    def _end(self) -> None:
        self.complete = True


def _decoded(name: str, encoding: bytes, data: bytes) -> bytes:
    """Undo a Content-Transfer-Encoding (RFC 7578 deprecates them; old clients send them)."""
    encoding = encoding.strip().lower()
    if encoding in (b"", b"binary", b"8bit", b"7bit"):
        return data
    if encoding == b"base64":
        try:
            # MIME breaks base64 into lines; anything else outside the alphabet is an error.
            return base64.b64decode(b"".join(data.split()), validate=True)
        except binascii.Error:
            raise InvalidInput(f"form field {name!r} is not valid base64") from None
    if encoding == b"quoted-printable":
        return quopri.decodestring(data)
    raise InvalidInput(f"form field {name!r} has an unknown Content-Transfer-Encoding {encoding.decode('latin-1')!r}")


def decode_form(body: bytes, content_type: str) -> InferRequest:
    """Blocking (the parser is pure Python): the transport runs it in a thread."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise InvalidInput("the multipart form body cannot be read (no boundary)")
    fields = _Fields()
    try:
        parser = MultipartParser(boundary, fields.callbacks())
        parser.write(body)
        parser.finalize()
    except FormParserError as exc:
        raise InvalidInput(f"the multipart form body cannot be read ({exc})") from None
    if not fields.complete:
        raise InvalidInput("the multipart form body ends before its closing boundary")
    if not fields.fields:
        raise InvalidInput("the multipart form has no fields")
    inputs = {}
    for name, values in fields.fields.items():
        array = np.empty(len(values), dtype=object)
        array[:] = values
        inputs[name] = array
    return InferRequest(inputs=inputs)
