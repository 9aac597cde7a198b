"""A real browser for the end-to-end tests: Debian's Chromium driven by Playwright (the
Python package; its own browser downloads are never used). Pages collect console and
page errors, so a test can assert that a page ran clean, and screenshots go to
test-artifacts/screenshots/."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("FERRY_TEST_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
# axe-core, the accessibility checker (package.json; `make test` installs it with npm).
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the browser tests are mandatory; `make test` installs Chromium)")
    pytest.skip(f"{reason} (set CI=true to make this a failure)")


@dataclass
class Tab:
    page: Any  # playwright.sync_api.Page
    errors: list[str] = field(default_factory=list)

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 1000, f"{path} is empty"
        return path


def check_accessibility(page: Any) -> None:
    """Load axe-core into every page this tab opens from now on (as an init script, which
    the pages' CSP does not apply to); ``accessibility_violations`` then runs it."""
    if not AXE.is_file():
        _unavailable(f"no {AXE.relative_to(ROOT)} (run `make node-deps`)")
    page.context.add_init_script(path=str(AXE))


def accessibility_violations(page: Any) -> list[str]:
    """axe-core's WCAG 2.1 A/AA violations on the page as it is now, one line each."""
    found: list[str] = page.evaluate(
        """async tags => (await axe.run(document, {runOnly: {type: "tag", values: tags}})).violations.map(
            v => `${v.id} (${v.impact}): ${v.help}: ${v.nodes.slice(0, 4).map(n => n.target.join(" ")).join(", ")}`)""",
        WCAG,
    )
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        _unavailable(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    with sync_playwright() as playwright:
        # --no-sandbox: the tests run as root in a container, where Chromium's sandbox
        # cannot start; the pages are our own server's.
        # The rest keep it off the network and quiet: no updates, sync, QUIC or GPU probing.
        args = [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
        ]
        try:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        except Exception as exc:  # playwright's Error: a browser that cannot start
            _unavailable(f"Chromium at {CHROMIUM} does not start: {exc}")
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def tab(browser: Any) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    opened = Tab(page)
    page.on("console", lambda message: message.type == "error" and opened.errors.append(message.text))
    page.on("pageerror", lambda error: opened.errors.append(str(error)))
    try:
        yield opened
    finally:
        context.close()
