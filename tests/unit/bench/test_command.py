"""`ferry bench` usage errors that need no server: exit 2 and one line saying why."""

from __future__ import annotations

import pytest

from ferry.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["127.0.0.1:8000", "m"], "not an http:// or https:// URL"),
        (["http://127.0.0.1:1", "m", "--batch", "2", "--input-data", "x.json"], "--batch does not apply"),
        (["http://127.0.0.1:1", "m", "--csv", "/no/such/dir/out.csv"], "no directory /no/such/dir"),
        (["grpc://127.0.0.1:1/v2", "m", "--protocol", "grpc"], "a gRPC address has no path"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("ferry: ") and message in err


@pytest.mark.parametrize("option", [["--concurrency", "0"], ["--duration", "0s"], ["--protocol", "http3"]])
def test_bad_option_values_are_argparse_errors(option: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bench", "http://127.0.0.1:1", "m", *option])
    assert exited.value.code == 2


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from ferry.bench import command

    seen = {}
    monkeypatch.setattr(command, "run", lambda args: seen.update(vars(args)) or 0)
    assert main(["bench", "http://h", "m"]) == 0
    assert seen["concurrency"] == [1, 4, 16, 64]
    assert (seen["duration"], seen["warmup"], seen["protocol"], seen["batch"]) == (10.0, 2.0, "rest-json", None)
