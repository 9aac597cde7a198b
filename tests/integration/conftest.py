"""Fixtures shared by the integration tests: one in-process server per module over the
session's model repository (tests/builders.repository)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.integration.serving import serve


@pytest.fixture(scope="module")
def client(model_repo: Path) -> Iterator[TestClient]:
    with serve([model_repo]) as running:
        yield running
