"""The management API's upload limit, enforced while the body arrives."""

from __future__ import annotations

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ferry.http.errors import error_response


class UploadLimit:
    """Refuses a management request body over ``limit`` bytes with 413 as it arrives,
    before the multipart parser has spooled all of it to disk."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/v1/"):
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            message = f"the upload is {int(length)} bytes; the limit is {self.limit}"
            await error_response(413, message)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                # FastAPI turns other errors while parsing a form into 400.
                raise HTTPException(413, f"the upload is over the {self.limit}-byte limit")
            return message

        await self.app(scope, limited, send)
