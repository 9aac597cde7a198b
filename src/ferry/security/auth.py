"""Authenticator: who sends a request, and whether they may. Keys are held in memory
and re-read from the KeyStore every ``refresh_s``, so checking one costs a dict lookup
and a hash, never a database query; a key revoked through another server process stops
working here within ``refresh_s``."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from ferry.errors import Forbidden, RateLimited, Unauthorized, Unavailable
from ferry.security.audit import utcnow
from ferry.security.keys import ApiKey, NewSecret, Scope, split
from ferry.security.ratelimit import RateLimiter, SharedRateLimiter, retry_after_s

if TYPE_CHECKING:
    from ferry.registry.keys import KeyStore

log = logging.getLogger("ferry.security")

# reason -> counted by the metrics (ferry_auth_failures_total{reason})
DenialObserver = Callable[[str, str | None], None]


# The web app's session: the key itself in an HttpOnly, SameSite=Strict cookie
# (ferry.http.session), so page scripts never hold it.
SESSION_COOKIE = "ferry_session"
# A request authenticated by the cookie that changes something must carry this header. A
# page on another origin cannot add it without a CORS preflight, which Ferry refuses, and
# SameSite does not separate two ports of one host.
CSRF_HEADER = "X-Ferry-CSRF"
_CSRF = CSRF_HEADER.lower().encode()
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


@dataclass(frozen=True)
class Credentials:
    key: str | None
    from_cookie: bool = False
    csrf_header: bool = False


def presented_key(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """The key in ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` (raw ASGI headers)."""
    return credentials(headers).key


def credentials(headers: Sequence[tuple[bytes, bytes]]) -> Credentials:
    """The request's key: from ``Authorization: Bearer`` or ``X-API-Key``, else from the
    session cookie."""
    cookie = None
    csrf = False
    for name, value in headers:
        if name == b"authorization":
            scheme, _, text = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and text.strip():
                return Credentials(text.strip())
        elif name == b"x-api-key" and value.strip():
            return Credentials(value.decode("latin-1").strip())
        elif name == b"cookie":
            cookie = _session_cookie(value.decode("latin-1")) or cookie
        elif name == _CSRF:
            csrf = True
    return Credentials(cookie, from_cookie=cookie is not None, csrf_header=csrf)


def _session_cookie(header: str) -> str | None:
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == SESSION_COOKIE and value:
            return value
    return None


class Authenticator:
    def __init__(
        self,
        open_store: Callable[[], KeyStore],
        refresh_s: float = 1.0,
        first_key: Callable[[str], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
        keys_exist: Callable[[], None] | None = None,
        bootstrap: NewSecret | None = None,
        shared_limits: SharedRateLimiter | None = None,
    ) -> None:
        # Opened by start(), in the background: `ferry serve` then imports SQLAlchemy and
        # migrates while its models load, instead of before.
        self._open_store = open_store
        self._first_key = first_key
        self._keys_exist = keys_exist
        # The operator's first admin key (FERRY_BOOTSTRAP_ADMIN_KEY): stored, never printed.
        self._bootstrap = bootstrap
        self.store: KeyStore | None = None
        self._refresh_s = refresh_s
        self._clock = clock
        # (key id -> key, key text -> key for texts already checked against them), swapped
        # whole in one assignment (reload runs in a thread); None until first read. A text
        # already checked skips the parse and the hash; only texts that matched a key get
        # in, so the second dict is bounded by the number of keys.
        self._snapshot: tuple[dict[str, ApiKey], dict[str, ApiKey]] | None = None
        # remember() vs. a reload running in a thread (see reload).
        self._lock = threading.Lock()
        self._generation = 0
        self._remembered: dict[str, tuple[int, ApiKey]] = {}
        self._limiter = RateLimiter()
        # Rates held across nodes (Redis); None: this process's own buckets.
        self.shared_limits = shared_limits
        self._observers: list[DenialObserver] = []

    def observe(self, observer: DenialObserver) -> None:
        self._observers.append(observer)

    @property
    def loaded(self) -> bool:
        return self._snapshot is not None

    def start(self) -> None:
        """Open the store; on a database that has never had a key, make the first admin key
        and hand its text to ``first_key`` (shown once), else call ``keys_exist``; read the
        keys. Blocking."""
        self.store = self._open_store()
        created = self.store.create_first_admin(self._bootstrap)
        if created is not None and self._bootstrap is not None:
            log.info("the first admin key is the bootstrap key (id %s)", self._bootstrap.key_id)
        elif created is not None and self._first_key is not None:
            self._first_key(created)
        elif created is None and self._keys_exist is not None:
            self._keys_exist()
        self.reload()

    def reload(self) -> None:
        """Read every key from the store (blocking: call it in a thread)."""
        if self.store is None:
            return
        with self._lock:
            generation = self._generation
        keys = {key.key_id: key for key in self.store.all()}
        with self._lock:
            # A key created or revoked here while the query ran may be missing from its
            # result or stale in it: what this process did meanwhile wins.
            for key_id, (made, key) in list(self._remembered.items()):
                if made > generation:
                    keys[key_id] = key
                else:
                    del self._remembered[key_id]
            self._snapshot = (keys, {})
        log.debug("read %d API keys", len(keys))

    async def refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            try:
                await asyncio.to_thread(self.reload)
            except Exception as exc:  # a database hiccup: keep the keys we have
                log.warning("could not re-read the API keys: %s", exc)

    def remember(self, key: ApiKey) -> None:
        """A key this process created or revoked counts here at once, not after a refresh."""
        with self._lock:
            self._generation += 1
            self._remembered[key.key_id] = (self._generation, key)
            if self._snapshot is not None:
                self._snapshot = ({**self._snapshot[0], key.key_id: key}, {})

    async def check(
        self, headers: Sequence[tuple[bytes, bytes]], scope: Scope, model: str | None = None, method: str = "POST"
    ) -> ApiKey:
        """The request's key if it may do ``scope`` (on ``model``); else 401, 403 or 429."""
        key = self.authenticate(headers, method)
        await self.authorize(key, scope, model)
        return key

    async def authorize(self, key: ApiKey, scope: Scope, model: str | None = None) -> None:
        """403 unless ``key`` has ``scope`` (and may use ``model``); 429 over its rate."""
        self.permit(key, scope, model)
        await self.throttle(key)

    def permit(self, key: ApiKey, scope: Scope, model: str | None = None) -> None:
        """403 unless ``key`` has ``scope`` (and may use ``model``)."""
        if not key.has(scope):
            self._deny("scope", key.key_id)
            raise Forbidden(f"this key lacks the {scope.value!r} scope")
        if model is not None and not key.may_use(model):
            self._deny("model", key.key_id)
            raise Forbidden(f"this key may not use model {model!r}")

    async def throttle(self, key: ApiKey) -> None:
        """429 when ``key`` is over its rate: counted across nodes when they share Redis."""
        if key.rate_per_s is None:
            return
        if self.shared_limits is not None:
            wait_s = await self.shared_limits.take(key.key_id, key.rate_per_s)
        else:
            wait_s = self._limiter.take(key.key_id, key.rate_per_s)
        if wait_s is not None:
            self._deny("rate_limited", key.key_id)
            raise RateLimited(f"rate limit of this key exceeded; retry in {wait_s:.2f} s", retry_after_s(wait_s))

    def authenticate(self, headers: Sequence[tuple[bytes, bytes]], method: str = "GET") -> ApiKey:
        """The HTTP request's valid key, whatever it may do; else 401 (403 for a
        cookie-borne change without the CSRF header)."""
        presented = credentials(headers)
        key = self.identify(presented.key)
        if presented.from_cookie and not presented.csrf_header and method not in _SAFE_METHODS:
            self._deny("csrf", key.key_id)
            raise Forbidden(f"a change made with the session cookie needs the {CSRF_HEADER} header")
        return key

    async def admit(self, text: str | None, scope: Scope, model: str | None = None) -> ApiKey:
        """The transport-neutral check: the key ``text`` (from HTTP headers, a cookie or
        gRPC metadata) if it may do ``scope`` (on ``model``); else 401, 403 or 429."""
        key = self.identify(text)
        await self.authorize(key, scope, model)
        return key

    def identify(self, text: str | None) -> ApiKey:
        """The valid key whose text was presented, whatever it may do; else 401 (503 while
        the keys are not read yet)."""
        snapshot = self._snapshot
        if snapshot is None:
            raise Unavailable("the server is starting; its API keys are not read yet")
        if text is None:
            self._deny("missing", None)
            raise Unauthorized("an API key is required: send Authorization: Bearer <key> or X-API-Key: <key>")
        keys, verified = snapshot
        key = verified.get(text)
        if key is None:
            parts = split(text)
            key = keys.get(parts[0]) if parts is not None else None
            if parts is None or key is None or not key.matches(parts[1]):
                self._deny("invalid", None)
                raise Unauthorized("invalid API key")
            verified[text] = key  # into this snapshot's cache, never a newer one's
        if key.revoked_at is not None:
            self._deny("revoked", key.key_id)
            raise Unauthorized("this API key has been revoked")
        if key.expired(self._clock()):
            self._deny("expired", key.key_id)
            raise Unauthorized("this API key has expired")
        return key

    def _deny(self, reason: str, key_id: str | None) -> None:
        for observer in self._observers:
            observer(reason, key_id)
