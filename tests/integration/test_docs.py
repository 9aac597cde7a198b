"""/docs works offline (Swagger UI served from /static/docs, no CDN) and /openapi.json
describes every route, with request examples for inference."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from starlette.testclient import TestClient

from ferry.http import docs, keys, session, v1, v2
from ferry.http.app import create_app
from ferry.manager import ModelManager
from ferry.settings import Settings
from ferry.web import api as web_api

EXPECTED_ROUTES = {
    ("get", "/v2/health/live"),
    ("get", "/v2/health/ready"),
    ("get", "/v2"),
    ("get", "/v2/models/{name}"),
    ("get", "/v2/models/{name}/versions/{version}"),
    ("get", "/v2/models/{name}/ready"),
    ("get", "/v2/models/{name}/versions/{version}/ready"),
    ("get", "/v2/models/{name}/config"),
    ("get", "/v2/models/{name}/versions/{version}/config"),
    ("post", "/v2/models/{name}/infer"),
    ("post", "/v2/models/{name}/versions/{version}/infer"),
    ("get", "/v2/models/stats"),
    ("get", "/v2/models/{name}/stats"),
    ("get", "/v2/models/{name}/versions/{version}/stats"),
    ("post", "/v2/repository/index"),
    ("post", "/v2/repository/models/{name}/load"),
    ("post", "/v2/repository/models/{name}/unload"),
    ("get", "/v1/models"),
    ("get", "/v1/models/{name}"),
    ("post", "/v1/models/{name}:predict"),
}


@pytest.fixture(scope="module")
def docs_client() -> Iterator[TestClient]:
    # No models needed: the docs must not depend on what is loaded.
    with TestClient(create_app(Settings(auth=False), ModelManager([]))) as client:
        yield client


@pytest.fixture(scope="module")
def schema(docs_client: TestClient) -> dict[str, Any]:
    response = docs_client.get("/openapi.json")
    assert response.status_code == 200
    doc: dict[str, Any] = response.json()
    return doc


def test_docs_page_uses_local_assets(docs_client: TestClient) -> None:
    response = docs_client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert 'src="/static/docs/swagger-ui-bundle.js"' in html
    assert 'href="/static/docs/swagger-ui.css"' in html
    assert "/openapi.json" in html
    assert not re.search(r"https?://", html), "the docs page must not load anything from the internet"
    assert "cdn" not in html.lower()
    # Swagger UI starts from a script file: the page's CSP forbids inline scripts.
    assert 'src="/static/ferry/docs-init.js"' in html
    assert not re.search(r"<script>", html)
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    assert docs_client.get("/static/ferry/docs-init.js").status_code == 200


@pytest.mark.parametrize(
    ("asset", "content_type"),
    [
        ("swagger-ui-bundle.js", "javascript"),
        ("swagger-ui.css", "text/css"),
        ("favicon.png", "image/png"),
    ],
)
def test_docs_assets_are_served(docs_client: TestClient, asset: str, content_type: str) -> None:
    response = docs_client.get(f"/static/docs/{asset}")
    assert response.status_code == 200
    assert content_type in response.headers["content-type"]
    assert len(response.content) > 1000


def test_bundle_is_the_real_swagger_ui(docs_client: TestClient) -> None:
    response = docs_client.get("/static/docs/swagger-ui-bundle.js")
    assert b"SwaggerUIBundle" in response.content


def test_docs_follow_the_root_path() -> None:
    with TestClient(create_app(Settings(auth=False), ModelManager([])), root_path="/ferry") as client:
        html = client.get("/docs").text
        assert 'src="/ferry/static/docs/swagger-ui-bundle.js"' in html
        assert 'data-openapi-url="/ferry/openapi.json"' in html
        home = client.get("/").text  # the web app's catalog, its files under the root path too
        assert 'href="/ferry/static/app/app.css"' in home
        assert 'src="/ferry/static/app/catalog.js"' in home
        assert 'data-root="/ferry"' in home


def test_openapi_lists_every_route(schema: dict[str, Any]) -> None:
    listed = {(method, path) for path, item in schema["paths"].items() for method in item}
    assert listed >= EXPECTED_ROUTES
    declared = {
        (method.lower(), route.path)
        for router in (v2.router, v1.router, keys.router, session.router, web_api.router)
        for route in router.routes
        if isinstance(route, APIRoute) and route.include_in_schema
        for method in route.methods or ()
    }
    # The infer endpoints are plain ASGI in front of FastAPI and described by hand.
    declared |= {(method, path) for path, item in docs.INFER_PATHS.items() for method in item}
    assert declared == listed
    assert "/docs" not in schema["paths"]


def test_infer_has_request_examples(schema: dict[str, Any]) -> None:
    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        operation = schema["paths"][path]["post"]
        content = operation["requestBody"]["content"]
        examples = content["application/json"]["examples"]
        assert examples
        for example in examples.values():
            inputs = example["value"]["inputs"]
            assert inputs and {"name", "datatype", "shape", "data"} <= set(inputs[0])
        assert "application/octet-stream" in content
        headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        assert "Inference-Header-Content-Length" in headers
        for status in ("400", "404", "413", "503"):
            error = operation["responses"][status]["content"]["application/json"]["schema"]
            assert error["required"] == ["error"]
    predict = schema["paths"]["/v1/models/{name}:predict"]["post"]
    assert predict["requestBody"]["content"]["application/json"]["examples"]


def test_every_operation_is_described(schema: dict[str, Any]) -> None:
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            assert operation.get("summary"), (method, path)
            assert operation.get("tags"), (method, path)
            assert {"200", "201", "204"} & set(operation["responses"]), (method, path)
