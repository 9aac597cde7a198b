"""Every error leaves as ``{"error": "<message>"}`` with the status DESIGN.md lists;
stack traces and file paths stay in the server log."""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from ferry.errors import CLIENT_CLOSED, FerryError, RateLimited, Unauthorized, Unavailable
from ferry.http.body import ClientDisconnected

log = logging.getLogger("ferry.http")

INTERNAL_ERROR = "internal server error; the server log has the details"


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps({"error": message}), status_code=status, media_type="application/json", headers=headers
    )


def error_headers(exc: FerryError) -> dict[str, str]:
    """A 503 or 429 says when to come back; a 401 says how to authenticate (RFC 6750)."""
    if isinstance(exc, Unavailable | RateLimited):
        return {"Retry-After": str(exc.retry_after_s)}
    if isinstance(exc, Unauthorized):
        return {"WWW-Authenticate": 'Bearer realm="ferry"'}
    return {}


def is_server_fault(exc: FerryError) -> bool:
    """5xx answers worth a log line: not the 503s of a busy or loading model."""
    return exc.status >= 500 and not isinstance(exc, Unavailable)


async def _ferry_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FerryError)
    if is_server_fault(exc):
        log.error("%s %s -> %d: %s", request.method, request.url.path, exc.status, exc.message)
    plane = getattr(request.app.state, "dataplane", None)
    message = plane.public(exc.message) if plane is not None else exc.message
    return error_response(exc.status, message, error_headers(exc) or None)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg')}")
    return error_response(400, "; ".join(parts) or "invalid request")


async def _disconnected(request: Request, exc: Exception) -> Response:
    return Response(status_code=CLIENT_CLOSED)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, INTERNAL_ERROR)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(FerryError, _ferry_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ClientDisconnected, _disconnected)
    # The client left while its body was still being read.
    app.add_exception_handler(ClientDisconnect, _disconnected)
    app.add_exception_handler(Exception, _unexpected)
