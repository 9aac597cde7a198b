"""The ``ferry`` command. argparse keeps start-up fast: nothing heavy is imported
until a subcommand needs it."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ferry import __version__

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
    return parser


def _server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default 8000)")
    parser.add_argument("--max-body-bytes", type=int, default=None, help="request body limit (default 64 MiB)")
    parser.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"])
    parser.add_argument("--access-log", action="store_true", default=None, help="log every request")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "server":
        return _server(args)
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
