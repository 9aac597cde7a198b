"""ferry.sources: finding models on disk without loading them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ferry.sources import ModelSource, VersionSource, discover


def _touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_single_model_file(tmp_path: Path) -> None:
    model = _touch(tmp_path / "digits.onnx")
    found = discover([model])
    assert list(found) == ["digits"]
    source = found["digits"]
    assert source.versions == [VersionSource(1, model)]
    assert source.error is None
    assert source.runtime_for(source.versions[0]) == "onnx"


@pytest.mark.parametrize(
    ("suffix", "runtime"),
    [(".skops", "sklearn"), (".joblib", "sklearn"), (".pkl", "sklearn"), (".pt", "torch"), (".pt2", "torch")],
)
def test_runtime_follows_the_extension(tmp_path: Path, suffix: str, runtime: str) -> None:
    found = discover([_touch(tmp_path / f"m{suffix}")])
    assert found["m"].runtime_for(found["m"].versions[0]) == runtime


def test_several_paths_are_combined(tmp_path: Path) -> None:
    a = _touch(tmp_path / "one" / "a.onnx")
    _touch(tmp_path / "repo" / "b" / "1" / "model.onnx")
    found = discover([a, tmp_path / "repo"])
    assert sorted(found) == ["a", "b"]


def test_repository_of_models_with_versions(tmp_path: Path) -> None:
    digits_1 = _touch(tmp_path / "digits" / "1" / "model.onnx")
    digits_10 = _touch(tmp_path / "digits" / "10" / "model.onnx")
    digits_2 = _touch(tmp_path / "digits" / "2" / "model.skops")
    iris = _touch(tmp_path / "iris" / "3" / "model.py")

    found = discover([tmp_path])

    assert sorted(found) == ["digits", "iris"]
    assert found["digits"].versions == [
        VersionSource(1, digits_1),
        VersionSource(2, digits_2),
        VersionSource(10, digits_10),
    ]
    assert found["iris"].versions == [VersionSource(3, iris)]
    assert found["iris"].runtime_for(found["iris"].versions[0]) == "python"


def test_single_model_directory_with_version_subdirectories(tmp_path: Path) -> None:
    model_dir = tmp_path / "resnet"
    v1 = _touch(model_dir / "1" / "model.onnx")
    v2 = _touch(model_dir / "2" / "model.onnx")
    _touch(model_dir / "config.yaml", "max_batch_size: 4\n")

    found = discover([model_dir])

    assert list(found) == ["resnet"]
    assert found["resnet"].versions == [VersionSource(1, v1), VersionSource(2, v2)]
    assert found["resnet"].config.max_batch_size == 4


def test_model_files_directly_in_a_repository(tmp_path: Path) -> None:
    loose = _touch(tmp_path / "loose.onnx")
    _touch(tmp_path / "nested" / "1" / "model.onnx")
    found = discover([tmp_path])
    assert sorted(found) == ["loose", "nested"]
    assert found["loose"].versions == [VersionSource(1, loose)]


def test_a_single_file_in_a_version_directory_need_not_be_named_model(tmp_path: Path) -> None:
    weights = _touch(tmp_path / "m" / "1" / "weights.onnx")
    assert discover([tmp_path])["m"].versions == [VersionSource(1, weights)]


def test_model_named_file_wins_over_others(tmp_path: Path) -> None:
    _touch(tmp_path / "m" / "1" / "other.onnx")
    chosen = _touch(tmp_path / "m" / "1" / "model.onnx")
    assert discover([tmp_path])["m"].versions == [VersionSource(1, chosen)]


def test_version_directory_with_ambiguous_files_is_skipped(tmp_path: Path) -> None:
    _touch(tmp_path / "m" / "1" / "a.onnx")
    _touch(tmp_path / "m" / "1" / "b.onnx")
    good = _touch(tmp_path / "m" / "2" / "model.onnx")
    assert discover([tmp_path])["m"].versions == [VersionSource(2, good)]


def test_non_model_files_and_directories_are_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _touch(tmp_path / "README.md", "# models")
    _touch(tmp_path / "notes.txt")
    _touch(tmp_path / ".hidden" / "1" / "model.onnx")
    _touch(tmp_path / "empty_model" / "config.yaml", "max_batch_size: 1\n")
    (tmp_path / "empty_dir").mkdir()
    _touch(tmp_path / "no_versions" / "model.onnx")
    _touch(tmp_path / "bad_versions" / "0" / "model.onnx")
    _touch(tmp_path / "bad_versions" / "v1" / "model.onnx")
    _touch(tmp_path / "bad_versions" / "-1" / "model.onnx")
    _touch(tmp_path / "only_data" / "1" / "data.csv")
    _touch(tmp_path / "unicode_digits" / "\u00b2" / "model.onnx")
    _touch(tmp_path / "unicode_digits" / "\u0661" / "model.onnx")
    good = _touch(tmp_path / "good" / "1" / "model.onnx")

    with caplog.at_level(logging.INFO, logger="ferry.sources"):
        found = discover([tmp_path])

    assert list(found) == ["good"]
    assert found["good"].versions == [VersionSource(1, good)]
    assert "README.md" in caplog.text
    assert "only_data" in caplog.text


def test_directory_with_unicode_digit_names_is_not_a_model(tmp_path: Path) -> None:
    _touch(tmp_path / "m" / "\u00b2" / "model.onnx")
    assert discover([tmp_path / "m"]) == {}
    assert discover([tmp_path]) == {}


def test_version_directories_past_64_bits_are_not_versions(tmp_path: Path) -> None:
    """No request could name such a version (the API refuses versions past 64 bits)."""
    _touch(tmp_path / "m" / ("9" * 20) / "model.onnx")
    kept = _touch(tmp_path / "m" / "007" / "model.onnx")
    assert discover([tmp_path])["m"].versions == [VersionSource(7, kept)]


def test_unsupported_single_file_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _touch(tmp_path / "model.h5")
    with caplog.at_level(logging.WARNING, logger="ferry.sources"):
        assert discover([path]) == {}
    assert "not a model file" in caplog.text


def test_missing_path_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ferry.sources"):
        assert discover([tmp_path / "nowhere"]) == {}
    assert "no such file or directory" in caplog.text


@pytest.mark.parametrize("name", ["-dash", "has space", "_under", "x" * 129, "simple\n"])
def test_invalid_model_names_are_ignored(tmp_path: Path, name: str) -> None:
    _touch(tmp_path / "repo" / name / "1" / "model.onnx")
    _touch(tmp_path / "files" / f"{name}.onnx")
    assert discover([tmp_path / "repo"]) == {}
    assert discover([tmp_path / "files" / f"{name}.onnx"]) == {}


@pytest.mark.parametrize("name", ["a", "A.b-c_d", "9lives", "x" * 128])
def test_valid_model_names(tmp_path: Path, name: str) -> None:
    _touch(tmp_path / name / "1" / "model.onnx")
    assert list(discover([tmp_path])) == [name]


def test_first_of_two_models_with_the_same_name_wins(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = _touch(tmp_path / "a" / "m.onnx")
    _touch(tmp_path / "b" / "m.skops")
    with caplog.at_level(logging.WARNING, logger="ferry.sources"):
        found = discover([tmp_path / "a" / "m.onnx", tmp_path / "b" / "m.skops"])
    assert found["m"].versions == [VersionSource(1, first)]
    assert "found twice" in caplog.text


def test_config_yaml_is_read(tmp_path: Path) -> None:
    _touch(tmp_path / "m" / "1" / "model.pt")
    _touch(tmp_path / "m" / "config.yaml", "runtime: python\nmax_delay_ms: 5\n")
    source = discover([tmp_path])["m"]
    assert source.error is None
    assert source.config.max_delay_ms == 5
    assert source.runtime_for(source.versions[0]) == "python"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max_batch: 4\n", "unknown key 'max_batch'"),
        ("- 1\n", "must be a mapping"),
        ("key: [unclosed\n", "cannot read it"),
        ("instances: 0\n", "instances"),
    ],
)
def test_config_errors_are_recorded_not_raised(tmp_path: Path, text: str, expected: str) -> None:
    _touch(tmp_path / "broken" / "1" / "model.onnx")
    _touch(tmp_path / "broken" / "config.yaml", text)
    _touch(tmp_path / "fine" / "1" / "model.onnx")

    found = discover([tmp_path])

    assert sorted(found) == ["broken", "fine"]
    error = found["broken"].error
    assert error is not None
    assert error.startswith("config.yaml: ")
    assert expected in error
    assert found["broken"].versions  # still listed, so the reason can be shown
    assert found["fine"].error is None


def test_model_source_defaults() -> None:
    source = ModelSource("m")
    assert source.versions == []
    assert source.error is None
    assert source.config.max_batch_size == 32


def test_a_directory_source_plans_every_version_and_looks_once_per_plan(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from ferry.sources import DirectorySource

    _touch(tmp_path / "m" / "1" / "model.onnx")
    _touch(tmp_path / "m" / "3" / "model.onnx")
    _touch(tmp_path / "notes.txt")
    source = DirectorySource([tmp_path])
    with caplog.at_level(logging.INFO, logger="ferry.sources"):
        assert list(source.discover()) == ["m"]  # what `ferry serve` checks before starting
        plan = source.plan()["m"]  # the manager's first plan: the same look, not a second
        assert sum("notes.txt" in r.getMessage() for r in caplog.records) == 1
        assert sorted(plan.versions) == ["1", "3"] and plan.default is None and plan.error is None
        model, version = source.materialise(plan.versions["3"])
        assert (model.name, version.version) == ("m", 3)
        source.plan()  # a later plan (a reload) looks at the disk again
        assert sum("notes.txt" in r.getMessage() for r in caplog.records) == 2
