"""ferry.serverpaths: the server's directories replaced by labels in client messages."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from ferry.serverpaths import ServerPaths, server_paths


def test_a_path_is_replaced_whole_and_the_longest_wins(tmp_path: Path) -> None:
    data = tmp_path / "data"
    paths = ServerPaths({str(tmp_path): "<outer>", str(data): "<data dir>"})
    message = f"cannot open '{data}/registry.db' nor {tmp_path}/x, in {tmp_path}database: {data}"
    assert paths.scrub(message) == (
        f"cannot open '<data dir>/registry.db' nor <outer>/x, in {tmp_path}database: <data dir>"
    )


def test_a_link_and_the_directory_it_points_to_are_both_replaced(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    paths = ServerPaths({str(link): "<data dir>"})
    assert paths.scrub(f"{link}/a and {real}/b") == "<data dir>/a and <data dir>/b"


def test_relative_paths_are_made_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    paths = ServerPaths({"ferry-data": "<data dir>"})
    assert paths.scrub(f"no ferry-data here; {tmp_path}/ferry-data/x") == "no ferry-data here; <data dir>/x"


def test_the_root_is_never_a_place() -> None:
    paths = ServerPaths({os.sep: "<root>"})
    assert paths.scrub("/etc/passwd and 10/s") == "/etc/passwd and 10/s"


def test_every_server_knows_its_temporary_home_and_working_directories(tmp_path: Path) -> None:
    paths = server_paths(data_dir=tmp_path / "data", database=tmp_path / "data" / "registry.db")
    temp = tempfile.gettempdir()
    assert paths.scrub(f"{tmp_path}/data/registry.db") == "<registry database>"
    assert paths.scrub(f"{tmp_path}/data/artifacts/x") == "<data dir>/artifacts/x"
    assert paths.scrub(f"{temp}/upload-123") == "<tmp>/upload-123"
    assert paths.scrub(f"{Path.cwd()}/models") == "./models"


def test_a_model_repository_reads_as_its_own_name(tmp_path: Path) -> None:
    paths = server_paths(repositories=[tmp_path / "models"])
    assert paths.scrub(f"{tmp_path}/models/digits/1/model.onnx") == "models/digits/1/model.onnx"
