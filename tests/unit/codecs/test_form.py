"""Multipart form bodies of V2 infer (ferry.codecs.form): fields become BYTES inputs;
nested forms and malformed bodies are refused as bad input (400), never a server error."""

from __future__ import annotations

import pytest

from ferry.codecs.form import MAX_PARTS, decode_form
from ferry.errors import InvalidInput, PayloadTooLarge

FORM = "multipart/form-data; boundary=XX"


def part(name: str, value: bytes, *headers: bytes) -> bytes:
    head = b'Content-Disposition: form-data; name="%s"\r\n' % name.encode() + b"".join(h + b"\r\n" for h in headers)
    return b"--XX\r\n" + head + b"\r\n" + value + b"\r\n"


def form(*parts: bytes) -> bytes:
    return b"".join(parts) + b"--XX--\r\n"


def nested_form(depth: int) -> tuple[bytes, str]:
    """A form whose one field is a multipart body, whose one part is another, ``depth`` deep."""
    body, content_type = b"value", b""
    for level in range(depth, 0, -1):
        boundary = b"L%dL" % level
        headers = b'Content-Disposition: form-data; name="image"\r\n' + content_type
        body = b"--%s\r\n%s\r\n%s\r\n--%s--\r\n" % (boundary, headers, body, boundary)
        content_type = b"Content-Type: multipart/mixed; boundary=%s\r\n" % boundary
    return body, "multipart/form-data; boundary=L1L"


def test_fields_become_bytes_inputs_and_repeated_fields_rows() -> None:
    body = form(part("image", b"\x89PNG\x00"), part("image", b"two", b"Content-Type: image/png"), part("text", b"hi"))
    inputs = decode_form(body, FORM).inputs
    assert inputs["image"].tolist() == [b"\x89PNG\x00", b"two"]
    assert inputs["text"].tolist() == [b"hi"]


def test_a_base64_transfer_encoding_is_undone() -> None:
    body = form(part("text", b"aGVsbG8=", b"Content-Transfer-Encoding: base64"))
    assert decode_form(body, FORM).inputs["text"].tolist() == [b"hello"]


@pytest.mark.parametrize("depth", [2, 2000])
def test_a_nested_form_is_refused(depth: int) -> None:
    body, content_type = nested_form(depth)
    with pytest.raises(InvalidInput, match="form field 'image' is itself a multipart body; nested forms"):
        decode_form(body, content_type)


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (form(part("a", b"1")), "multipart/form-data", "no boundary"),
        (b"not a form", FORM, "cannot be read"),
        (part("a", b"1"), FORM, "ends before its closing boundary"),
        (b"--XX--\r\n", FORM, "has no fields"),
        (b"--XX\r\nContent-Disposition: form-data\r\n\r\n1\r\n--XX--\r\n", FORM, "needs a name"),
        (form(part("a", b"!!", b"Content-Transfer-Encoding: base64")), FORM, "not valid base64"),
        (form(part("a", b"1", b"Content-Transfer-Encoding: x-zip")), FORM, "unknown Content-Transfer-Encoding"),
    ],
)
def test_malformed_forms_are_bad_input(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_form(body, content_type)


def test_too_many_parts_are_refused() -> None:
    body = form(*[part("a", b"1") for _ in range(MAX_PARTS + 1)])
    with pytest.raises(PayloadTooLarge, match=f"at most {MAX_PARTS}"):
        decode_form(body, FORM)
