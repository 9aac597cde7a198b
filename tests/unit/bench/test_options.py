"""ferry.bench.options: durations, concurrency lists and the target URL per protocol."""

from __future__ import annotations

import argparse

import pytest

from ferry.bench.options import batch_size, concurrency_levels, duration, positive_duration, target


@pytest.mark.parametrize(("text", "seconds"), [("10s", 10.0), ("500ms", 0.5), ("2m", 120.0), ("1.5", 1.5), ("0", 0.0)])
def test_durations(text: str, seconds: float) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten", "10x", "-1s", "1e3"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        duration(text)


def test_a_measured_duration_must_be_above_zero() -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        positive_duration("0s")


def test_concurrency_levels() -> None:
    assert concurrency_levels("1,4,16,64") == [1, 4, 16, 64]
    assert concurrency_levels(" 8 ") == [8]
    for bad in ("0", "1,,2", "a", "-1", "5000"):
        with pytest.raises(argparse.ArgumentTypeError):
            concurrency_levels(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        batch_size("0")


def test_rest_targets() -> None:
    plain = target("http://127.0.0.1:8000/", "rest-json")
    assert (plain.base_url, plain.address, plain.host_header, plain.tls) == (
        "http://127.0.0.1:8000", "127.0.0.1:8000", "127.0.0.1:8000", False)  # fmt: skip
    behind_ingress = target("https://models.example.com/serving/", "rest-binary")
    assert behind_ingress.port == 443 and behind_ingress.tls
    assert behind_ingress.path_prefix == "/serving"
    assert behind_ingress.host_header == "models.example.com"
    assert target("http://[::1]:8000", "rest-json").host_header == "[::1]:8000"


def test_grpc_targets() -> None:
    assert target("127.0.0.1:9001", "grpc").address == "127.0.0.1:9001"
    assert target("localhost", "grpc").port == 8001
    assert target("grpcs://models.example.com", "grpc").tls
    assert target("http://127.0.0.1:8001", "grpc").address == "127.0.0.1:8001"


@pytest.mark.parametrize(
    ("url", "protocol"),
    [("127.0.0.1:8000", "rest-json"), ("ftp://host", "rest-json"), ("http://", "rest-json"),
     ("grpc://host:8001/path", "grpc"), ("http://host:port", "rest-json")],
)  # fmt: skip
def test_bad_targets(url: str, protocol: str) -> None:
    with pytest.raises(ValueError):
        target(url, protocol)  # type: ignore[arg-type]
