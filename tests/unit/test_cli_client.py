"""The client commands' argument parsing and readable output, without a server."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pytest

from ferry import client, tables
from ferry.cli import _parser, main


def parse(*argv: str) -> argparse.Namespace:
    return _parser().parse_args(list(argv))


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    assert exit_.value.code == 2
    return capsys.readouterr().err


# -- arguments ------------------------------------------------------------------------


def test_url_comes_from_the_option_then_ferry_url_then_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FERRY_URL", raising=False)
    assert parse("models").url == "http://127.0.0.1:8000"
    monkeypatch.setenv("FERRY_URL", "http://models.internal:9000/")
    assert parse("models").url == "http://models.internal:9000"
    assert parse("models", "--url", "https://ferry.example.com").url == "https://ferry.example.com"


def test_common_options_on_every_client_command() -> None:
    for argv in (["models"], ["versions", "m"], ["rollback", "m"], ["promote", "m", "2"], ["traffic", "m", "1=100"]):
        args = parse(*argv, "--json", "--timeout", "5")
        assert args.json and args.timeout == 5.0
    assert not parse("models").json


def test_push_arguments() -> None:
    args = parse("push", "model.onnx", "--name", "digits", "--stage", "staging")
    assert (args.file, args.name, args.stage) == (Path("model.onnx"), "digits", "staging")
    assert parse("push", "model.onnx", "--name", "digits").stage is None


def test_promote_defaults_to_production() -> None:
    args = parse("promote", "digits", "4")
    assert (args.name, args.version, args.stage) == ("digits", 4, "production")
    assert parse("promote", "digits", "4", "--stage", "staging").stage == "staging"


def test_traffic_weights_and_shadow() -> None:
    args = parse("traffic", "digits", "4=90", "5=10", "--shadow", "6=20%")
    assert args.weights == [(4, 90), (5, 10)] and args.shadow == (6, 20)
    assert client.traffic_body(args.weights, args.shadow) == {
        "weights": {"4": 90, "5": 10},
        "shadow": {"version": 6, "percent": 20},
    }
    assert client.traffic_body([(3, 100)]) == {"weights": {"3": 100}}


@pytest.mark.parametrize(
    ("weights", "shadow", "message"),
    [
        ([(4, 90)], None, "add up to 100, not 90"),
        ([(4, 50), (4, 50)], None, "more than once"),
        ([(4, 90), (5, 10)], (5, 20), "cannot be the shadow and take traffic"),
        ([], None, "at least one"),
    ],
)
def test_traffic_body_refuses(weights: list[tuple[int, int]], shadow: tuple[int, int] | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        client.traffic_body(weights, shadow)


@pytest.mark.parametrize("text", ["4", "4=", "=90", "x=90", "0=100", "4=101", "4=-1", "4=9.5"])
def test_bad_weights_are_usage_errors(capsys: pytest.CaptureFixture[str], text: str) -> None:
    err = usage_error(capsys, "traffic", "digits", text)
    assert "VERSION=WEIGHT" in err and repr(text) in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["traffic", "digits", "4=90"], "weights must add up to 100, not 90"),
        (["traffic", "digits", "4=100", "--shadow", "6"], "expected VERSION=PERCENT"),
        (["traffic", "digits"], "VERSION=WEIGHT pairs, or --clear"),
        (["promote", "digits", "four"], "a version is a whole number"),
        (["promote", "digits"], "required"),
        (["push", "model.onnx"], "--name"),
        (["versions"], "required"),
        (["models", "--url", "localhost:8000"], "not an http:// or https:// URL"),
        (["models", "--timeout", "0"], "above 0"),
    ],
)
def test_usage_errors_exit_with_2(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert message in usage_error(capsys, *argv)


def test_push_of_a_missing_file_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["push", str(tmp_path / "nope.onnx"), "--name", "m"]) == 2
    assert "nope.onnx: no such file" in capsys.readouterr().err


# -- push --config ----------------------------------------------------------------------


def test_push_config_argument() -> None:
    assert parse("push", "model.onnx", "--name", "m", "--config", "cfg/config.yaml").config == Path("cfg/config.yaml")
    assert parse("push", "model.onnx", "--name", "m").config is None


def test_push_of_a_missing_config_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not looked at")
    # Refused before any request: nothing listens on port 1.
    argv = ["push", str(model), "--name", "m", "--config", str(tmp_path / "nope.yaml"), "--url", "http://127.0.0.1:1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "nope.yaml: no such file" in err and "could not reach" not in err


def test_uploadable_config_reads_the_labels_file_into_the_list(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "max_batch_size: 4\n"
        "postprocess:\n"
        "  - {output: y, labels: labels.txt, top_k: 2}\n"
        "  - {output: z, labels: [p, q]}\n"
        "playground: {inputs: {x: {widget: form}}}\n"
    )
    (tmp_path / "labels.txt").write_text("cat\n  dog \nbird\n\n")
    sent = json.loads(client.uploadable_config(config))
    assert sent == {
        "max_batch_size": 4,
        "postprocess": [
            {"output": "y", "labels": ["cat", "dog", "bird"], "top_k": 2},
            {"output": "z", "labels": ["p", "q"]},
        ],
        "playground": {"inputs": {"x": {"widget": "form"}}},
    }
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing set\n")
    assert json.loads(client.uploadable_config(empty)) == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_batch_sise: 4\n", "unknown key 'max_batch_sise'"),
        ("max_batch_size: [4\n", "cannot read it"),
        ("- max_batch_size: 4\n", "must be a mapping"),
        ("postprocess: [{labels: missing.txt}]\n", "labels file 'missing.txt'"),
        ("postprocess: [{labels: ../labels.txt}]\n", "must be beside config.yaml"),
        ("postprocess: [{labels: empty.txt}]\n", "labels file 'empty.txt' is empty"),
    ],
)
def test_push_of_an_invalid_config_fails_before_any_request(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, message: str
) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.yaml").write_text(text)
    (folder / "empty.txt").write_text("\n")
    (tmp_path / "labels.txt").write_text("a\nb\n")  # beside the folder, not in it
    (folder / "model.onnx").write_bytes(b"not looked at")
    with pytest.raises(client.ClientError, match=re.escape(message)):
        client.uploadable_config(folder / "config.yaml")
    # `ferry push` says so and exits 1 without a request: nothing listens on port 1.
    argv = ["push", str(folder / "model.onnx"), "--name", "m", "--config", str(folder / "config.yaml")]
    assert main([*argv, "--url", "http://127.0.0.1:1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ferry: ") and message in err and "could not reach" not in err, err


@pytest.mark.parametrize(("filename", "shown"), [("model\t.onnx", "U+0009"), ("\u202exnno.onnx", "U+202E")])
def test_push_of_a_file_name_with_hidden_characters_fails_before_any_request(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, filename: str, shown: str
) -> None:
    (tmp_path / filename).write_bytes(b"not looked at")
    # Nothing listens on port 1: an attempt to send it would say "could not reach".
    assert main(["push", str(tmp_path / filename), "--name", "m", "--url", "http://127.0.0.1:1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ferry: the file name must not contain control or invisible characters"), err
    assert shown in err and "rename the file" in err


def test_a_config_json_cannot_hold_is_a_client_error(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("description: !!binary aGVsbG8=\n")
    with pytest.raises(client.ClientError):
        client.uploadable_config(config)


def test_unreachable_server_exits_with_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--url", "http://127.0.0.1:1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ferry: could not reach http://127.0.0.1:1")


def test_api_key_is_sent_as_a_bearer_token(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(404, json={"error": "model 'x' not found"})

    transport = httpx.MockTransport(handler)
    monkeypatch.setattr(httpx, "request", lambda *a, **kw: httpx.Client(transport=transport).request(*a, **kw))
    monkeypatch.setenv("FERRY_API_KEY", "s3cret")
    with pytest.raises(client.ClientError, match=r"model 'x' not found \(HTTP 404\)") as error:
        client.client(parse("versions", "x")).get("/api/v1/models/x")
    assert error.value.status == 404
    assert seen[0].headers["Authorization"] == "Bearer s3cret"
    monkeypatch.delenv("FERRY_API_KEY")
    with pytest.raises(client.ClientError):
        client.client(parse("versions", "x")).get("/api/v1/models/x")
    assert "Authorization" not in seen[1].headers


def test_importing_the_cli_does_not_import_httpx() -> None:
    import subprocess

    code = "import sys, ferry.cli; ferry.cli._parser(); print('httpx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# -- output ---------------------------------------------------------------------------


def test_table_aligns_columns_without_trailing_spaces() -> None:
    text = tables.table(["NAME", "V", "NOTE"], [["digits", 4, None], ["a", 12, "two\nlines"]])
    assert text.splitlines() == [
        "NAME    V   NOTE",
        "digits  4   -",
        "a       12  two lines",
    ]


def test_sizes_and_times() -> None:
    assert tables.size(812) == "812 B"
    assert tables.size(1536) == "1.5 KiB"
    assert tables.size(12 * 1024 * 1024) == "12.0 MiB"
    assert tables.size(None) == "-"
    assert tables.milliseconds(12.345) == "12.3"
    assert tables.milliseconds(None) == "-"
    assert tables.timestamp("2024-05-01T12:30:05.123") == "2024-05-01 12:30:05"
    assert tables.timestamp(None) == "-"


MODEL = {
    "name": "digits",
    "description": "handwritten digits",
    "stages": {"production": 4, "staging": 5, "candidate": 5},
    "traffic": {"weights": {"4": 90, "5": 10}, "shadow_version": 6, "shadow_percent": 20},
}


def test_traffic_summary() -> None:
    assert tables.traffic(MODEL["traffic"]) == "4=90% 5=10%, shadow 6=20%"  # type: ignore[arg-type]
    assert tables.traffic({"weights": {}, "shadow_version": None, "shadow_percent": 0}) == "(production)"


def test_models_table() -> None:
    plain = {"name": "iris", "description": "", "stages": {}, "traffic": {"weights": {}}}
    lines = tables.models_table([MODEL, plain]).splitlines()
    assert lines[0].split() == ["NAME", "PRODUCTION", "STAGING", "TRAFFIC", "OTHER", "STAGES", "DESCRIPTION"]
    assert lines[1].split() == [
        "digits",
        "4",
        "5",
        "4=90%",
        "5=10%,",
        "shadow",
        "6=20%",
        "candidate=5",
        "handwritten",
        "digits",
    ]
    assert lines[2].split() == ["iris", "-", "-", "(production)", "-", "-"]
    assert "VERSIONS" in tables.models_table([{**plain, "version_count": 3}])
    assert "no models" in tables.models_table([])


def test_versions_table_shows_stages_traffic_and_failures() -> None:
    versions = [
        {"number": 6, "state": "ready", "runtime": "onnx", "artifact_size": 2048, "warmup_ms": 1.25,
         "created_at": "2024-05-01T12:00:00", "failure_reason": None},
        {"number": 4, "state": "ready", "runtime": "onnx", "artifact_size": 2048, "warmup_ms": 3.0,
         "created_at": "2024-04-01T12:00:00", "failure_reason": None},
        {"number": 7, "state": "failed", "runtime": "onnx", "artifact_size": 11, "warmup_ms": None,
         "created_at": "2024-05-02T12:00:00", "failure_reason": "cannot load it"},
    ]  # fmt: skip
    lines = tables.versions_table(versions, MODEL).splitlines()
    assert lines[0].split() == [
        "VERSION", "STATE", "RUNTIME", "SIZE", "WARM-UP", "MS", "UPLOADED", "STAGES", "TRAFFIC", "FAILURE"
    ]  # fmt: skip
    assert [line.split()[0] for line in lines[1:]] == ["4", "6", "7"]
    assert "production" in lines[1] and "90%" in lines[1]
    assert "shadow 20%" in lines[2] and "1.2" in lines[2] and "2.0 KiB" in lines[2]
    assert lines[3].endswith("cannot load it") and "failed" in lines[3]


def test_push_and_model_summaries() -> None:
    ready = {"model": "digits", "number": 5, "state": "ready", "runtime": "onnx", "artifact_size": 100, "warmup_ms": 2}
    assert tables.version_summary(ready, "staging").splitlines() == [
        "digits version 5: ready (runtime onnx, 100 B, warm-up 2.0 ms)",
        "digits: staging -> version 5",
    ]
    failed = {"model": "digits", "number": 6, "state": "failed", "failure_reason": "bad file"}
    assert tables.version_summary(failed, "staging").splitlines() == ["digits version 6: failed", "reason: bad file"]
    summary = tables.model_summary(MODEL)
    assert summary.splitlines()[0] == "digits: production -> version 4"
    assert "digits: staging -> version 5" in summary and "shadow 6=20%" in summary
    assert "production -> none" in tables.model_summary({"name": "m", "stages": {}, "traffic": None})


def test_json_output_is_the_server_answer(capsys: pytest.CaptureFixture[str]) -> None:
    client._print(parse("models", "--json"), [MODEL], "table")
    assert json.loads(capsys.readouterr().out) == [MODEL]
    client._print(parse("models"), [MODEL], "table")
    assert capsys.readouterr().out == "table\n"


def test_trust_is_given_on_ferry_servers_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from ferry.cli import _settings

    monkeypatch.setenv("FERRY_LOG_FORMAT", "console")
    args = parse("server", "--trust-model", "fraud", "--trust-model", "risk", "--trust-type", "numpy.float64")
    settings = _settings(args)
    assert settings.trusted_models == ["fraud", "risk"] and settings.trusted_types == ["numpy.float64"]
    assert _settings(parse("server")).trusted_models == []
    monkeypatch.setenv("FERRY_TRUSTED_MODELS", '["fraud"]')
    assert _settings(parse("server")).trusted_models == ["fraud"]
