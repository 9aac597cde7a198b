"""API keys over the whole app (a registry server, in process): every route against every
kind of credential, model allow-lists, rate limits, revocation, and the audit trail."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from ferry.artifacts import LocalArtifactStore
from ferry.http import docs
from ferry.http.app import create_app
from ferry.manager import ModelManager
from ferry.registry import Registry, connect, default_url, migrate
from ferry.registry.keys import KeyStore
from ferry.registry_source import RegistrySource
from ferry.security.audit import utcnow
from ferry.security.auth import Authenticator
from ferry.security.keys import Scope
from ferry.settings import Settings
from tests.builders import scale_onnx
from tests.integration.serving import wait_ready

R, INF, D, A = Scope.READ, Scope.INFER, Scope.DEPLOY, Scope.ADMIN

# Every route of a registry server and the scope it needs (None: open to anyone). Written
# out here, apart from the code's declarations, so a new route fails this test until
# someone decides who may call it.
LOGIN = "login"  # open, but answers 401 unless it is given a valid key to sign in with


@dataclass(frozen=True)
class Page:
    """A web app page: without a valid key, a redirect to /login (303); with a key that
    lacks ``scope``, a 403 page."""

    scope: Scope


EXPECTED: dict[tuple[str, str], Scope | str | Page | None] = {
    ("GET", "/"): Page(R),
    ("GET", "/models/{name}"): Page(R),
    ("GET", "/dashboard"): Page(R),
    ("GET", "/keys"): Page(A),
    ("GET", "/audit"): Page(A),
    ("GET", "/static/app"): None,
    ("GET", "/api/v1/catalog"): R,
    ("GET", "/api/v1/catalog/{name}"): R,
    ("GET", "/api/v1/live"): R,
    ("GET", "/api/v1/session"): LOGIN,
    ("GET", "/docs"): None,
    ("GET", "/favicon.ico"): None,
    ("GET", "/openapi.json"): None,
    ("GET", "/static/docs"): None,
    ("GET", "/static/ferry"): None,
    ("GET", "/metrics"): R,
    ("GET", "/v2/health/live"): None,
    ("GET", "/v2/health/ready"): None,
    ("GET", "/v2"): R,
    ("GET", "/v2/models/stats"): R,
    ("GET", "/v2/models/{name}"): R,
    ("GET", "/v2/models/{name}/versions/{version}"): R,
    ("GET", "/v2/models/{name}/ready"): R,
    ("GET", "/v2/models/{name}/versions/{version}/ready"): R,
    ("GET", "/v2/models/{name}/config"): R,
    ("GET", "/v2/models/{name}/versions/{version}/config"): R,
    ("GET", "/v2/models/{name}/stats"): R,
    ("GET", "/v2/models/{name}/versions/{version}/stats"): R,
    ("POST", "/v2/models/{name}/infer"): INF,
    ("POST", "/v2/models/{name}/versions/{version}/infer"): INF,
    ("POST", "/v2/repository/index"): R,
    ("POST", "/v2/repository/models/{name}/load"): D,
    ("POST", "/v2/repository/models/{name}/unload"): D,
    ("GET", "/v1/models"): R,
    ("GET", "/v1/models/{name}"): R,
    ("POST", "/v1/models/{name}:predict"): INF,
    ("GET", "/api/v1/models"): R,
    ("POST", "/api/v1/models"): D,
    ("GET", "/api/v1/models/{name}"): R,
    ("GET", "/api/v1/models/{name}/versions"): R,
    ("POST", "/api/v1/models/{name}/versions"): D,
    ("POST", "/api/v1/models/{name}/versions/{number}/archive"): D,
    ("DELETE", "/api/v1/models/{name}/versions/{number}"): D,
    ("PUT", "/api/v1/models/{name}/stages/{stage}"): D,
    ("POST", "/api/v1/models/{name}/rollback"): D,
    ("PUT", "/api/v1/models/{name}/traffic"): D,
    ("DELETE", "/api/v1/models/{name}/traffic"): D,
    ("GET", "/api/v1/models/{name}/shadow"): R,
    ("GET", "/api/v1/keys"): A,
    ("POST", "/api/v1/keys"): A,
    ("DELETE", "/api/v1/keys/{key_id}"): A,
    ("GET", "/api/v1/audit"): A,
    ("GET", "/login"): None,
    ("POST", "/api/v1/session"): LOGIN,
    ("DELETE", "/api/v1/session"): None,
}

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1.0, 2.0, 3.0, 4.0]}]}


@dataclass
class Server:
    client: TestClient
    store: KeyStore
    keys: dict[str, str]  # credential name -> key text
    ids: dict[str, str]  # credential name -> key id


def _make_keys(store: KeyStore) -> tuple[dict[str, str], dict[str, str]]:
    texts, ids = {}, {}
    for name, scopes, models in [
        ("admin", [A], None),
        ("read", [R], None),
        ("infer", [INF], None),
        ("deploy", [D], None),
        ("other-model", [R, INF, D], ["other"]),
        ("scale-admin", [A], ["scale"]),
        ("revoked", [A], None),
        ("victim", [R], None),  # revoked by the matrix's DELETE /api/v1/keys/{key_id}
    ]:
        key, text = store.create(name, scopes, models)
        texts[name], ids[name] = text, key.key_id
    expiring, text = store.create("expired", [A], expires_at=utcnow() + timedelta(seconds=1))
    texts["expired"], ids["expired"] = text, expiring.key_id
    store.revoke(ids["revoked"])
    return texts, ids


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with _running(tmp_path) as running:
        time.sleep(1.0)  # the "expired" key expires
        yield running


@contextmanager
def _running(tmp_path: Path) -> Iterator[Server]:
    """A registry server with the keys of _make_keys and model "scale" in production."""
    data_dir = tmp_path / "data"
    engine = connect(default_url(data_dir))
    migrate(engine)
    store = KeyStore(engine)
    assert store.create_first_admin() is not None  # the first start's key, unused here
    texts, ids = _make_keys(store)
    source = RegistrySource(Registry.from_engine(engine), LocalArtifactStore(data_dir / "artifacts"), data_dir)
    auth = Authenticator(lambda: store, refresh_s=0.2)
    app = create_app(Settings(data_dir=data_dir), ModelManager([], source), auth, audit=store)
    admin = {"Authorization": f"Bearer {texts['admin']}"}
    try:
        with TestClient(app) as client:
            wait_ready(client)
            with (tmp_path / "scale.onnx").open("wb") as f:
                f.write(scale_onnx(tmp_path / "model.onnx", 2.0).read_bytes())
            with (tmp_path / "scale.onnx").open("rb") as f:
                answer = client.post(
                    "/api/v1/models/scale/versions",
                    files={"file": ("scale.onnx", f)},
                    data={"stage": "production"},
                    headers=admin,
                )
            assert answer.status_code == 201, answer.text
            yield Server(client, store, texts, ids)
    finally:
        engine.dispose()


def _routes(server: Server) -> set[tuple[str, str]]:
    api = server.client.app.api  # type: ignore[attr-defined]
    found = {(method, path) for path, item in docs.INFER_PATHS.items() for method in map(str.upper, item)}
    for route in api.state.routes:
        for method in getattr(route, "methods", None) or {"GET"}:
            if method != "HEAD":
                found.add((method, route.path))
    return found


def test_every_route_has_an_expected_scope(server: Server) -> None:
    routes = _routes(server)
    assert routes - EXPECTED.keys() == set(), "a new route: add it to EXPECTED with the scope it needs"
    assert EXPECTED.keys() - routes == set()


CREDENTIALS = ["none", "malformed", "unknown", "wrong-secret", "expired", "revoked", "read", "infer", "deploy", "admin"]


def _headers(server: Server, credential: str) -> dict[str, str]:
    if credential == "none":
        return {}
    if credential == "malformed":
        return {"Authorization": "Bearer not-a-ferry-key"}
    if credential == "unknown":
        return {"Authorization": "Bearer fy_000000000000_" + "A" * 43}
    if credential == "wrong-secret":
        return {"Authorization": f"Bearer fy_{server.ids['admin']}_" + "B" * 43}
    # X-API-Key for half of them: both headers must work.
    if credential in ("read", "deploy", "expired"):
        return {"X-API-Key": server.keys[credential]}
    return {"Authorization": f"Bearer {server.keys[credential]}"}


def _concrete(path: str, server: Server, model: str = "scale") -> str:
    if path.startswith("/static/docs"):
        return "/static/docs/swagger-ui.css"
    if path.startswith("/static/ferry"):
        return "/static/ferry/docs-init.js"
    return (
        path.replace("{name}", model)
        .replace("{version}", "1")
        .replace("{number}", "99")  # no such version: archive/delete answer 404, nothing changes
        .replace("{stage}", "staging")
        .replace("{key_id}", server.ids["victim"])
    )


def _call(server: Server, method: str, path: str, headers: dict[str, str]) -> int:
    server.client.cookies.clear()  # a sign-in (POST /api/v1/session) must not carry over
    kwargs: dict[str, object] = {"headers": headers, "follow_redirects": False}
    if path.endswith(("/infer", ":predict")):
        kwargs["json"] = BODY if path.endswith("/infer") else {"instances": [[1.0, 2.0, 3.0, 4.0]]}
    elif method in ("POST", "PUT"):
        kwargs["json"] = {}
    if (method, path) == ("DELETE", "/api/v1/session"):  # sign-out: no key, only the CSRF header
        kwargs["headers"] = {**headers, "X-Ferry-CSRF": "1"}
    return server.client.request(method, path, **kwargs).status_code  # type: ignore[arg-type]


def _expected(needed: Scope | str | Page | None, credential: str) -> str:
    if needed is None:
        return "allowed"
    if credential in ("none", "malformed", "unknown", "wrong-secret", "expired", "revoked"):
        return "303" if isinstance(needed, Page) else "401"
    if needed == LOGIN:
        return "allowed"
    if isinstance(needed, Page):
        needed = needed.scope
    scope = Scope(credential)
    return "allowed" if scope is Scope.ADMIN or scope is needed else "403"


def test_matrix_of_routes_and_credentials(server: Server) -> None:
    """Every route x every credential: 401, 403 or let through (then any status but those)."""
    failures = []
    cells = 0
    for (method, path), needed in sorted(EXPECTED.items(), key=lambda kv: kv[0][1]):
        for credential in CREDENTIALS:
            status = _call(server, method, _concrete(path, server), _headers(server, credential))
            expected = _expected(needed, credential)
            cells += 1
            ok = status not in (401, 403) if expected == "allowed" else status == int(expected)
            if not ok:
                failures.append(f"{method} {path} as {credential}: {status}, expected {expected}")
    assert not failures, "\n".join(failures)
    assert cells == len(EXPECTED) * len(CREDENTIALS)


def test_model_allow_list(server: Server) -> None:
    """A key limited to model "other" gets 403 on every route naming another model."""
    headers = _headers(server, "other-model")
    headers["Authorization"] = f"Bearer {server.keys['other-model']}"
    for (method, path), needed in EXPECTED.items():
        if "{name}" not in path or needed in (None, Scope.ADMIN, LOGIN, Page(A)):
            continue
        status = _call(server, method, _concrete(path, server, "scale"), headers)
        assert status == 403, (method, path, status)
        status = _call(server, method, _concrete(path, server, "other"), headers)
        assert status != 403, (method, path, status)


def test_refusals_say_why(server: Server) -> None:
    client = server.client
    answer = client.get("/v2/models/scale")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert "API key is required" in answer.json()["error"]
    assert "revoked" in client.get("/v2", headers=_headers(server, "revoked")).json()["error"]
    assert "expired" in client.get("/v2", headers=_headers(server, "expired")).json()["error"]
    assert client.get("/v2", headers=_headers(server, "unknown")).json() == {"error": "invalid API key"}
    assert client.get("/v2", headers=_headers(server, "wrong-secret")).json() == {"error": "invalid API key"}
    answer = client.post("/v2/models/scale/infer", json=BODY, headers=_headers(server, "read"))
    assert answer.status_code == 403
    assert "'infer' scope" in answer.json()["error"]


def test_rate_limit_of_one_key_leaves_another_alone(server: Server) -> None:
    admin = {"Authorization": f"Bearer {server.keys['admin']}"}
    made = server.client.post("/api/v1/keys", json={"name": "slow", "scopes": ["infer"], "rate": "2/s"}, headers=admin)
    assert made.status_code == 201, made.text
    slow = {"Authorization": f"Bearer {made.json()['key']}"}
    fast = _headers(server, "infer")
    statuses = []
    for _ in range(6):
        statuses.append(server.client.post("/v2/models/scale/infer", json=BODY, headers=slow).status_code)
        assert server.client.post("/v2/models/scale/infer", json=BODY, headers=fast).status_code == 200
    assert statuses[:2] == [200, 200]
    assert 429 in statuses
    limited = server.client.post("/v2/models/scale/infer", json=BODY, headers=slow)
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    time.sleep(1.1)
    assert server.client.post("/v2/models/scale/infer", json=BODY, headers=slow).status_code == 200


def test_keys_are_created_listed_and_revoked(server: Server) -> None:
    admin = {"Authorization": f"Bearer {server.keys['admin']}"}
    client = server.client
    made = client.post(
        "/api/v1/keys",
        json={"name": "ci", "scopes": ["read", "deploy"], "models": ["scale"], "expires": "30d"},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    created = made.json()
    assert created["key"].startswith(f"fy_{created['id']}_")
    assert created["scopes"] == ["deploy", "read"] and created["models"] == ["scale"]
    assert made.headers["cache-control"] == "no-store"
    listed = client.get("/api/v1/keys", headers=admin).json()
    assert created["id"] in {k["id"] for k in listed}
    assert all("key" not in k and created["key"] not in str(k) for k in listed)
    states = {k["name"]: k["state"] for k in listed}
    assert states["revoked"] == "revoked" and states["expired"] == "expired" and states["ci"] == "active"
    new = {"X-API-Key": created["key"]}
    assert client.get("/api/v1/models/scale", headers=new).status_code == 200
    assert client.delete(f"/api/v1/keys/{created['id']}", headers=admin).json()["state"] == "revoked"
    assert client.get("/api/v1/models/scale", headers=new).status_code == 401  # at once, in this process
    for bad in ({"name": "x", "scopes": ["root"]}, {"name": "x", "scopes": []}, {"name": "", "scopes": ["read"]}):
        assert client.post("/api/v1/keys", json=bad, headers=admin).status_code == 400, bad
    for bad_rate in ("fast", "0/s", "-1/s"):
        body = {"name": "x", "scopes": ["read"], "rate": bad_rate}
        assert client.post("/api/v1/keys", json=body, headers=admin).status_code == 400, bad_rate
    assert client.delete("/api/v1/keys/000000000000", headers=admin).status_code == 404


def test_a_key_revoked_elsewhere_stops_working_after_a_refresh(server: Server) -> None:
    key = _headers(server, "infer")
    assert server.client.post("/v2/models/scale/infer", json=BODY, headers=key).status_code == 200
    server.store.revoke(server.ids["infer"])  # as another server process would, in the database
    deadline = time.monotonic() + 5
    while server.client.post("/v2/models/scale/infer", json=BODY, headers=key).status_code == 200:
        assert time.monotonic() < deadline, "the revoked key still works"
        time.sleep(0.05)


def test_audit_records_actions_and_refusals(server: Server) -> None:
    client = server.client
    admin = {"Authorization": f"Bearer {server.keys['admin']}"}
    assert client.put("/api/v1/models/scale/stages/staging", json={"version": 1}, headers=admin).status_code == 200
    assert client.put("/api/v1/models/scale/stages/staging", json={"version": 1}, headers=_headers(server, "infer"))
    assert client.get("/api/v1/audit", headers=_headers(server, "deploy")).status_code == 403
    # Without a valid key: counted in the metrics, not written down (anyone can send these).
    assert client.post("/api/v1/models/scale/rollback").status_code == 401
    assert client.get("/api/v1/models", headers=admin).status_code == 200  # a read: not recorded

    # One writer writes the rows in the order the requests were answered, and a read of
    # the trail waits for the rows queued before it.
    events = client.get("/api/v1/audit", headers=admin).json()
    top = [(e["action"], e["target"], e["result"], e["status"], e["key_name"]) for e in events[:3]]
    assert not any(e["action"] == "rollback" for e in events)
    assert top == [
        ("audit", "", "denied", 403, "deploy"),
        ("set_stage", "scale/staging", "denied", 403, "infer"),
        ("set_stage", "scale/staging", "ok", 200, "admin"),
    ]
    upload = [e for e in events if e["action"] == "upload_version"]
    assert upload and upload[-1]["target"] == "scale/1" and upload[-1]["key_id"] == server.ids["admin"]
    assert all(e["client"] for e in events)
    assert not any(e["action"] == "list_models" for e in events)
    # Filters
    only = client.get("/api/v1/audit", params={"result": "denied", "action": "set_stage"}, headers=admin).json()
    assert [e["key_name"] for e in only] == ["infer"]
    by_key = client.get("/api/v1/audit", params={"key_id": server.ids["admin"], "limit": 1}, headers=admin).json()
    assert len(by_key) == 1 and by_key[0]["action"] == "set_stage"
    version = client.get("/api/v1/models/scale/versions", headers=admin).json()[0]
    assert version["uploaded_by"] == f"admin ({server.ids['admin']})"


def test_a_flood_of_refusals_is_a_few_rows_whose_counts_add_up(tmp_path: Path) -> None:
    """Any valid key can send refused attempts as fast as it likes: repeats by one key on
    one action are one row with their count, written when the window closes or, as here,
    at shutdown, so none is lost."""
    n = 300
    with _running(tmp_path) as server:
        infer, deploy = _headers(server, "infer"), _headers(server, "deploy")
        for i in range(n):
            answer = server.client.put(f"/api/v1/models/m{i}/stages/staging", json={"version": 1}, headers=infer)
            assert answer.status_code == 403
        for _ in range(5):
            assert server.client.get("/api/v1/audit", headers=deploy).status_code == 403
        # Before the window closes, the first refusal is in the trail already.
        admin = {"Authorization": f"Bearer {server.keys['admin']}"}
        now = server.client.get("/api/v1/audit", params={"action": "set_stage"}, headers=admin).json()
        assert [(e["key_name"], e["target"], e["count"]) for e in now] == [("infer", "m0/staging", 1)]
    events = server.store.audit(limit=1000)
    refused = [e for e in events if e.action == "set_stage" and e.result == "denied"]
    assert len(refused) == 2 and sum(e.count for e in refused) == n
    assert refused[0].target == "(various)" and refused[0].count == n - 1
    assert sorted(e.count for e in events if e.action == "audit") == [1, 4]
    assert len(events) == 1 + 2 + 2  # the upload, and two rows for each flood


def test_an_admin_key_limited_to_some_models_sees_only_their_keys_and_audit(server: Server) -> None:
    """An admin key limited to model "scale" lists only the keys limited to (some of) its
    models, never an unlimited one, and reads only the audit rows about its models."""
    client = server.client
    admin = {"Authorization": f"Bearer {server.keys['admin']}"}
    limited = {"Authorization": f"Bearer {server.keys['scale-admin']}"}
    made = client.post(
        "/api/v1/keys", json={"name": "scale-reader", "scopes": ["read"], "models": ["scale"]}, headers=admin
    )
    assert made.status_code == 201, made.text
    assert client.put("/api/v1/models/scale/stages/staging", json={"version": 1}, headers=admin).status_code == 200
    other = _headers(server, "other-model")
    assert client.put("/api/v1/models/other/stages/staging", json={"version": 1}, headers=other).status_code == 404

    assert {k["name"] for k in client.get("/api/v1/keys", headers=limited).json()} == {"scale-admin", "scale-reader"}
    everyone = {k["name"] for k in client.get("/api/v1/keys", headers=admin).json()}
    assert {"admin", "other-model", "scale-admin", "scale-reader"} <= everyone

    events = client.get("/api/v1/audit", headers=limited).json()
    assert {e["action"] for e in events} == {"upload_version", "set_stage"}
    assert all(e["model"] == "scale" for e in events)
    assert client.get("/api/v1/audit", params={"target": "other/staging"}, headers=limited).json() == []
    full = client.get("/api/v1/audit", headers=admin).json()
    assert {e["model"] for e in full} == {"scale", "other", None}  # None: create_key
    # The web app's Keys and Audit pages draw from these same endpoints.
    for page in ("/keys", "/audit"):
        assert client.get(page, headers=limited).status_code == 200


def _counter(text: str, name: str, label: str) -> float:
    for line in text.splitlines():
        if line.startswith(f"{name}{{{label}}} "):
            return float(line.split()[-1])
    return 0.0


def test_refusals_are_counted_in_the_metrics(server: Server) -> None:
    client = server.client
    reader = _headers(server, "read")
    before = client.get("/metrics", headers=reader).text
    client.get("/v2")
    client.get("/v2", headers=_headers(server, "unknown"))
    client.get("/v2", headers=_headers(server, "revoked"))
    client.post("/v2/models/scale/infer", json=BODY, headers=reader)
    after = client.get("/metrics", headers=reader).text
    name = "ferry_auth_denied_requests_total"
    for reason in ("missing", "invalid", "revoked", "scope"):
        label = f'reason="{reason}"'
        assert _counter(after, name, label) == _counter(before, name, label) + 1, reason
    assert client.get("/metrics").status_code == 401


def test_refused_inference_is_counted_with_its_status(server: Server) -> None:
    """Inference refused before any version answers (no key, too large, wrong method) is in
    ferry_requests_total with version "" (model "" for names the server does not have)."""
    client = server.client
    reader = _headers(server, "read")
    name = "ferry_requests_total"

    def count(model: str, code: str) -> float:
        return _counter(
            client.get("/metrics", headers=reader).text,
            name,
            f'code="{code}",model="{model}",protocol="v2",version=""',
        )

    before = {(m, c): count(m, c) for m, c in [("scale", "401"), ("", "401"), ("scale", "403"), ("scale", "405")]}
    client.post("/v2/models/scale/infer", json=BODY)
    client.post("/v2/models/nope/infer", json=BODY)
    client.post("/v2/models/scale/infer", json=BODY, headers=reader)
    client.get("/v2/models/scale/infer", headers=_headers(server, "infer"))
    for key, was in before.items():
        assert count(*key) == was + 1, key


def test_lists_show_a_limited_key_only_its_models(server: Server) -> None:
    client = server.client
    limited = {"Authorization": f"Bearer {server.keys['other-model']}"}
    reader = _headers(server, "read")
    assert [m["name"] for m in client.get("/api/v1/models", headers=reader).json()] == ["scale"]
    assert client.get("/api/v1/models", headers=limited).json() == []
    assert client.get("/v1/models", headers=reader).json() == {"models": ["scale"]}
    assert client.get("/v1/models", headers=limited).json() == {"models": []}
    assert {e["name"] for e in client.post("/v2/repository/index", headers=reader).json()} == {"scale"}
    assert client.post("/v2/repository/index", headers=limited).json() == []
    assert client.get("/v2/models/stats", headers=reader).json()["model_stats"]
    assert client.get("/v2/models/stats", headers=limited).json() == {"model_stats": []}


def test_login_page_and_session_cookie(server: Server) -> None:
    client = server.client
    page = client.get("/login")
    assert page.status_code == 200 and 'src="/static/ferry/login.js"' in page.text
    assert "<script>" not in page.text and "script-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/ferry/login.js").status_code == 200

    assert client.post("/api/v1/session").status_code == 401
    assert client.post("/api/v1/session", headers=_headers(server, "revoked")).status_code == 401
    signed_in = client.post("/api/v1/session", headers=_headers(server, "deploy"))
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["name"] == "deploy"
    cookie = signed_in.headers["set-cookie"]
    assert "ferry_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    session = client.cookies.get("ferry_session")
    assert session == server.keys["deploy"]

    # Reads work with the cookie alone; a change needs the CSRF header as well.
    assert client.get("/api/v1/models/scale").status_code == 403  # deploy key: no read scope
    stage = {"version": 1}
    refused = client.put("/api/v1/models/scale/stages/canary", json=stage)
    assert refused.status_code == 403 and "X-Ferry-CSRF" in refused.json()["error"]
    done = client.put("/api/v1/models/scale/stages/canary", json=stage, headers={"X-Ferry-CSRF": "1"})
    assert done.status_code == 200, done.text
    # An explicit key wins over the cookie.
    assert client.get("/api/v1/models/scale", headers=_headers(server, "read")).status_code == 200

    cross_site = client.delete("/api/v1/session")
    assert cross_site.status_code == 403 and "X-Ferry-CSRF" in cross_site.json()["error"]
    assert client.cookies.get("ferry_session") == session
    assert client.delete("/api/v1/session", headers={"X-Ferry-CSRF": "1"}).status_code == 204
    assert client.cookies.get("ferry_session") is None
    assert (
        client.put("/api/v1/models/scale/stages/canary", json=stage, headers={"X-Ferry-CSRF": "1"}).status_code == 401
    )


SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def test_security_headers_on_every_kind_of_answer(server: Server) -> None:
    client = server.client
    reader, inferer = _headers(server, "read"), _headers(server, "infer")
    answers = {
        "infer": client.post("/v2/models/scale/infer", json=BODY, headers=inferer),
        "infer error": client.post("/v2/models/scale/infer", json={"inputs": []}, headers=inferer),
        "401": client.get("/v2"),
        "metadata": client.get("/v2/models/scale", headers=reader),
        "metrics": client.get("/metrics", headers=reader),
        "404": client.get("/nowhere"),
        "docs": client.get("/docs"),
    }
    for what, answer in answers.items():
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers.get(name) == value, (what, name)
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"], what
        assert "strict-transport-security" not in answer.headers, what  # plain HTTP
    assert answers["metadata"].headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert "script-src 'self'" in answers["docs"].headers["content-security-policy"]


def test_cors_allows_only_the_listed_origins(tmp_path: Path) -> None:
    engine = connect(default_url(tmp_path))
    migrate(engine)
    store = KeyStore(engine)
    _, key = store.create("web", [Scope.INFER])
    settings = Settings(data_dir=tmp_path, cors_origins=["https://app.example.com"])
    app = create_app(settings, ModelManager([]), Authenticator(lambda: store))
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    try:
        with TestClient(app) as client:
            wait_ready(client)
            allowed = client.options("/v2/models/m/infer", headers={"Origin": "https://app.example.com", **preflight})
            assert allowed.status_code == 200
            assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
            assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
            other = client.options("/v2/models/m/infer", headers={"Origin": "https://evil.example", **preflight})
            assert other.status_code == 400
            assert "access-control-allow-origin" not in other.headers
            # A simple request from the listed origin gets the header; the key is still needed.
            answer = client.get("/v2", headers={"Origin": "https://app.example.com", "X-API-Key": key})
            assert answer.status_code == 403  # an infer key: no read scope
            assert answer.headers["access-control-allow-origin"] == "https://app.example.com"
            assert (
                "access-control-allow-origin"
                not in client.get("/v2", headers={"Origin": "https://evil.example"}).headers
            )
    finally:
        engine.dispose()


def test_a_limited_key_cannot_widen_itself(server: Server) -> None:
    """Review findings: a model- or rate-limited admin key may not manage keys; a deploy
    key limited to models may not create another model; a model-limited key may not read
    every model's metrics."""
    client, store = server.client, server.store
    _, limited_admin = store.create("limited-admin", [Scope.ADMIN], models=["scale"])
    _, slow_admin = store.create("slow-admin", [Scope.ADMIN], rate_per_s=100.0)
    _, mine = store.create("mine", [Scope.DEPLOY, Scope.READ], models=["mine"])
    time.sleep(0.5)  # the keys are read again every 0.2 s here
    for text in (limited_admin, slow_admin):
        headers = {"Authorization": f"Bearer {text}"}
        made = client.post("/api/v1/keys", json={"name": "wider", "scopes": ["admin"]}, headers=headers)
        assert made.status_code == 403 and "cannot manage keys" in made.json()["error"]
        assert client.delete(f"/api/v1/keys/{server.ids['read']}", headers=headers).status_code == 403
    headers = {"Authorization": f"Bearer {mine}"}
    assert client.post("/api/v1/models", json={"name": "notmine"}, headers=headers).status_code == 403
    assert client.post("/api/v1/models", json={"name": "mine"}, headers=headers).status_code == 201
    assert client.get("/metrics", headers=headers).status_code == 403
