"""The pages Ferry serves today, in a real browser: the printed login link, the session
cookie it sets, and the API docs (Swagger UI) running under Ferry's strict
Content-Security-Policy with no console error."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.builders import scale_onnx
from tests.e2e.browser import Tab
from tests.e2e.server import Server, start

KEY = re.compile(r"fy_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    root = tmp_path_factory.mktemp("browser")
    model = scale_onnx(root / "scale.onnx", 2.0)
    server = start([model], root / "server.log", "--data-dir", str(root / "data"), auth=True)
    found = KEY.search(server.log())
    assert found is not None, server.log()
    yield server, found.group(0)
    server.terminate()


def test_the_login_link_signs_in_only_when_asked(keyed: tuple[Server, str], tab: Tab) -> None:
    server, admin = keyed
    page = tab.page
    page.goto(f"{server.url}/login#key={admin}")
    # The key left the address bar at once, filled the form, and nothing was sent yet.
    assert "#key" not in page.url and admin not in page.url
    assert page.input_value("#key") == admin
    assert "select Sign in" in page.inner_text("#status")
    assert not page.context.cookies()
    tab.screenshot("login")
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)  # the model catalog
    [cookie] = page.context.cookies()
    assert (cookie["name"], cookie["value"], cookie["httpOnly"], cookie["sameSite"]) == (
        "ferry_session",
        admin,
        True,
        "Strict",
    )
    # Swagger UI renders under the page's CSP (scripts from the server only, none inline).
    page.goto(f"{server.url}/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=TIMEOUT_MS)
    assert "Ferry" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector(".opblock", timeout=TIMEOUT_MS)
    tab.screenshot("docs")
    # The page's own calls carry the session: a read works; a change needs X-Ferry-CSRF.
    read = page.evaluate("fetch('/v2/models/scale').then(r => r.status)")
    assert read == 200
    body = '{"name": "from-the-page", "scopes": ["read"]}'
    plain = page.evaluate(
        "b => fetch('/api/v1/keys', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: b})"
        ".then(r => r.status)",
        body,
    )
    assert plain == 403
    with_header = page.evaluate(
        "b => fetch('/api/v1/keys', {method: 'POST', body: b,"
        " headers: {'Content-Type': 'application/json', 'X-Ferry-CSRF': '1'}}).then(r => r.status)",
        body,
    )
    assert with_header == 201
    # Only the refusal the test asked for shows in the console (the browser logs a 403).
    assert [e for e in tab.errors if "403" not in e] == [], tab.errors


def test_a_wrong_key_shows_a_readable_error(keyed: tuple[Server, str], tab: Tab) -> None:
    server, _ = keyed
    page = tab.page
    page.goto(f"{server.url}/login")
    page.fill("#key", "fy_000000000000_" + "A" * 43)
    page.click("button[type=submit]")
    page.wait_for_function("document.querySelector('#status').textContent.includes('invalid')", timeout=TIMEOUT_MS)
    assert page.url == f"{server.url}/login"
    assert not page.context.cookies()
    # The 401 of the sign-in call is the browser's own console line, not a script error.
    assert all("401" in error for error in tab.errors), tab.errors


def test_docs_without_a_session_still_render(keyed: tuple[Server, str], tab: Tab) -> None:
    server, _ = keyed
    tab.page.goto(f"{server.url}/docs")
    tab.page.wait_for_selector(".swagger-ui .info .title", timeout=TIMEOUT_MS)
    assert tab.errors == []
