"""``/api/v1/keys`` and ``/api/v1/audit`` (admin): make, list and revoke API keys, and
read the audit trail."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, Field, field_validator
from starlette.requests import Request
from starlette.responses import Response

from ferry.errors import Forbidden, InvalidInput
from ferry.http import docs
from ferry.http.fields import PlainText
from ferry.http.scopes import requires
from ferry.security.audit import AuditEvent, utcnow
from ferry.security.audit_writer import AuditWriter
from ferry.security.auth import Authenticator
from ferry.security.keys import ApiKey, Scope, parse_expiry, parse_scopes
from ferry.security.ratelimit import parse_rate

router = APIRouter(prefix="/api/v1", tags=["security"])

FLUSH_TIMEOUT_S = 5.0  # a read of the trail waits this long at most for queued rows

KeyId = Annotated[str, PathParam(description="The key's id (not its secret)", examples=["3f9c0a1b2c4d"])]


class NewKey(BaseModel):
    name: PlainText = Field(min_length=1, max_length=128, examples=["checkout-service"])
    scopes: list[str] = Field(description="read, infer, deploy and/or admin", examples=[["infer"]])
    models: list[str] | None = Field(None, description="Models the key may use; null: all", examples=[["digits"]])
    rate: str | None = Field(None, description="Requests per s, m or h; null: unlimited", examples=["50/s"])
    expires: str | None = Field(
        None, description="A duration from now (30d, 12h, 90m) or an ISO 8601 time; null: never", examples=["30d"]
    )

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        return sorted(s.value for s in parse_scopes(value))


class KeyOut(BaseModel):
    id: str = Field(examples=["3f9c0a1b2c4d"])
    name: str
    scopes: list[str]
    models: list[str] | None
    rate_per_s: float | None
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    state: str = Field(description="active, expired or revoked", examples=["active"])

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        now = utcnow()
        state = "revoked" if key.revoked_at else "expired" if key.expired(now) else "active"
        return cls(
            id=key.key_id,
            name=key.name,
            scopes=sorted(s.value for s in key.scopes),
            models=sorted(key.models) if key.models is not None else None,
            rate_per_s=key.rate_per_s,
            created_at=key.created_at,
            created_by=key.created_by,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
            state=state,
        )


class CreatedKey(KeyOut):
    key: str = Field(description="The key itself: shown this once, never stored", examples=["fy_3f9c0a1b2c4d_..."])


class AuditOut(BaseModel):
    at: datetime
    key_id: str | None
    key_name: str
    action: str = Field(examples=["set_stage"])
    target: str = Field(examples=["digits/production"])
    method: str
    path: str
    status: int
    result: str = Field(
        description="ok, denied (401/403/429), failed, or dropped (events the full queue only counted)",
        examples=["ok"],
    )
    client: str
    count: int = Field(
        description="How many attempts this row stands for: repeats of a refused or failed attempt by one key "
        'on one action are aggregated per window ("(various)": a detail that differed between them)',
        examples=[1],
    )
    model: str | None = Field(description="The model the action was about; null: none (keys)", examples=["digits"])

    @classmethod
    def of(cls, event: AuditEvent) -> AuditOut:
        return cls(**event.__dict__)


def _auth(request: Request) -> Authenticator:
    auth: Authenticator | None = request.app.state.auth
    if auth is None or auth.store is None:
        raise InvalidInput("this server runs without API keys")
    return auth


def _unrestricted(request: Request) -> None:
    """Only an admin key without a model list or a rate manages keys: a limited one could
    otherwise make itself an unlimited one."""
    key: ApiKey | None = getattr(request.state, "key", None)
    if key is not None and (key.models is not None or key.rate_per_s is not None):
        raise Forbidden("a key limited to some models or to a rate cannot manage keys")


def _models_of(request: Request) -> frozenset[str] | None:
    """The models the request's key is limited to; None: every model."""
    key: ApiKey | None = getattr(request.state, "key", None)
    return key.models if key is not None else None


def _within(key: ApiKey, models: frozenset[str] | None) -> bool:
    """Whether ``key`` can do nothing outside ``models``: an admin key limited to some
    models sees only such keys (its own among them), never an unlimited one."""
    return models is None or (key.models is not None and key.models <= models)


@router.get(
    "/keys",
    summary="List API keys (never their secrets)",
    description="An admin key limited to some models sees only the keys limited to some of those models.",
)
@requires(Scope.ADMIN)
async def list_keys(request: Request) -> list[KeyOut]:
    store = _auth(request).store
    assert store is not None
    models = _models_of(request)
    return [KeyOut.of(key) for key in await asyncio.to_thread(store.all) if _within(key, models)]


@router.post("/keys", status_code=201, summary="Create an API key", description="The answer holds the key once.")
@requires(Scope.ADMIN)
async def create_key(body: NewKey, request: Request, response: Response) -> CreatedKey:
    # The answer holds a secret: no cache (a proxy's or the browser's) may keep it.
    response.headers["Cache-Control"] = "no-store"
    _unrestricted(request)
    auth = _auth(request)
    assert auth.store is not None
    try:
        rate = parse_rate(body.rate) if body.rate else None
        expires = parse_expiry(body.expires, utcnow()) if body.expires else None
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    creator = getattr(request.state, "key", None)
    key, text = await asyncio.to_thread(
        auth.store.create,
        body.name,
        parse_scopes(body.scopes),
        body.models,
        rate,
        expires,
        creator.label if creator is not None else "",
    )
    auth.remember(key)
    request.state.audit_target = key.key_id
    return CreatedKey(**KeyOut.of(key).model_dump(), key=text)


@router.delete(
    "/keys/{key_id}",
    summary="Revoke an API key",
    description="It stops working at once.",
    responses={404: {**docs.ERROR, "description": "No key with this id"}},
)
@requires(Scope.ADMIN)
async def revoke_key(key_id: KeyId, request: Request) -> KeyOut:
    _unrestricted(request)
    auth = _auth(request)
    assert auth.store is not None
    key = await asyncio.to_thread(auth.store.revoke, key_id)
    auth.remember(key)
    return KeyOut.of(key)


@router.get(
    "/audit",
    summary="The audit trail, newest first",
    description="An admin key limited to some models sees only the rows about those models.",
)
@requires(Scope.ADMIN)
async def audit(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    action: Annotated[str | None, Query(examples=["set_stage"])] = None,
    key_id: Annotated[str | None, Query()] = None,
    target: Annotated[str | None, Query(examples=["digits"])] = None,
    result: Annotated[str | None, Query(examples=["denied"])] = None,
    since: Annotated[datetime | None, Query(description="ISO 8601 time")] = None,
) -> list[AuditOut]:
    store = request.app.state.audit_store()
    if store is None:
        raise InvalidInput("this server keeps no audit trail")
    if since is not None:
        try:
            since = since.astimezone(UTC) if since.tzinfo is not None else since.replace(tzinfo=UTC)
        except OverflowError:
            raise InvalidInput(f"since {since.isoformat()} is out of range") from None
    writer: AuditWriter | None = request.app.state.audit_writer
    models = _models_of(request)

    def read() -> list[AuditEvent]:
        if writer is not None:
            # What this process has queued so far is in the answer (not repeats still
            # being counted in an open window: they are written when it closes).
            writer.flush(FLUSH_TIMEOUT_S)
        return store.audit(limit, action, key_id, target, result, since, models)

    return [AuditOut.of(event) for event in await asyncio.to_thread(read)]
