"""The ``ferry`` command. argparse keeps start-up fast: nothing heavy is imported
until a subcommand needs it (the client commands import httpx when they make a request)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ferry import __version__, client

if TYPE_CHECKING:
    from ferry.settings import Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ferry", description="Serve trained models over the Open Inference Protocol.")
    parser.add_argument("--version", action="version", version=f"ferry {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve",
        help="serve model files or model repositories",
        description="Serve each PATH: a model file (.onnx, .skops, .pt, .pt2, model.py, ...) "
        "named after its file, or a repository laid out as <repo>/<name>/<version>/model.<ext>.",
    )
    serve.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    _server_options(serve)

    server = commands.add_parser(
        "server",
        help="serve every model in a registry, with the management API",
        description="Serve the models of a registry (SQLite in the data directory, or PostgreSQL "
        "via FERRY_DATABASE_URL), and manage them under /api/v1/ (upload, stages, traffic).",
    )
    server.add_argument(
        "--data-dir", type=Path, default=None, help="registry and artifacts (default ./ferry-data; FERRY_DATA_DIR)"
    )
    _server_options(server)
    _client_commands(commands)
    return parser


CLIENT_COMMANDS = ("push", "models", "versions", "promote", "traffic", "rollback")


def _client_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The commands that manage a running `ferry server` over its API (/api/v1/)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        type=client.server_url,
        default=os.environ.get(client.URL_ENV) or client.DEFAULT_URL,
        help=f"the ferry server (default ${client.URL_ENV} or {client.DEFAULT_URL}); "
        f"${client.API_KEY_ENV}, when set, is sent as a bearer token",
    )
    common.add_argument("--json", action="store_true", help="print the server's JSON answer instead of a table")
    common.add_argument(
        "--timeout", type=client.seconds, default=None, metavar="SECONDS", help="how long to wait for an answer"
    )

    push = commands.add_parser(
        "push",
        parents=[common],
        help="upload a model file as a new version",
        description="Upload FILE as the next version of model NAME (created if needed). The server "
        "validates it before it answers; exits with 1 when the version failed validation.",
    )
    push.add_argument("file", type=Path, metavar="FILE")
    push.add_argument("--name", required=True, help="the model's name")
    push.add_argument("--stage", default=None, help="point this stage (e.g. staging) at the version if it is ready")

    commands.add_parser("models", parents=[common], help="list the models, their stages and traffic")

    versions = commands.add_parser("versions", parents=[common], help="list a model's versions")
    versions.add_argument("name", metavar="NAME")

    promote = commands.add_parser(
        "promote",
        parents=[common],
        help="point a stage at a version",
        description="Point STAGE (default production) of model NAME at VERSION; live when it returns.",
    )
    promote.add_argument("name", metavar="NAME")
    promote.add_argument("version", type=client.version_number, metavar="VERSION")
    promote.add_argument("--stage", default="production", help="the stage (default production)")

    traffic = commands.add_parser(
        "traffic",
        parents=[common],
        help="split a model's traffic over versions",
        description="Split unversioned requests to NAME over versions by weight, e.g. "
        "`ferry traffic digits 4=90 5=10` (weights add up to 100), and optionally copy a "
        "percentage of requests to a shadow version whose answers are recorded, never returned.",
    )
    traffic.add_argument("name", metavar="NAME")
    traffic.add_argument("weights", nargs="+", type=client.weight, metavar="VERSION=WEIGHT")
    traffic.add_argument("--shadow", type=client.shadow, default=None, metavar="VERSION=PERCENT")
    traffic.set_defaults(subparser=traffic)

    rollback = commands.add_parser(
        "rollback",
        parents=[common],
        help="put production back on the version before",
        description="Roll model NAME back: production returns to its previous version.",
    )
    rollback.add_argument("name", metavar="NAME")


def _server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default 8000)")
    parser.add_argument("--max-body-bytes", type=int, default=None, help="request body limit (default 64 MiB)")
    parser.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"])
    parser.add_argument("--access-log", action="store_true", default=None, help="log every request")
    parser.add_argument(
        "--no-metrics", dest="metrics", action="store_false", default=None, help="serve no Prometheus /metrics"
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "server":
        return _server(args)
    if args.command == "traffic":
        try:
            body = client.traffic_body(args.weights, args.shadow)
        except ValueError as exc:
            args.subparser.error(str(exc))  # exits with 2
        return client.run("traffic", args, body=body)
    if args.command in CLIENT_COMMANDS:
        if args.command == "push" and not args.file.is_file():
            print(f"ferry: {args.file}: no such file", file=sys.stderr)
            return 2
        return client.run(args.command, args)
    return 2


def _settings(args: argparse.Namespace) -> Settings:
    from ferry.settings import Settings

    overrides = {
        key: value
        for key, value in {
            "host": args.host,
            "port": args.port,
            "max_body_bytes": args.max_body_bytes,
            "log_level": args.log_level,
            "access_log": args.access_log,
            "metrics": args.metrics,
            "data_dir": getattr(args, "data_dir", None),
        }.items()
        if value is not None
    }
    settings = Settings(**overrides)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return settings


def _server(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from ferry.server import serve_registry

    serve_registry(settings)
    return 0


def _serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    missing = [p for p in args.paths if not p.exists()]
    for path in missing:
        logging.getLogger("ferry").warning("ignoring %s: no such file or directory", path)
    if len(missing) == len(args.paths):
        print("ferry: none of the given paths exist", file=sys.stderr)
        return 2
    from ferry.server import serve

    serve([p for p in args.paths if p.exists()], settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
