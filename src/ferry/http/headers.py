"""Security headers on every response, inference answers included."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# API answers are data, never documents: nothing in them may run, frame or be sniffed.
# A page that needs more (/docs) sets its own Content-Security-Policy.
_ALWAYS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
# Only over TLS: a browser ignores it on plain HTTP anyway.
_HSTS = (b"strict-transport-security", b"max-age=31536000")


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tls = scope.get("scheme") == "https"

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += _ALWAYS
                if not any(name.lower() == b"content-security-policy" for name, _ in headers):
                    headers.append(_CSP)
                if tls:
                    headers.append(_HSTS)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
