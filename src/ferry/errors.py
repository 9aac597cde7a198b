"""Errors that map to an HTTP status: raised anywhere on the request path, answered as
``{"error": "<message>"}`` by the transport."""

from __future__ import annotations

# nginx's "client closed request": the client left before its answer. Nobody reads it,
# but access logs and metrics show why the request ended.
CLIENT_CLOSED = 499


class FerryError(Exception):
    """Base class: ``status`` is the HTTP status the REST transport answers with,
    ``grpc_code`` the name of the ``grpc.StatusCode`` the gRPC transport answers with
    (docs/errors.md has the whole table)."""

    status = 500
    grpc_code = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(FerryError):
    """The client sent something the model cannot accept (400)."""

    status = 400
    grpc_code = "INVALID_ARGUMENT"


class Unauthorized(FerryError):
    """No API key, or one that is unknown, expired or revoked (401)."""

    status = 401
    grpc_code = "UNAUTHENTICATED"


class Forbidden(FerryError):
    """A valid key without the scope or the model the request needs (403)."""

    status = 403
    grpc_code = "PERMISSION_DENIED"


class NotFound(FerryError):
    """Unknown model, version or route (404)."""

    status = 404
    grpc_code = "NOT_FOUND"


class Conflict(FerryError):
    """The request clashes with the current state: a duplicate name, or removing a
    version that still takes traffic (409)."""

    status = 409
    grpc_code = "FAILED_PRECONDITION"


class PayloadTooLarge(FerryError):
    """Body or tensor over the configured limit (413)."""

    status = 413
    grpc_code = "RESOURCE_EXHAUSTED"


class Unavailable(FerryError):
    """Not ready, overloaded or timed out in the queue (503, with Retry-After)."""

    status = 503
    grpc_code = "UNAVAILABLE"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimited(FerryError):
    """The key has used up its request rate (429, with Retry-After)."""

    status = 429
    grpc_code = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ModelFailed(FerryError):
    """The model itself raised while running a valid request (500)."""

    status = 500


class ConfigError(Exception):
    """A model's files or config.yaml cannot be used; the message says why."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (libraries put details, paths included,
    on later lines), or its type name when it has no message."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
