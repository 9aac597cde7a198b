"""The inference endpoints, served straight on ASGI in front of the FastAPI app.

FastAPI's routing, dependency injection and middleware stack cost more per request
than decoding and running a small model; infer is the one hot path, so it skips them.
Every other route goes to FastAPI. The OpenAPI description of these endpoints is in
``docs.INFER_PATHS``."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from ferry.codecs.form import decode_form, is_form
from ferry.codecs.v1 import V1Codec
from ferry.codecs.v2 import V2Codec, V2Payload
from ferry.dataplane import DataPlane
from ferry.errors import CLIENT_CLOSED, FerryError
from ferry.http.access import INFO_KEY
from ferry.http.body import ClientDisconnected, read_body, unless_disconnected
from ferry.http.errors import INTERNAL_ERROR, error_headers, is_server_fault
from ferry.requestinfo import RequestInfo
from ferry.security.auth import Authenticator
from ferry.security.keys import Scope as KeyScope
from ferry.settings import Settings

if TYPE_CHECKING:
    from ferry.tracing import InferTracing

log = logging.getLogger("ferry.http")

V2_INFER = re.compile(r"/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer")
# Greedy: "a:b:predict" is model "a:b" (unknown: 404), not a route FastAPI answers 405.
V1_PREDICT = re.compile(r"/v1/models/(?P<name>[^/]+):predict")

# status, headers, body
_Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
_Work = Coroutine[Any, Any, _Answer]

_JSON = b"application/json"
_BINARY = b"application/octet-stream"


class InferEndpoints:
    """``POST /v2/models/{m}[/versions/{v}]/infer`` and ``POST /v1/models/{m}:predict``."""

    def __init__(
        self,
        app: ASGIApp,
        dataplane: DataPlane,
        settings: Settings,
        auth: Authenticator | None = None,
        tracing: InferTracing | None = None,
    ) -> None:
        self.app = app
        self._auth = auth
        self._tracing = tracing
        # A RequestInfo is made per request only when something reads it.
        self._want_info = settings.access_log or tracing is not None
        self._plane = dataplane
        self._limit = settings.max_body_bytes
        self._v2 = V2Codec(settings.max_tensor_elements)
        self._v1 = V1Codec(settings.max_tensor_elements)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        v2 = V2_INFER.fullmatch(scope["path"])
        v1 = None if v2 is not None else V1_PREDICT.fullmatch(scope["path"])
        if v2 is None and v1 is None:
            await self.app(scope, receive, send)
        elif scope["method"] != "POST":
            match = v2 if v2 is not None else v1
            assert match is not None
            self._plane.refused(match["name"], "v2" if v2 is not None else "v1", 405, time.perf_counter_ns())
            await self._respond(send, _not_allowed())
        elif not self._want_info:
            if v2 is not None:
                await self._respond(send, self._infer_v2(scope, receive, v2["name"], v2["version"], None))
            elif v1 is not None:
                await self._respond(send, self._predict_v1(scope, receive, v1["name"], None))
        else:
            await self._observed(scope, receive, send, v2, v1)

    async def _observed(
        self, scope: Scope, receive: Receive, send: Send, v2: re.Match[str] | None, v1: re.Match[str] | None
    ) -> None:
        """The same, with a RequestInfo for the access log and tracing."""
        match = v2 if v2 is not None else v1
        assert match is not None
        info = RequestInfo(protocol="v2" if v2 is not None else "v1", model=match["name"])
        scope.setdefault("state", {})[INFO_KEY] = info
        if v2 is not None:
            status = await self._respond(send, self._infer_v2(scope, receive, v2["name"], v2["version"], info))
            route = "/v2/models/{name}" + ("/versions/{version}" if v2["version"] else "") + "/infer"
        else:
            status = await self._respond(send, self._predict_v1(scope, receive, match["name"], info))
            route = "/v1/models/{name}:predict"
        if self._tracing is not None:
            self._tracing.record(info, route, scope["headers"], status)

    async def _infer_v2(
        self, scope: Scope, receive: Receive, name: str, version: str | None, info: RequestInfo | None
    ) -> _Answer:
        length, encoding, header_length, content_type = _headers(scope)
        body = await self._admit(scope, receive, name, "v2", length, encoding)
        form = None
        if is_form(content_type):
            assert content_type is not None
            started = time.perf_counter_ns()
            try:
                form = await asyncio.to_thread(decode_form, body, content_type)
            except FerryError as exc:
                self._plane.refused(name, "v2", exc.status, started)
                raise
        payload = V2Payload(body, header_length, form)
        encoded = await unless_disconnected(receive, self._plane.infer(name, version, payload, self._v2, info))
        headers = [(b"content-type", _BINARY if encoded.header_length is not None else _JSON)]
        if encoded.header_length is not None:
            headers.append((b"inference-header-content-length", str(encoded.header_length).encode()))
        return 200, headers, encoded.body

    async def _predict_v1(self, scope: Scope, receive: Receive, name: str, info: RequestInfo | None) -> _Answer:
        length, encoding, _, _ = _headers(scope)
        body = await self._admit(scope, receive, name, "v1", length, encoding)
        encoded = await unless_disconnected(receive, self._plane.infer(name, None, body, self._v1, info))
        return 200, [(b"content-type", _JSON)], encoded

    async def _admit(
        self, scope: Scope, receive: Receive, name: str, protocol: str, length: str | None, encoding: str | None
    ) -> bytes:
        """The key check, before the body is read, then the body within the model's limit.
        A refusal here (401/403/429, 413, 400) is counted like any answer."""
        started = time.perf_counter_ns()
        try:
            if self._auth is not None:
                await self._auth.check(scope["headers"], KeyScope.INFER, name)
            return await read_body(receive, length, encoding, self._plane.body_limit(name, self._limit))
        except FerryError as exc:
            self._plane.refused(name, protocol, exc.status, started)
            raise

    async def _respond(self, send: Send, work: _Work) -> int:
        """Send the answer; its status (499 when the client left first)."""
        try:
            status, headers, body = await work
        except ClientDisconnected:
            return CLIENT_CLOSED
        except FerryError as exc:
            status, headers, body = _error(exc, self._plane.public(exc.message))
        except Exception:
            log.exception("unhandled error while serving an inference request")
            status, headers, body = 500, [(b"content-type", _JSON)], _ERROR_500
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return status


_ERROR_500 = orjson.dumps({"error": INTERNAL_ERROR})


async def _not_allowed() -> _Answer:
    body = orjson.dumps({"error": "method not allowed; use POST"})
    return 405, [(b"content-type", _JSON), (b"allow", b"POST")], body


def _headers(scope: Scope) -> tuple[str | None, str | None, str | None, str | None]:
    """Content-Length, Content-Encoding, Inference-Header-Content-Length and Content-Type,
    in one pass."""
    length = encoding = header_length = content_type = None
    for key, value in scope["headers"]:
        if key == b"content-length":
            length = value.decode("latin-1")
        elif key == b"content-encoding":
            encoding = value.decode("latin-1")
        elif key == b"inference-header-content-length":
            header_length = value.decode("latin-1")
        elif key == b"content-type":
            content_type = value.decode("latin-1")
    return length, encoding, header_length, content_type


def _error(exc: FerryError, public_message: str) -> _Answer:
    """The log keeps the message as raised; the client reads it without server paths."""
    if is_server_fault(exc):
        log.error("inference failed: %s", exc.message)
    headers = [(b"content-type", _JSON)]
    headers += [(key.lower().encode(), value.encode()) for key, value in error_headers(exc).items()]
    return exc.status, headers, orjson.dumps({"error": public_message})
