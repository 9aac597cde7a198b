"""Key texts, scopes and expiry: what a key is and what it allows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ferry.security.keys import ApiKey, Scope, new_secret, parse_expiry, parse_scopes, split

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def _key(scopes: set[Scope], models: set[str] | None = None, expires_at: datetime | None = None) -> ApiKey:
    made = new_secret()
    return ApiKey(
        made.key_id, "k", frozenset(scopes), made.digest, NOW, frozenset(models) if models else None, None, expires_at
    )


def test_a_new_key_splits_into_its_id_and_a_secret_that_matches() -> None:
    made = new_secret()
    parts = split(made.text)
    assert parts is not None and parts[0] == made.key_id
    key = ApiKey(made.key_id, "k", frozenset({Scope.READ}), made.digest, NOW)
    assert key.matches(parts[1])
    assert not key.matches(parts[1][:-1] + ("A" if parts[1][-1] != "A" else "B"))
    assert made.text not in repr(key) and made.digest not in repr(key)


def test_keys_are_unique_and_the_digest_is_not_the_secret() -> None:
    made = [new_secret() for _ in range(50)]
    assert len({m.text for m in made}) == 50 and len({m.key_id for m in made}) == 50
    assert all(m.digest not in m.text for m in made)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "fy_",
        "fy_abc_def",
        "Bearer fy_0123456789ab_" + "a" * 43,
        "fy_0123456789AB_" + "a" * 43,
        "fy_0123456789ab_" + "a" * 42,
    ],
)
def test_malformed_keys_do_not_split(text: str) -> None:
    assert split(text) is None


def test_admin_has_every_scope_and_others_only_their_own() -> None:
    assert all(_key({Scope.ADMIN}).has(s) for s in Scope)
    reader = _key({Scope.READ, Scope.INFER})
    assert reader.has(Scope.READ) and reader.has(Scope.INFER)
    assert not reader.has(Scope.DEPLOY) and not reader.has(Scope.ADMIN)


def test_model_allow_list() -> None:
    assert _key({Scope.INFER}).may_use("anything")
    limited = _key({Scope.INFER}, {"digits"})
    assert limited.may_use("digits") and not limited.may_use("iris")


def test_expiry_is_inclusive_of_the_moment() -> None:
    key = _key({Scope.READ}, expires_at=NOW)
    assert key.expired(NOW) and not key.expired(NOW - timedelta(microseconds=1))
    assert not _key({Scope.READ}).expired(NOW)


def test_parse_scopes() -> None:
    assert parse_scopes("infer, read") == {Scope.INFER, Scope.READ}
    assert parse_scopes(["admin"]) == {Scope.ADMIN}
    with pytest.raises(ValueError, match="unknown scope root"):
        parse_scopes("read,root")
    with pytest.raises(ValueError, match="at least one scope"):
        parse_scopes(" , ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", NOW + timedelta(days=30)),
        ("12h", NOW + timedelta(hours=12)),
        ("90m", NOW + timedelta(minutes=90)),
        ("2w", NOW + timedelta(weeks=2)),
        ("2027-01-01T00:00:00+01:00", datetime(2026, 12, 31, 23, 0, tzinfo=UTC)),
        ("2027-01-01", datetime(2027, 1, 1, tzinfo=UTC)),
    ],
)
def test_parse_expiry(text: str, expected: datetime) -> None:
    assert parse_expiry(text, NOW) == expected


@pytest.mark.parametrize("text", ["soon", "30 days", "-1d", "1y"])
def test_parse_expiry_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="invalid expiry"):
        parse_expiry(text, NOW)
