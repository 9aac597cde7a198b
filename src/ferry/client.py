"""The client commands of ``ferry`` (push, models, versions, promote, traffic, rollback;
keys and audit in ``client_keys``):
calls to a ``ferry server``'s management API under ``/api/v1/``.

``httpx`` is imported when a request is made, not when this module is, so that building
the command line parser stays fast."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from ferry import __version__, tables

if TYPE_CHECKING:
    import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "FERRY_URL"
API_KEY_ENV = "FERRY_API_KEY"

CONNECT_TIMEOUT_S = 10.0
# Reads answer at once; a promotion or traffic change answers once the versions it needs
# are loaded and warm, and an upload once the version is validated (loaded, warmed up).
READ_TIMEOUT_S = 30.0
CHANGE_TIMEOUT_S = 300.0
UPLOAD_TIMEOUT_S = 900.0


class ClientError(Exception):
    """Printed as ``ferry: <message>``; the command exits with 1."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


# -- arguments ------------------------------------------------------------------------


def server_url(text: str) -> str:
    """``--url``: an http(s) URL of a ferry server, without a trailing slash."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"not an http:// or https:// URL: {text!r}")
    return text.strip().rstrip("/")


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"a timeout is a number of seconds above 0, not {text!r}")
    return value


def version_number(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a version is a whole number from 1, not {text!r}")
    return int(text)


def _percent(text: str, what: str) -> int:
    value = text.strip().removesuffix("%")
    if not value.isdigit() or int(value) > 100:
        raise argparse.ArgumentTypeError(f"{what} must be a whole number from 0 to 100, not {text!r}")
    return int(value)


def _pair(text: str, what: str) -> tuple[int, int]:
    version, sep, percent = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected VERSION={what.upper()}, like 4=90, not {text!r}")
    try:
        return version_number(version.strip()), _percent(percent, what)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def weight(text: str) -> tuple[int, int]:
    """``4=90``: version 4 takes 90% of unversioned requests."""
    return _pair(text, "weight")


def shadow(text: str) -> tuple[int, int]:
    """``6=20``: version 6 gets a copy of 20% of requests."""
    return _pair(text, "percent")


def traffic_body(weights: list[tuple[int, int]], shadow: tuple[int, int] | None = None) -> dict[str, Any]:
    """The body of ``PUT /traffic``; ``ValueError`` with a readable message if the
    weights cannot be accepted (the server checks the same, and that versions are ready)."""
    if not weights:
        raise ValueError("give at least one VERSION=WEIGHT")
    split: dict[str, int] = {}
    for version, share in weights:
        if str(version) in split:
            raise ValueError(f"version {version} is given more than once")
        split[str(version)] = share
    total = sum(split.values())
    if total != 100:
        raise ValueError(f"weights must add up to 100, not {total}")
    body: dict[str, Any] = {"weights": split}
    if shadow is not None:
        version, percent = shadow
        if split.get(str(version), 0) > 0:
            raise ValueError(f"version {version} cannot be the shadow and take traffic too")
        body["shadow"] = {"version": version, "percent": percent}
    return body


# -- HTTP -----------------------------------------------------------------------------


@dataclass
class Client:
    url: str
    api_key: str | None = None
    read_timeout_s: float | None = None  # --timeout: overrides every read timeout

    def get(self, path: str) -> Any:
        return self.request("GET", path, READ_TIMEOUT_S)

    def request(self, method: str, path: str, timeout_s: float, **kwargs: Any) -> Any:
        """The decoded JSON answer of a 2xx; ``ClientError`` for anything else."""
        import httpx

        headers = {"User-Agent": f"ferry/{__version__}", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        read = self.read_timeout_s or timeout_s
        timeout = httpx.Timeout(read, connect=min(CONNECT_TIMEOUT_S, read))
        target = f"{self.url}{path}"
        try:
            response = httpx.request(method, target, headers=headers, timeout=timeout, **kwargs)
        except httpx.ConnectError as exc:
            raise ClientError(f"could not reach {self.url}: {_reason(exc)}") from None
        except httpx.TimeoutException:
            raise ClientError(f"{self.url} did not answer {method} {path} within {read:g} s") from None
        except httpx.HTTPError as exc:
            raise ClientError(f"{method} {target} failed: {_reason(exc)}") from None
        return _answer(response)

    def push(self, name: str, file: Path, stage: str | None, config: Path | None = None) -> Any:
        from ferry.errors import InvalidInput
        from ferry.names import check_file_name

        try:  # the server refuses it too; saying so here spares sending the file
            check_file_name(file.name)
        except InvalidInput as exc:
            raise ClientError(f"{exc.message}; rename the file") from None
        files: dict[str, tuple[str, Any, str]] = {}
        if config is not None:
            files["config"] = ("config.yaml", uploadable_config(config), "application/json")
        with file.open("rb") as f:
            files["file"] = (file.name, f, "application/octet-stream")
            return self.request(
                "POST",
                f"{_model(name)}/versions",
                UPLOAD_TIMEOUT_S,
                files=files,
                data={"stage": stage} if stage else {},
            )


def uploadable_config(path: Path) -> bytes:
    """config.yaml as the server takes it with an upload: checked here, with a labels file
    beside it read into the list of class names (the server has no folder to read it from)."""
    import yaml  # here: the other commands never need the config's parsers

    from ferry.config import load_config
    from ferry.errors import ConfigError

    try:
        config = load_config(path)  # the same checks `ferry serve` makes, labels files read
    except ConfigError as exc:
        raise ClientError(str(exc)) from None
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}  # a mapping: load_config checked
    for step, parsed in zip(raw.get("postprocess") or [], config.postprocess, strict=False):
        if isinstance(step, dict):
            step["labels"] = parsed.labels
    try:
        return json.dumps(raw, allow_nan=False).encode()
    except (TypeError, ValueError):
        raise ClientError(
            f"{path}: only text, finite numbers, true/false, null, lists and mappings are allowed"
        ) from None


def _model(name: str) -> str:
    return f"/api/v1/models/{quote(name, safe='')}"


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _answer(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success:
        if body is None:
            raise ClientError(f"the server answered {response.status_code} without JSON; is it a ferry server?")
        return body
    message = body.get("error") if isinstance(body, dict) else None
    if response.status_code in (404, 405) and message in (None, "Not Found", "Method Not Allowed"):
        # No such route, as opposed to "model 'x' not found": an older or different server.
        request = response.request
        message = f"the server has no {request.method} {request.url.path} (is it an older ferry server?)"
    if not message:
        message = response.text.strip()[:200] or response.reason_phrase
    raise ClientError(f"{message} (HTTP {response.status_code})", response.status_code)


# -- commands -------------------------------------------------------------------------


def client(args: argparse.Namespace) -> Client:
    return Client(args.url, os.environ.get(API_KEY_ENV) or None, args.timeout)


def _print(args: argparse.Namespace, answer: Any, text: str) -> None:
    if args.json:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
    else:
        print(text)


def push(args: argparse.Namespace) -> int:
    version = client(args).push(args.name, args.file, args.stage, args.config)
    _print(args, version, tables.version_summary(version, args.stage))
    return 1 if version.get("state") == "failed" else 0


def models(args: argparse.Namespace) -> int:
    answer = client(args).get("/api/v1/models")
    _print(args, answer, tables.models_table(answer))
    return 0


def versions(args: argparse.Namespace) -> int:
    api = client(args)
    answer = api.get(f"{_model(args.name)}/versions")
    if args.json:
        _print(args, answer, "")
        return 0
    print(tables.versions_table(answer, api.get(_model(args.name))))
    return 0


def promote(args: argparse.Namespace) -> int:
    path = f"{_model(args.name)}/stages/{quote(args.stage, safe='')}"
    answer = client(args).request("PUT", path, CHANGE_TIMEOUT_S, json={"version": args.version})
    _print(args, answer, tables.model_summary(answer))
    return 0


def traffic(args: argparse.Namespace, body: dict[str, Any] | None) -> int:
    """PUT the split in ``body``; None: DELETE it (``--clear``)."""
    if body is None:
        answer = client(args).request("DELETE", f"{_model(args.name)}/traffic", CHANGE_TIMEOUT_S)
        _print(args, answer, tables.model_summary(answer))
        return 0
    answer = client(args).request("PUT", f"{_model(args.name)}/traffic", CHANGE_TIMEOUT_S, json=body)
    wanted = body.get("shadow")
    if wanted and not _shadow_applied(answer, wanted):
        raise ClientError(
            "the server accepted the weights but not the shadow (does this server support shadow traffic?); "
            f"traffic now: {tables.traffic(answer.get('traffic') if isinstance(answer, dict) else None)}"
        )
    _print(args, answer, tables.model_summary(answer))
    return 0


def _shadow_applied(answer: Any, wanted: Mapping[str, int]) -> bool:
    current = answer.get("traffic") if isinstance(answer, dict) else None
    if not isinstance(current, dict):
        return False
    return current.get("shadow_version") == wanted["version"] and current.get("shadow_percent") == wanted["percent"]


def rollback(args: argparse.Namespace) -> int:
    answer = client(args).request("POST", f"{_model(args.name)}/rollback", CHANGE_TIMEOUT_S)
    _print(args, answer, tables.model_summary(answer))
    return 0


def run(command: str, args: argparse.Namespace, **extra: Any) -> int:
    """Run a client command; a ``ClientError`` becomes ``ferry: <message>`` and exit 1."""
    from ferry import client_keys

    commands = {
        "keys": client_keys.keys,
        "audit": client_keys.audit,
        "push": push,
        "models": models,
        "versions": versions,
        "promote": promote,
        "rollback": rollback,
    }
    try:
        if command == "traffic":
            return traffic(args, extra["body"])
        return commands[command](args)
    except ClientError as exc:
        print(f"ferry: {exc.message}", file=sys.stderr)
        return 1
