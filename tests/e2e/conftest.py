from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

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
