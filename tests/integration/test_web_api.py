"""The web app over the real app in process: its JSON API (catalog, live numbers, who is
signed in) and its pages, with API keys and without, on ``ferry serve`` (a model
repository) and on a registry server (stages and traffic)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from ferry.artifacts import LocalArtifactStore
from ferry.http.app import create_app
from ferry.manager import ModelManager
from ferry.registry import Registry, connect, default_url, migrate
from ferry.registry.keys import KeyStore
from ferry.registry_source import RegistrySource
from ferry.security.auth import Authenticator
from ferry.security.keys import Scope
from ferry.settings import Settings
from ferry.web.live import LiveStats
from tests.builders import identity_onnx, scale_onnx
from tests.integration.serving import wait_ready

GOOD = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1.0, 2.0, 3.0, 4.0]}]}
BAD = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1.0, 2.0, 3.0]}]}

DIGITS_CONFIG = """
description: 8x8 handwritten digits
playground:
  inputs:
    INPUT0:
      range: [0, 16]
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("web-repo")
    scale_onnx(root / "scale" / "1" / "model.onnx", 1.0)
    scale_onnx(root / "scale" / "2" / "model.onnx", 2.0)
    identity_onnx(root / "digits" / "1" / "model.onnx", "FP32", ["batch", 64])
    (root / "digits" / "config.yaml").write_text(DIGITS_CONFIG)
    identity_onnx(root / "text" / "1" / "model.onnx", "BYTES", ["batch"])
    return root


@dataclass
class Served:
    client: TestClient
    keys: dict[str, str]  # key name -> key text

    def headers(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[name]}"}

    @property
    def live(self) -> LiveStats:
        stats: LiveStats = self.client.app.api.state.live  # type: ignore[attr-defined]
        return stats


@pytest.fixture(scope="module")
def served(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``ferry serve`` with API keys."""
    data_dir = tmp_path_factory.mktemp("web-data")
    engine = connect(default_url(data_dir))
    migrate(engine)
    store = KeyStore(engine)
    keys = {}
    for name, scopes, models in [
        ("admin", [Scope.ADMIN], None),
        ("reader", [Scope.READ], None),
        ("inferer", [Scope.INFER], None),
        ("scale-only", [Scope.READ, Scope.INFER], ["scale"]),
    ]:
        _, keys[name] = store.create(name, scopes, models)
    app = create_app(Settings(data_dir=data_dir), ModelManager([repo]), Authenticator(lambda: store), audit=store)
    try:
        with TestClient(app) as client:
            wait_ready(client)
            yield Served(client, keys)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def open_client(repo: Path) -> Iterator[TestClient]:
    """``ferry serve --no-auth``."""
    with TestClient(create_app(Settings(auth=False), ModelManager([repo]))) as client:
        wait_ready(client)
        yield client


def _by_name(catalog: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in catalog["models"]}


# -- the catalog ------------------------------------------------------------------------


def test_catalog_lists_every_model_with_its_versions(served: Served) -> None:
    answer = served.client.get("/api/v1/catalog", headers=served.headers("reader"))
    assert answer.status_code == 200, answer.text
    catalog = answer.json()
    assert catalog["registry"] is False
    assert [entry["name"] for entry in catalog["models"]] == ["digits", "scale", "text"]
    models = _by_name(catalog)
    scale = models["scale"]
    assert scale["state"] == "READY" and scale["reason"] == ""
    assert scale["default_version"] == "2"
    assert scale["split"] == {}  # no registry: no traffic split
    assert [v["version"] for v in scale["versions"]] == ["1", "2"]
    for version in scale["versions"]:
        assert version["state"] == "READY"
        assert version["platform"] == "onnxruntime_onnx"
        assert version["stages"] == [] and version["weight"] is None and version["shadow"] is False
    assert models["digits"]["description"] == "8x8 handwritten digits"  # from config.yaml
    assert models["scale"]["description"] == "" and models["scale"]["task"] == ""


def test_catalog_needs_a_read_key(served: Served) -> None:
    assert served.client.get("/api/v1/catalog").status_code == 401
    assert served.client.get("/api/v1/catalog", headers=served.headers("inferer")).status_code == 403
    assert served.client.get("/api/v1/catalog/scale", headers=served.headers("inferer")).status_code == 403
    assert served.client.get("/api/v1/live", headers=served.headers("inferer")).status_code == 403


def test_a_model_limited_key_sees_only_its_model(served: Served) -> None:
    client, limited = served.client, served.headers("scale-only")
    catalog = client.get("/api/v1/catalog", headers=limited).json()
    assert [entry["name"] for entry in catalog["models"]] == ["scale"]
    assert client.get("/api/v1/catalog/scale", headers=limited).status_code == 200
    refused = client.get("/api/v1/catalog/digits", headers=limited)
    assert refused.status_code == 403 and "error" in refused.json()
    assert set(client.get("/api/v1/live", headers=limited).json()["models"]) == {"scale"}
    assert client.get("/api/v1/live", params={"model": "digits"}, headers=limited).json()["models"] == {}


def test_catalog_entry_describes_the_playground_inputs(served: Served) -> None:
    client, reader = served.client, served.headers("reader")
    scale = client.get("/api/v1/catalog/scale", headers=reader).json()
    assert scale["name"] == "scale" and scale["registry"] is False
    assert scale["default_version"] == "2" and [v["version"] for v in scale["versions"]] == ["1", "2"]
    assert scale["inputs"] == [
        {
            "name": "x",
            "datatype": "FP32",
            "shape": [-1, 4],
            "kind": "form",
            "batch_shape": [1, 4],
            "features": ["feature 0", "feature 1", "feature 2", "feature 3"],
        }
    ]
    assert scale["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]

    (digits,) = client.get("/api/v1/catalog/digits", headers=reader).json()["inputs"]
    assert digits["kind"] == "canvas"
    assert (digits["height"], digits["width"]) == (8, 8)
    assert digits["range"] == [0.0, 16.0]  # config.yaml's hint

    (text,) = client.get("/api/v1/catalog/text", headers=reader).json()["inputs"]
    assert text["kind"] == "text" and text["datatype"] == "BYTES"

    missing = client.get("/api/v1/catalog/nope", headers=served.headers("admin"))
    assert missing.status_code == 404 and "nope" in missing.json()["error"]


# -- live numbers -----------------------------------------------------------------------


def _live(served: Served, **params: str) -> dict[str, Any]:
    answer = served.client.get("/api/v1/live", params=params, headers=served.headers("reader"))
    assert answer.status_code == 200, answer.text
    report: dict[str, Any] = answer.json()
    return report


def test_live_counts_the_requests_served(served: Served) -> None:
    client = served.client
    served.live.sample()
    before = _live(served)
    for _ in range(3):
        assert client.post("/v2/models/scale/infer", json=GOOD, headers=served.headers("inferer")).status_code == 200
    assert client.post("/v2/models/scale/infer", json=BAD, headers=served.headers("inferer")).status_code == 400
    assert (
        client.post("/v2/models/scale/versions/1/infer", json=GOOD, headers=served.headers("admin")).status_code == 200
    )
    served.live.sample()
    after = _live(served)

    assert set(after["models"]) == {"digits", "scale", "text"}
    was, scale = before["models"]["scale"], after["models"]["scale"]
    assert scale["requests"] - was["requests"] == 5
    assert scale["errors"] - was["errors"] == 1
    assert after["total"]["requests"] - before["total"]["requests"] == 5
    assert after["models"]["digits"]["requests"] == before["models"]["digits"]["requests"]
    assert len(after["time"]) == len(after["models"]["scale"]["series"]["rps"]) >= 2
    assert set(scale["versions"]) == {"1", "2"}
    # The last interval: the requests to each version, whatever the background sampling took.
    assert scale["versions"]["2"]["now"]["rps"] > 0 and scale["versions"]["1"]["now"]["rps"] > 0
    assert scale["now"]["p50_ms"] is not None and scale["now"]["error_ratio"] > 0
    assert scale["now"]["batch"] == 1.0  # one row per request, no batching delay

    only = _live(served, model="scale")
    assert set(only["models"]) == {"scale"}
    assert only["total"]["requests"] == only["models"]["scale"]["requests"]


# -- who is signed in -------------------------------------------------------------------


def test_session_tells_who_is_signed_in(served: Served, open_client: TestClient) -> None:
    client = served.client
    client.cookies.clear()
    reader = client.get("/api/v1/session", headers=served.headers("reader"))
    assert reader.status_code == 200
    body = reader.json()
    assert body["name"] == "reader" and body["scopes"] == ["read"] and body["models"] is None
    assert served.keys["reader"].startswith(f"fy_{body['id']}_")
    assert served.keys["reader"] not in reader.text
    limited = client.get("/api/v1/session", headers={"X-API-Key": served.keys["scale-only"]}).json()
    assert limited["scopes"] == ["infer", "read"] and limited["models"] == ["scale"]
    # Any valid key may ask, whatever its scopes.
    assert client.get("/api/v1/session", headers=served.headers("inferer")).json()["name"] == "inferer"

    assert client.get("/api/v1/session").status_code == 401
    assert client.get("/api/v1/session", headers={"Authorization": "Bearer fy_nope"}).status_code == 401

    # From the cookie a sign-in sets.
    assert client.post("/api/v1/session", headers=served.headers("admin")).status_code == 200
    try:
        assert client.get("/api/v1/session").json()["name"] == "admin"
    finally:
        client.cookies.clear()

    anyone = open_client.get("/api/v1/session")
    assert anyone.status_code == 200
    assert anyone.json() == {"id": "", "name": "", "scopes": ["admin", "deploy", "infer", "read"], "models": None}


# -- pages ------------------------------------------------------------------------------


def _nav(html: str) -> list[str]:
    match = re.search(r'<nav aria-label="Main">(.*?)</nav>', html, re.S)
    assert match, html
    return re.findall(r">([^<>]+)</a>", match.group(1))


@pytest.mark.parametrize(
    ("path", "back"),
    [("/", ""), ("/dashboard", "dashboard"), ("/models/scale", "models%2Fscale"), ("/keys", "keys")],
)
def test_pages_send_a_browser_without_a_session_to_sign_in(served: Served, path: str, back: str) -> None:
    served.client.cookies.clear()
    for headers in ({}, {"Authorization": "Bearer fy_000000000000_" + "A" * 43}):
        answer = served.client.get(path, headers=headers, follow_redirects=False)
        assert answer.status_code == 303, (path, answer.status_code)
        assert answer.headers["location"] == f"/login?next={back}"


def test_pages_show_the_navigation_of_their_key(served: Served) -> None:
    client = served.client
    client.cookies.clear()
    page = client.get("/", headers=served.headers("reader"))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    assert _nav(page.text) == ["Models", "Dashboard", "API docs"]
    assert 'data-scopes="read"' in page.text and 'data-page="catalog"' in page.text
    assert served.keys["reader"] not in page.text  # the key is never written into the page
    assert '<script type="module" src="/static/app/catalog.js">' in page.text

    admin = client.get("/", headers=served.headers("admin"))
    assert admin.status_code == 200
    assert _nav(admin.text) == ["Models", "Dashboard", "Keys", "Audit", "API docs"]
    assert 'data-scopes="admin deploy infer read"' in admin.text

    open_page = client.get("/dashboard", headers=served.headers("reader"))
    assert open_page.status_code == 200 and 'aria-current="page">Dashboard<' in open_page.text


def test_admin_pages_need_the_admin_scope(served: Served) -> None:
    client = served.client
    client.cookies.clear()
    for path in ("/keys", "/audit"):
        refused = client.get(path, headers=served.headers("reader"))
        assert refused.status_code == 403, path
        assert refused.headers["content-type"].startswith("text/html")
        assert "'admin' scope" in unescape(refused.text)
        # Only the shared module that wires Sign out, not the page's own.
        assert re.findall(r'<script[^>]*src="([^"]+)"', refused.text) == ["/static/app/common.js"]
        assert "Keys" not in _nav(refused.text)
        allowed = client.get(path, headers=served.headers("admin"))
        assert allowed.status_code == 200, path
        assert "Keys" in _nav(allowed.text)
        assert f'src="/static/app{path}.js"' in allowed.text


def test_model_page_refuses_a_key_limited_to_another_model(served: Served) -> None:
    client, limited = served.client, served.headers("scale-only")
    client.cookies.clear()
    mine = client.get("/models/scale", headers=limited)
    assert mine.status_code == 200 and 'data-model="scale"' in mine.text
    other = client.get("/models/digits", headers=limited)
    assert other.status_code == 403
    assert "may not use this model" in other.text
    assert client.get("/models/digits", headers=served.headers("reader")).status_code == 200


def test_a_page_works_with_the_session_cookie(served: Served) -> None:
    client = served.client
    client.cookies.clear()
    assert client.post("/api/v1/session", headers=served.headers("reader")).status_code == 200
    try:
        page = client.get("/dashboard", follow_redirects=False)
        assert page.status_code == 200 and '<span class="who">reader</span>' in page.text
    finally:
        client.cookies.clear()


def test_pages_need_no_inline_styles_or_scripts(served: Served) -> None:
    client = served.client
    client.cookies.clear()
    pages = {path: client.get(path, headers=served.headers("admin")) for path in ("/", "/models/scale", "/keys")}
    for what, page in pages.items():
        policy = page.headers["content-security-policy"]
        directives = {d.split()[0]: d.split()[1:] for d in policy.split("; ")}
        assert directives["style-src"] == ["'self'"], what
        assert directives["script-src"] == ["'self'"], what
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, what
        # What the policy would block is not in the page.
        assert "<style" not in page.text and " style=" not in page.text, what
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text), what
        for asset in re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text):
            assert client.get(asset).status_code == 200, (what, asset)


def test_the_refusal_page_has_the_web_app_policy_too(served: Served) -> None:
    served.client.cookies.clear()
    denied = served.client.get("/keys", headers=served.headers("reader"))
    assert denied.status_code == 403
    assert "<style" not in denied.text and " style=" not in denied.text
    assert "unsafe-inline" not in denied.headers["content-security-policy"]


def test_pages_without_api_keys(open_client: TestClient) -> None:
    page = open_client.get("/", follow_redirects=False)
    assert page.status_code == 200
    assert _nav(page.text) == ["Models", "Dashboard", "Keys", "Audit", "API docs"]
    assert 'data-auth="off"' in page.text and "no API keys" in page.text
    assert open_client.get("/keys", follow_redirects=False).status_code == 200
    assert open_client.get("/models/scale", follow_redirects=False).status_code == 200
    assert [e["name"] for e in open_client.get("/api/v1/catalog").json()["models"]] == ["digits", "scale", "text"]


# -- a registry server ------------------------------------------------------------------


@pytest.fixture
def registry_client(tmp_path: Path) -> Iterator[TestClient]:
    data_dir = tmp_path / "data"
    engine = connect(default_url(data_dir))
    migrate(engine)
    source = RegistrySource(Registry.from_engine(engine), LocalArtifactStore(data_dir / "artifacts"), data_dir)
    try:
        with TestClient(create_app(Settings(data_dir=data_dir, auth=False), ModelManager([], source))) as client:
            wait_ready(client)
            yield client
    finally:
        engine.dispose()


def _upload(client: TestClient, path: Path, stage: str | None) -> None:
    with path.open("rb") as f:
        answer = client.post(
            "/api/v1/models/scale/versions", files={"file": ("model.onnx", f)}, data={"stage": stage} if stage else None
        )
    assert answer.status_code == 201, answer.text


def test_registry_catalog_shows_stages_and_traffic(registry_client: TestClient, tmp_path: Path) -> None:
    client = registry_client
    made = client.post("/api/v1/models", json={"name": "scale", "description": "multiplies", "task": "regression"})
    assert made.status_code == 201, made.text
    for factor, stage in ((1.0, "production"), (2.0, "staging"), (3.0, None)):
        _upload(client, scale_onnx(tmp_path / f"scale-{factor}.onnx", factor), stage)

    catalog = client.get("/api/v1/catalog").json()
    assert catalog["registry"] is True
    scale = _by_name(catalog)["scale"]
    assert scale["description"] == "multiplies" and scale["task"] == "regression"
    assert scale["default_version"] == "1" and scale["state"] == "READY"
    assert scale["split"] == {}
    versions = {v["version"]: v for v in scale["versions"]}
    assert versions["1"]["stages"] == ["production"] and versions["2"]["stages"] == ["staging"]
    assert all(v["weight"] is None and v["shadow"] is False for v in versions.values())

    traffic = {"weights": {"1": 75, "2": 25}, "shadow": {"version": 3, "percent": 10}}
    answer = client.put("/api/v1/models/scale/traffic", json=traffic)
    assert answer.status_code == 200, answer.text
    scale = _by_name(client.get("/api/v1/catalog").json())["scale"]
    assert scale["split"] == {"1": 75, "2": 25}
    versions = {v["version"]: v for v in scale["versions"]}
    assert (versions["1"]["weight"], versions["2"]["weight"]) == (75, 25)
    assert versions["3"]["shadow"] is True and versions["3"]["weight"] is None
    assert versions["1"]["shadow"] is False
    assert all(v["state"] == "READY" for v in versions.values())
    assert versions["1"]["platform"] == versions["2"]["platform"] == "onnxruntime_onnx"

    entry = client.get("/api/v1/catalog/scale").json()
    assert entry["registry"] is True and entry["split"] == {"1": 75, "2": 25}
    assert entry["inputs"][0]["kind"] == "form"

    # All traffic back to production: the split and the weights follow.
    assert client.put("/api/v1/models/scale/traffic", json={"weights": {"1": 100}}).status_code == 200
    scale = _by_name(client.get("/api/v1/catalog").json())["scale"]
    assert scale["split"] == {"1": 100}
    versions = {v["version"]: v for v in scale["versions"]}
    assert versions["1"]["weight"] == 100
    assert not any(v["shadow"] for v in versions.values())
    assert "2" not in versions or versions["2"]["weight"] is None
