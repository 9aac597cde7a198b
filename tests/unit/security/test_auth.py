"""The Authenticator against a real KeyStore (SQLite in a temporary directory)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ferry.errors import Forbidden, InvalidInput, RateLimited, Unauthorized, Unavailable
from ferry.registry import connect, default_url, migrate
from ferry.registry.keys import KeyStore
from ferry.security.audit import utcnow
from ferry.security.auth import Authenticator, presented_key
from ferry.security.keys import Scope


def check(auth: Authenticator, *args: Any) -> Any:
    """``auth.check`` (a coroutine: a shared rate limit asks Redis) run to its answer."""
    return asyncio.run(auth.check(*args))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[KeyStore]:
    engine = connect(default_url(tmp_path))
    migrate(engine)
    yield KeyStore(engine)
    engine.dispose()


def _bearer(text: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {text}".encode())]


def test_presented_key_reads_both_headers() -> None:
    assert presented_key([(b"authorization", b"Bearer abc")]) == "abc"
    assert presented_key([(b"authorization", b"bearer  abc ")]) == "abc"
    assert presented_key([(b"x-api-key", b"abc")]) == "abc"
    assert presented_key([(b"authorization", b"Basic abc")]) is None
    assert presented_key([(b"authorization", b"Bearer ")]) is None
    assert presented_key([]) is None


def test_first_admin_key_is_made_once(store: KeyStore) -> None:
    shown: list[str] = []
    Authenticator(lambda: store, first_key=shown.append).start()
    Authenticator(lambda: store, first_key=shown.append).start()
    assert len(shown) == 1
    [admin] = store.all()
    assert admin.scopes == {Scope.ADMIN} and admin.name == "admin"


def test_no_first_key_on_a_database_whose_keys_are_all_revoked(store: KeyStore) -> None:
    key, _ = store.create("only", [Scope.ADMIN])
    store.revoke(key.key_id)
    assert store.create_first_admin() is None


@pytest.mark.parametrize("name", ["ci\nadmin", "ci\u202eadmin", "ci\u200b"])
def test_a_key_name_is_one_line_without_hidden_characters(store: KeyStore, name: str) -> None:
    with pytest.raises(InvalidInput, match="a key name must be one line"):
        store.create(name, [Scope.READ])
    assert store.all() == []


def test_a_key_is_limited_to_model_names_not_lookalikes(store: KeyStore) -> None:
    with pytest.raises(InvalidInput, match="is not a model name"):
        store.create("ci", [Scope.INFER], models=["digits", "digits\n"])
    key, _ = store.create("ci", [Scope.INFER], models=["digits"])
    assert key.models == frozenset({"digits"})


def test_requests_wait_for_the_keys_to_be_read(store: KeyStore) -> None:
    auth = Authenticator(lambda: store)
    with pytest.raises(Unavailable):
        check(auth, [], Scope.READ)


def test_check(store: KeyStore) -> None:
    auth = Authenticator(lambda: store)
    auth.start()
    _, reader = store.create("r", [Scope.READ], models=["digits"])
    _, slow = store.create("s", [Scope.INFER], rate_per_s=1.0)
    auth.reload()
    denials: list[tuple[str, str | None]] = []
    auth.observe(lambda reason, key_id: denials.append((reason, key_id)))
    assert check(auth, _bearer(reader), Scope.READ, "digits").name == "r"
    with pytest.raises(Forbidden, match="'infer' scope"):
        check(auth, _bearer(reader), Scope.INFER, "digits")
    with pytest.raises(Forbidden, match="model 'iris'"):
        check(auth, _bearer(reader), Scope.READ, "iris")
    with pytest.raises(Unauthorized, match="required"):
        check(auth, [], Scope.READ)
    with pytest.raises(Unauthorized, match="invalid"):
        check(auth, _bearer(reader[:-1] + "x"), Scope.READ)
    check(auth, _bearer(slow), Scope.INFER)
    with pytest.raises(RateLimited) as limited:
        check(auth, _bearer(slow), Scope.INFER)
    assert limited.value.retry_after_s == 1
    assert [reason for reason, _ in denials] == ["scope", "model", "missing", "invalid", "rate_limited"]


def test_expired_and_revoked(store: KeyStore) -> None:
    clock = [utcnow()]
    auth = Authenticator(lambda: store, clock=lambda: clock[0])
    auth.start()
    key, text = store.create("e", [Scope.READ], expires_at=clock[0] + timedelta(hours=1))
    auth.remember(key)
    check(auth, _bearer(text), Scope.READ)
    clock[0] += timedelta(hours=1)
    with pytest.raises(Unauthorized, match="expired"):
        check(auth, _bearer(text), Scope.READ)
    auth.remember(store.revoke(key.key_id))
    with pytest.raises(Unauthorized, match="revoked"):
        check(auth, _bearer(text), Scope.READ)


def test_a_key_is_refused_in_the_past(store: KeyStore) -> None:
    from ferry.errors import InvalidInput

    with pytest.raises(InvalidInput, match="future"):
        store.create("x", [Scope.READ], expires_at=utcnow() - timedelta(seconds=1))


def test_a_reload_that_raced_a_revocation_does_not_undo_it(store: KeyStore) -> None:
    """The reload's query ran before the revocation committed, and finished after this
    process remembered it: the revocation must stand."""
    auth = Authenticator(lambda: store)
    auth.start()
    key, text = store.create("k", [Scope.READ])
    auth.reload()
    stale = store.all()  # read before the revocation

    def racing_read() -> list:  # type: ignore[type-arg]
        auth.remember(store.revoke(key.key_id))  # happens while the query is in flight
        return stale

    store.all = racing_read  # type: ignore[method-assign]
    auth.reload()
    with pytest.raises(Unauthorized, match="revoked"):
        check(auth, _bearer(text), Scope.READ)


def test_the_bootstrap_key_becomes_the_first_admin_key_and_is_not_shown(store: KeyStore) -> None:
    from ferry.security.keys import given_secret, new_secret

    text = new_secret().text
    shown: list[str] = []
    auth = Authenticator(lambda: store, first_key=shown.append, bootstrap=given_secret(text + "\n"))
    auth.start()
    assert shown == []
    [admin] = store.all()
    assert admin.scopes == {Scope.ADMIN} and admin.created_by == "FERRY_BOOTSTRAP_ADMIN_KEY"
    assert check(auth, ((b"x-api-key", text.encode()),), Scope.ADMIN).key_id == admin.key_id
    # On a database with keys, another bootstrap key is no key.
    Authenticator(lambda: store, bootstrap=given_secret(new_secret().text)).start()
    assert len(store.all()) == 1
    with pytest.raises(ValueError, match="not a Ferry key"):
        given_secret("hunter2")
