"""Multipart form uploads to the V2 infer endpoint, for curl and browsers:
``curl -F image=@cat.png .../v2/models/m/infer``. Each form field is a BYTES input named
after the field; a field given several times is several rows. The answer is ordinary
V2 JSON."""

from __future__ import annotations

import email.message
import email.parser
import email.policy

import numpy as np

from ferry.errors import InvalidInput, PayloadTooLarge
from ferry.inference import InferRequest

MULTIPART = "multipart/form-data"


def is_form(content_type: str | None) -> bool:
    return content_type is not None and content_type.lower().startswith(MULTIPART)


MAX_PARTS = 256


def decode_form(body: bytes, content_type: str) -> InferRequest:
    """Blocking (MIME parsing is pure Python): the transport runs it in a thread."""
    header = email.message.EmailMessage()
    header["Content-Type"] = content_type
    boundary = header.get_boundary()
    if not boundary:
        raise InvalidInput("the multipart form body cannot be read (no boundary)")
    # Counted before parsing: the parser's time and memory grow with the parts.
    parts = body.count(b"--" + boundary.encode("latin-1")) - 1
    if parts > MAX_PARTS:
        raise PayloadTooLarge(f"the form has {parts} parts; at most {MAX_PARTS} are taken")
    # The standard library's MIME parser reads a form body as a multipart message.
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart() or not message.get_boundary():
        raise InvalidInput("the multipart form body cannot be read (no boundary)")
    fields: dict[str, list[bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or not name:
            raise InvalidInput("every form field needs a name: the model input it is for")
        payload = part.get_payload(decode=True)
        fields.setdefault(name, []).append(payload if isinstance(payload, bytes) else b"")
    if not fields:
        raise InvalidInput("the multipart form has no fields")
    inputs = {}
    for name, values in fields.items():
        array = np.empty(len(values), dtype=object)
        array[:] = values
        inputs[name] = array
    return InferRequest(inputs=inputs)
