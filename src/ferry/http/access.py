"""RequestContext: the outermost middleware. Gives every request an id (the client's
``X-Request-ID`` when it is a sensible one, else a new one), returns it on the answer,
puts it on every log line written while the request is served, and writes the access
log line (when ``--access-log`` is on): method, path, status, duration, and for
inference the model and the version that answered. Never the body, the query string or
a header."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ferry.errors import CLIENT_CLOSED
from ferry.logs import REQUEST_ID
from ferry.requestinfo import RequestInfo

log = logging.getLogger("ferry.access")

# Ids from upstream proxies and tracing systems: UUIDs, hex, base64-ish. Anything else
# (too long, spaces, control characters) is replaced rather than logged.
_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
INFO_KEY = "ferry.info"  # scope["state"][INFO_KEY]: the RequestInfo of an inference request


class RequestContext:
    def __init__(self, app: ASGIApp, access_log: bool) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_id(scope["headers"]) or uuid.uuid4().hex
        header = (b"x-request-id", request_id.encode())
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter_ns()
        status = CLIENT_CLOSED  # unless an answer starts

        async def with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, with_id)
        finally:
            if self.access_log:
                self._log(scope, status, started)
            REQUEST_ID.reset(token)

    @staticmethod
    def _log(scope: Scope, status: int, started: int) -> None:
        info = scope.get("state", {}).get(INFO_KEY)
        client = scope.get("client")
        fields: dict[str, object] = {
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "duration_ms": round((time.perf_counter_ns() - started) / 1e6, 3),
            "client": client[0] if client else None,
        }
        if isinstance(info, RequestInfo):
            fields["model"] = info.model
            fields["version"] = info.version or None
        log.info("request", extra=fields)


def incoming_id(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """The client's ``X-Request-ID`` (HTTP header or gRPC metadata), if it is a sensible one."""
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _ID.fullmatch(text) else None
    return None
