"""The web app in a real browser (Debian's Chromium driven by Playwright) against real
``ferry`` processes with API keys on: sign in with the printed link, draw a digit, upload
a PNG, run the copied snippets, watch the dashboard count, manage keys as an admin and be
refused as a viewer, and on ``ferry server`` push a version, split traffic 50/50, see both
versions answer in the playground, and roll back. Screenshots of every page go to
test-artifacts/screenshots/ and the JavaScript/CSS bytes of each page to
test-artifacts/page-weights.json."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.e2e.browser import SCREENSHOTS, Tab, accessibility_violations, check_accessibility
from tests.e2e.conftest import BuiltExamples
from tests.e2e.server import Server, start, start_command

# The first test here may build the examples (the shapes CNN trains for 30-60 s on two
# cores); the per-test timeout covers its fixtures too.
pytestmark = pytest.mark.timeout(300)
KEY = re.compile(r"fy_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")
TIMEOUT_MS = 15_000
ARTIFACTS = SCREENSHOTS.parent


@dataclass
class Running:
    server: Server
    admin: str

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin}"}


def _first_key(server: Server) -> str:
    found = KEY.search(server.log())
    assert found is not None, server.log()
    return found.group(0)


@pytest.fixture(scope="module")
def files(examples: BuiltExamples, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """``ferry serve`` over the built digits and shapes examples."""
    root = tmp_path_factory.mktemp("web-files")
    server = start([examples.repo], root / "server.log", "--data-dir", str(root / "data"), auth=True)
    yield Running(server, _first_key(server))
    server.terminate()


@pytest.fixture(scope="module")
def registry(examples: BuiltExamples, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """``ferry server`` with digits v1 and its config.yaml on production, pushed as
    `ferry push --config --stage production` does."""
    root = tmp_path_factory.mktemp("web-registry")
    server = start_command(["server", "--data-dir", str(root / "data")], root / "server.log", auth=True)
    running = Running(server, _first_key(server))
    model = (examples.repo / "digits" / "1" / "model.skops").read_bytes()
    config = (examples.repo / "digits" / "config.yaml").read_bytes()
    answer = requests.post(
        f"{server.url}/api/v1/models/digits/versions",
        files={"file": ("model.skops", model), "config": ("config.yaml", config)},
        data={"stage": "production"},
        headers=running.headers(),
        timeout=60,
    )
    assert answer.status_code == 201 and answer.json()["state"] == "ready", answer.text
    yield running
    server.terminate()


def sign_in(tab: Tab, server: Server, key: str) -> None:
    page = tab.page
    page.goto(f"{server.url}/login")
    page.fill("#key", key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/", timeout=TIMEOUT_MS)


# Strokes on the 256x256 canvas that the digits model reads as these digits.
DIGITS = {
    "0": [[(128 + 55 * math.sin(t * math.pi / 10), 128 - 85 * math.cos(t * math.pi / 10)) for t in range(21)]],
    "4": [[(150, 40), (60, 150), (200, 150)], [(150, 40), (150, 220)]],
    "7": [[(60, 50), (196, 50), (110, 220)]],
}


def draw(tab: Tab, strokes: list[list[tuple[float, float]]]) -> None:
    page = tab.page
    page.click("text=Clear")
    canvas = page.locator("canvas.draw")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box is not None
    scale = box["width"] / 256
    for stroke in strokes:
        (x, y), rest = stroke[0], stroke[1:]
        page.mouse.move(box["x"] + x * scale, box["y"] + y * scale)
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=6)
        page.mouse.up()


def top_label(tab: Tab, expected: str) -> None:
    """Wait until the answer's best class is ``expected`` (fails on a wrong one by timeout)."""
    tab.page.wait_for_function(
        "want => { const n = document.querySelector('#result .bars li:first-child .name');"
        " return n && n.textContent === want; }",
        arg=expected,
        timeout=TIMEOUT_MS,
    )


def test_the_printed_link_signs_in_and_a_page_asked_for_comes_back(files: Running, tab: Tab) -> None:
    server, page = files.server, tab.page
    page.goto(f"{server.url}/models/digits")
    page.wait_for_url(f"{server.url}/login?next=models%2Fdigits", timeout=TIMEOUT_MS)
    # The link printed at the first start fills the form; the key goes only on a click.
    page.goto("about:blank")  # else only the fragment changes, and the page is not loaded again
    page.goto(f"{server.url}/login?next=models%2Fdigits#key={files.admin}")
    assert page.input_value("#key") == files.admin and "#key" not in page.url
    tab.screenshot("login-from-link")
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/models/digits", timeout=TIMEOUT_MS)
    [cookie] = page.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.goto(f"{server.url}/")
    page.wait_for_selector("article[data-model=shapes]", timeout=TIMEOUT_MS)
    assert page.locator("article[data-model=digits] h2").inner_text() == "digits"
    assert "Handwritten digit" in page.locator("article[data-model=digits] .desc").inner_text()
    tab.screenshot("catalog")
    assert tab.errors == []


def test_a_digit_drawn_on_the_canvas_gets_the_right_class(files: Running, tab: Tab) -> None:
    sign_in(tab, files.server, files.admin)
    page = tab.page
    page.goto(f"{files.server.url}/models/digits")
    page.wait_for_selector("canvas.draw", timeout=TIMEOUT_MS)
    for digit, strokes in DIGITS.items():
        draw(tab, strokes)  # the playground runs the model when a stroke ends
        top_label(tab, digit)
    assert "v1 answered in" in page.inner_text("#result .meta")
    tab.screenshot("model-digits")
    # Without a pointer: the same 8x8 pixels typed as numbers (a 3 of the data set).
    from sklearn.datasets import load_digits

    digits = load_digits()
    three = digits.data[list(digits.target).index(3)].reshape(8, 8).tolist()
    page.click("[role=tab]:has-text('Type the values')")
    assert page.locator("canvas.draw").is_hidden()
    page.fill("textarea[id^=typed-]", json.dumps(three))
    page.click("#run")
    top_label(tab, "3")
    assert tab.errors == []


def test_the_copied_snippets_run_as_pasted(files: Running, tab: Tab) -> None:
    sign_in(tab, files.server, files.admin)
    page = tab.page
    page.goto(f"{files.server.url}/models/digits")
    page.wait_for_selector("canvas.draw", timeout=TIMEOUT_MS)
    draw(tab, DIGITS["7"])
    top_label(tab, "7")
    env = {**os.environ, "FERRY_API_KEY": files.admin}
    snippets = {}
    for tab_name in ("curl", "Python requests", "tritonclient"):
        page.click(f"[role=tab]:has-text('{tab_name}')")
        snippets[tab_name] = page.inner_text("#snippet")
    curl = subprocess.run(["bash", "-c", snippets["curl"]], env=env, capture_output=True, text=True, timeout=30)
    assert curl.returncode == 0, curl.stderr
    outputs = {o["name"]: o["data"] for o in json.loads(curl.stdout)["outputs"]}
    assert outputs["label"] == [7]
    for name in ("Python requests", "tritonclient"):
        run = subprocess.run(
            [sys.executable, "-c", snippets[name]], env=env, capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 0, f"{name}:\n{snippets[name]}\n{run.stderr}"
        assert re.search(r"^label \[7\]$", run.stdout, re.MULTILINE), run.stdout


def test_a_png_uploaded_to_shapes_gets_the_right_top_label(
    files: Running, examples: BuiltExamples, tab: Tab, tmp_path: Path
) -> None:
    sign_in(tab, files.server, files.admin)
    page = tab.page
    page.goto(f"{files.server.url}/models/shapes")
    page.wait_for_selector(".drop input[type=file]", timeout=TIMEOUT_MS)
    # A file that is no image: the server's 400 is shown as one readable line, no trace.
    fake = tmp_path / "notes.png"
    fake.write_text("these are not pixels")
    page.set_input_files(".drop input[type=file]", str(fake))
    page.wait_for_selector("#result .notice.error", timeout=TIMEOUT_MS)
    message = page.inner_text("#result .notice.error")
    assert "(HTTP 400)" in message and "Traceback" not in message and "\n" not in message.strip(), message
    # ... and the page goes on working. It shows the server's best class: the CNN is
    # trained on this machine and may miss a drawing (its accuracy is
    # test_example_shapes's business), so the API's answer is the expectation.
    for shape, seed in (("star", 20_500), ("triangle", 20_501)):
        png = tmp_path / f"{shape}.png"
        png.write_bytes(examples.shapes.draw_png(shape, seed))
        answer = requests.post(
            f"{files.server.url}/v2/models/shapes/infer",
            files={"image": (png.name, png.read_bytes(), "image/png")},
            headers=files.headers(),
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        best = next(o for o in answer.json()["outputs"] if o["name"] == "classes")["data"][0]
        page.set_input_files(".drop input[type=file]", str(png))
        top_label(tab, best)
    assert page.locator(".drop img").is_visible()
    tab.screenshot("model-shapes")
    # The browser's own console line for the refused request, and nothing else.
    assert [e for e in tab.errors if "400" not in e] == [], tab.errors


def test_the_dashboard_counter_rises_after_traffic(files: Running, tab: Tab) -> None:
    sign_in(tab, files.server, files.admin)
    page = tab.page
    page.goto(f"{files.server.url}/dashboard")
    page.wait_for_selector("#total-requests", timeout=TIMEOUT_MS)
    before = int(page.inner_text("#total-requests").replace(",", ""))
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}]}
    for _ in range(25):
        answer = requests.post(
            f"{files.server.url}/v2/models/digits/infer", json=body, headers=files.headers(), timeout=10
        )
        assert answer.status_code == 200
    page.wait_for_function(
        "want => Number(document.querySelector('#total-requests').textContent.replace(/,/g, '')) >= want",
        arg=before + 25,
        timeout=TIMEOUT_MS,
    )
    page.wait_for_selector("#main table td a", timeout=TIMEOUT_MS)
    tab.screenshot("dashboard")
    assert tab.errors == []


def test_an_admin_makes_a_key_and_a_viewer_cannot_see_the_keys_page(files: Running, tab: Tab) -> None:
    server, page = files.server, tab.page
    sign_in(tab, server, files.admin)
    page.goto(f"{server.url}/keys")
    page.fill("#key-name", "viewer")
    page.check("input[value=read]")
    page.click("button:has-text('Create key')")
    page.wait_for_selector("#new-secret", timeout=TIMEOUT_MS)
    viewer = page.inner_text("#new-secret")
    assert KEY.fullmatch(viewer)
    page.wait_for_selector("tr:has-text('viewer')", timeout=TIMEOUT_MS)
    tab.screenshot("keys")
    page.goto(f"{server.url}/audit")
    page.wait_for_selector("td:has-text('create_key')", timeout=TIMEOUT_MS)
    # The viewer signs in: no Keys or Audit in the navigation, and the page itself refuses.
    page.goto(f"{server.url}/")
    page.click("#sign-out")
    page.wait_for_url(re.compile(r".*/login$"), timeout=TIMEOUT_MS)
    sign_in(tab, server, viewer)
    page.wait_for_selector("article[data-model=digits]", timeout=TIMEOUT_MS)
    nav = page.inner_text("header nav")
    assert "Models" in nav and "Keys" not in nav and "Audit" not in nav
    answer = page.goto(f"{server.url}/keys")
    assert answer is not None and answer.status == 403
    assert "needs a key with the 'admin' scope" in page.inner_text("main")
    tab.screenshot("keys-refused")
    assert [e for e in tab.errors if "403" not in e] == [], tab.errors


def test_push_a_version_split_traffic_see_both_answer_and_roll_back(
    registry: Running, examples: BuiltExamples, tab: Tab
) -> None:
    server, page = registry.server, tab.page
    sign_in(tab, server, registry.admin)
    page.goto(f"{server.url}/models/digits")
    page.wait_for_selector("tr[data-version='1']", timeout=TIMEOUT_MS)
    # Push v2: the page says when it has validated.
    page.set_input_files("#upload-file", str(examples.repo / "digits" / "1" / "model.skops"))
    page.click("button:has-text('Upload and validate')")
    page.wait_for_selector("text=v2 is ready", timeout=60_000)
    page.wait_for_selector("tr[data-version='2']", timeout=TIMEOUT_MS)
    # 50% canary, confirmed in a dialog.
    page.select_option("#canary-version", "2")
    page.fill("#canary-percent", "50")
    page.click("button:has-text('Set canary')")
    page.click("dialog button:has-text('Set canary')")
    page.wait_for_selector("text=Canary set: v2 takes 50% of traffic", timeout=TIMEOUT_MS)
    # The playground's unversioned requests are answered by both versions (v2 took v1's
    # config.yaml, so both read the canvas as 0-16 pixels and answer the same).
    draw(tab, DIGITS["0"])
    top_label(tab, "0")
    seen = answered_by(tab, runs=40, until={"1", "2"})
    assert seen == {"1", "2"}
    tab.screenshot("model-versions")
    # Roll back: a confirmation, then production alone answers again.
    page.click("#rollback")
    page.click("dialog button:has-text('Roll back')")
    page.wait_for_selector("text=Rolled back", timeout=TIMEOUT_MS)
    assert answered_by(tab, runs=10) == {"1"}
    # The split is over, not pinned to v1: promoting v2 moves every request to it.
    page.click("tr[data-version='2'] button:has-text('Promote to production')")
    page.click("dialog button:has-text('Promote')")
    page.wait_for_selector("text=v2 is now production", timeout=TIMEOUT_MS)
    assert answered_by(tab, runs=10) == {"2"}
    # Each change is in the audit trail, with the key that made it.
    page.goto(f"{server.url}/audit")
    page.wait_for_selector("#main table", timeout=TIMEOUT_MS)
    trail = page.inner_text("#main table")
    assert "set_traffic" in trail and "clear_traffic" in trail and "set_stage" in trail and "upload_version" in trail
    tab.screenshot("audit")
    assert tab.errors == []


def answered_by(tab: Tab, runs: int, until: set[str] | None = None) -> set[str]:
    """Run the playground up to ``runs`` times; the versions that answered."""
    page = tab.page
    seen: set[str] = set()
    for _ in range(runs):
        page.evaluate("document.getElementById('result').replaceChildren()")
        page.click("#run")
        page.wait_for_selector("#result .meta[data-version]", timeout=TIMEOUT_MS)
        seen.add(page.get_attribute("#result .meta", "data-version") or "")
        if until is not None and seen >= until:
            break
    return seen


PAGES = ["", "models/digits", "models/shapes", "dashboard", "keys", "audit"]


def test_every_page_runs_clean_is_accessible_and_light(files: Running, tab: Tab) -> None:
    """No console error and no WCAG 2.1 A/AA violation axe-core can find on any page; the
    bytes of JavaScript and CSS each one loads."""
    page = tab.page
    check_accessibility(page)
    sign_in(tab, files.server, files.admin)
    weights = {}
    violations = {}
    for path in [*PAGES, "login"]:
        page.goto(f"{files.server.url}/{path}")
        page.wait_for_load_state("networkidle", timeout=TIMEOUT_MS)
        violations[path] = accessibility_violations(page)
        sizes = page.evaluate(
            "() => performance.getEntriesByType('resource')"
            ".filter(e => /\\.(js|css)$/.test(new URL(e.name).pathname))"
            ".map(e => [new URL(e.name).pathname, e.decodedBodySize, e.encodedBodySize])"
        )
        weights["/" + path] = {
            "javascript_bytes": sum(size for name, size, _ in sizes if name.endswith(".js")),
            "css_bytes": sum(size for name, size, _ in sizes if name.endswith(".css")),
            "transferred_bytes": sum(sent for _, _, sent in sizes),  # compressed
            "files": sorted(name for name, _, _ in sizes),
        }
        assert tab.errors == [], (path, tab.errors)
    assert {path: found for path, found in violations.items() if found} == {}
    # Responsive: on a phone's width nothing runs off the side of any page.
    page.set_viewport_size({"width": 390, "height": 844})
    for path in PAGES:
        page.goto(f"{files.server.url}/{path}")
        page.wait_for_load_state("networkidle", timeout=TIMEOUT_MS)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, (path, overflow)
        if path in ("", "models/digits"):
            tab.screenshot(f"{path.replace('/', '-') or 'catalog'}-phone")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "page-weights.json").write_text(json.dumps(weights, indent=2) + "\n")
    print("\n[web app] bytes of JavaScript + CSS per page (and compressed, as sent):")
    for path, weight in weights.items():
        js, css, sent = weight["javascript_bytes"], weight["css_bytes"], weight["transferred_bytes"]
        print(f"  {path:16} {js:>7} JS  {css:>6} CSS  {sent:>6} sent")
        # No framework, no CDN: every page loads only this server's own small files.
        assert all(name.startswith("/static/") for name in weight["files"]), weight
        assert weight["javascript_bytes"] + weight["css_bytes"] < 100_000, weight
