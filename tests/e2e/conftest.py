from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from tests.e2e.browser import browser, tab  # noqa: F401 (fixtures for the browser tests)
from tests.e2e.server import Server, running


@pytest.fixture(scope="session", autouse=True)
def _no_proxy_for_loopback() -> Iterator[None]:
    # requests honours HTTP(S)_PROXY from the environment; the servers under test are
    # on 127.0.0.1 and must be reached directly.
    with pytest.MonkeyPatch.context() as patch:
        for name in ("NO_PROXY", "no_proxy"):
            patch.setenv(name, ",".join(filter(None, [os.environ.get(name), "127.0.0.1", "localhost"])))
        yield


@pytest.fixture(scope="session")
def server(model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real `ferry serve` over the shared test repository, for every module that
    only needs a server to talk to (loading scikit-learn takes seconds: start it once)."""
    log = tmp_path_factory.mktemp("logs") / "repo-server.log"
    with running([model_repo], log) as srv:
        yield srv


ROOT = Path(__file__).resolve().parents[2]


def example_build(name: str) -> ModuleType:
    """examples/<name>/build.py, imported as a module."""
    spec = importlib.util.spec_from_file_location(f"{name}_build", ROOT / "examples" / name / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class BuiltExamples:
    repo: Path  # a model repository: digits/ and shapes/
    shapes: ModuleType  # examples/shapes/build.py (draw_png, CLASSES)
    digits: ModuleType
    shapes_accuracy: float
    shapes_seconds: float


@pytest.fixture(scope="session")
def examples(tmp_path_factory: pytest.TempPathFactory) -> BuiltExamples:
    """The digits and shapes examples built once (shapes trains for about half a minute)
    for every module that serves them."""
    repo = tmp_path_factory.mktemp("examples-repo")
    shapes, digits = example_build("shapes"), example_build("digits")
    started = time.perf_counter()
    accuracy = shapes.build(repo)
    seconds = time.perf_counter() - started
    digits.build(repo)
    return BuiltExamples(repo, shapes, digits, accuracy, seconds)
