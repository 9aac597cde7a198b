from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def _no_proxy_for_loopback() -> Iterator[None]:
    # requests honours HTTP(S)_PROXY from the environment; the servers under test are
    # on 127.0.0.1 and must be reached directly.
    with pytest.MonkeyPatch.context() as patch:
        for name in ("NO_PROXY", "no_proxy"):
            patch.setenv(name, ",".join(filter(None, [os.environ.get(name), "127.0.0.1", "localhost"])))
        yield
