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
    serve.add_argument(
        "--data-dir", type=Path, default=None, help="where API keys and the audit trail live (default ./ferry-data)"
    )
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
    server.add_argument(
        "--database-url",
        default=None,
        metavar="URL",
        help="SQLAlchemy URL of the registry, e.g. postgresql+psycopg://user@host/ferry "
        "(default sqlite:///<data dir>/registry.db; FERRY_DATABASE_URL, better for a URL with a password, "
        "which any user of the machine could read from the command line)",
    )
    server.add_argument(
        "--artifacts-url",
        default=None,
        metavar="URL",
        help="keep artifacts in an S3-compatible bucket, s3://BUCKET/PREFIX; endpoint and credentials "
        "come from the standard AWS settings (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_PROFILE, a role) "
        "(default <data dir>/artifacts; FERRY_ARTIFACTS_URL)",
    )
    server.add_argument(
        "--trust-model",
        dest="trusted_models",
        action="append",
        default=None,
        metavar="NAME",
        help="load this model's pickle/joblib uploads and any type in its .skops files: they can run "
        "code on this server, so only for models whose uploaders you trust as you trust yourself (repeatable)",
    )
    server.add_argument(
        "--trust-type",
        dest="trusted_types",
        action="append",
        default=None,
        metavar="TYPE",
        help="a type every model's .skops files may contain beyond skops' defaults, e.g. numpy.float64 (repeatable)",
    )
    server.add_argument(
        "--validation-memory-mb",
        type=int,
        default=None,
        metavar="MB",
        help="memory an upload's validation may use, plus 4x the file's size (default 2048)",
    )
    server.add_argument(
        "--role",
        choices=["all", "control", "inference"],
        default=None,
        help="all (default): everything in one process; control: management API, web app, keys, audit, "
        "no models; inference: inference, metadata, health and metrics only (FERRY_ROLE)",
    )
    server.add_argument(
        "--no-migrate",
        dest="migrate",
        action="store_false",
        default=None,
        help="do not migrate the database at start: wait for `ferry migrate` (cluster nodes; FERRY_MIGRATE=false)",
    )
    _server_options(server)
    migrate = commands.add_parser(
        "migrate",
        help="bring the registry database to this release's schema, then exit",
        description="Migrate the registry database (SQLite in the data directory, or FERRY_DATABASE_URL) "
        "to this release's schema and exit: run it once per upgrade (a Helm hook Job) and start the "
        "nodes with --no-migrate. Safe to run twice or from several places at once.",
    )
    migrate.add_argument(
        "--data-dir", type=Path, default=None, help="the data directory (default ./ferry-data; FERRY_DATA_DIR)"
    )
    _client_commands(commands)
    _bench_command(commands)
    return parser


def _bench_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ferry.bench import options

    bench = commands.add_parser(
        "bench",
        help="measure throughput and latency of a model on any Open Inference Protocol server",
        description="Send MODEL's inference requests to URL (Ferry, Triton, KServe, MLServer) from N "
        "concurrent workers over keep-alive connections, for each concurrency level in turn, and print "
        "req/s, rows/s and latency percentiles. Inputs are random values in the shapes and datatypes "
        "of the model's metadata, or --input-data. Exits with 1 when any request failed, 2 when the "
        "run cannot start.",
    )
    bench.add_argument("url", metavar="URL", help="the server, e.g. http://127.0.0.1:8000 (gRPC: host:8001)")
    bench.add_argument("model", metavar="MODEL", help="the model's name")
    bench.add_argument(
        "--concurrency",
        type=options.concurrency_levels,
        default=options.concurrency_levels(options.DEFAULT_CONCURRENCY),
        metavar="N[,N...]",
        help=f"requests in flight, one level after another (default {options.DEFAULT_CONCURRENCY})",
    )
    bench.add_argument(
        "--duration", type=options.positive_duration, default=10.0, help="measured time per level (default 10s)"
    )
    bench.add_argument(
        "--warmup", type=options.duration, default=2.0, help="unmeasured load before each level (default 2s)"
    )
    bench.add_argument(
        "--protocol",
        choices=options.PROTOCOLS,
        default="rest-json",
        help="V2 JSON, V2 binary tensors, or gRPC ModelInfer (default rest-json)",
    )
    bench.add_argument(
        "--input-data",
        type=Path,
        default=None,
        metavar="FILE",
        help='a V2 inference request body to send, {"inputs": [...]}, instead of random values',
    )
    bench.add_argument(
        "--batch",
        type=options.batch_size,
        default=None,
        metavar="N",
        help="rows per request: the size of the batch dimension (default 1)",
    )
    bench.add_argument(
        "--api-key", default=None, metavar="KEY", help=f"sent as a bearer token (default ${client.API_KEY_ENV})"
    )
    bench.add_argument("--csv", type=Path, default=None, metavar="FILE", help="write one row per level as CSV")
    bench.add_argument("--json", type=Path, default=None, metavar="FILE", help="write the run and its levels as JSON")


CLIENT_COMMANDS = ("push", "models", "versions", "promote", "traffic", "rollback", "keys", "audit")


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
    push.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="CONFIG_YAML",
        help="the version's config.yaml (pre/post-processing, labels, batching, playground); "
        "by default the model's latest ready version's config",
    )

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
    traffic.add_argument("weights", nargs="*", type=client.weight, metavar="VERSION=WEIGHT")
    traffic.add_argument("--shadow", type=client.shadow, default=None, metavar="VERSION=PERCENT")
    traffic.add_argument(
        "--clear",
        action="store_true",
        help="end the split and the shadow: unversioned requests follow the production stage again",
    )
    traffic.set_defaults(subparser=traffic)

    rollback = commands.add_parser(
        "rollback",
        parents=[common],
        help="put production back on the version before",
        description="Roll model NAME back: production returns to its previous version.",
    )
    rollback.add_argument("name", metavar="NAME")
    _key_commands(commands, common)


def _key_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    keys = commands.add_parser(
        "keys",
        parents=[common],
        help="list, create and revoke API keys (admin)",
        description="Without an action: list the keys (never their secrets). Through the server's API "
        f"with an admin key in ${client.API_KEY_ENV}, or with --data-dir straight in that data "
        "directory's database (FERRY_DATABASE_URL for PostgreSQL), e.g. when every admin key is lost.",
    )
    keys.add_argument("--data-dir", type=Path, default=None, help="work on this data directory, not a server")
    actions = keys.add_subparsers(dest="keys_action")
    create = actions.add_parser(
        "create",
        help="make a key; it is printed once",
        description="Make an API key. It is printed this once; the server keeps only a digest of it.",
    )
    create.add_argument("--name", required=True, help="who or what uses the key")
    create.add_argument("--scopes", required=True, help="comma-separated: read, infer, deploy, admin")
    create.add_argument("--models", default=None, help="comma-separated model names the key is limited to")
    create.add_argument("--rate", default=None, help="request rate limit, e.g. 50/s, 600/m, 1000/h")
    create.add_argument("--expires", default=None, help="e.g. 30d, 12h or an ISO 8601 time")
    revoke = actions.add_parser("revoke", help="revoke a key: it stops working at once")
    revoke.add_argument("key_id", metavar="ID")
    actions.add_parser(
        "generate",
        help="print a new key's text, stored nowhere: for FERRY_BOOTSTRAP_ADMIN_KEY",
        description="Print a new key's text without storing it anywhere, e.g. for a Kubernetes Secret "
        "that FERRY_BOOTSTRAP_ADMIN_KEY(_FILE) reads: the first start on an empty database makes it "
        "the first admin key.",
    )

    audit = commands.add_parser(
        "audit",
        parents=[common],
        help="read the audit trail (admin)",
        description="Control-plane actions (uploads, stages, traffic, rollbacks, load/unload, keys) and "
        "refused attempts at them, newest first.",
    )
    audit.add_argument("--limit", type=int, default=50, help="at most this many events (default 50)")
    audit.add_argument("--action", default=None, help="only this action, e.g. set_stage, create_key")
    audit.add_argument("--key", default=None, metavar="ID", help="only actions by this key")
    audit.add_argument("--target", default=None, help="only this target, e.g. digits or digits/production")
    audit.add_argument("--result", default=None, choices=["ok", "denied", "failed", "dropped"])
    audit.add_argument("--since", default=None, help="only events from this ISO 8601 time on")


def _server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="HTTP port (default 8000)")
    parser.add_argument(
        "--grpc-port", type=int, default=None, help="gRPC port, same host, keys and TLS (default 8001; 0: no gRPC)"
    )
    parser.add_argument("--max-body-bytes", type=int, default=None, help="request body limit (default 64 MiB)")
    _connection_options(parser)
    parser.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--log-format", default=None, choices=["auto", "json", "console"], help="default: json unless on a terminal"
    )
    parser.add_argument("--access-log", action="store_true", default=None, help="log every request")
    parser.add_argument(
        "--no-metrics", dest="metrics", action="store_false", default=None, help="serve no Prometheus /metrics"
    )
    parser.add_argument(
        "--no-auth",
        dest="auth",
        action="store_false",
        default=None,
        help="no API keys: anyone who can connect may do anything (refused unless --host is loopback)",
    )
    parser.add_argument(
        "--ready-despite-failures",
        action="store_true",
        default=None,
        help="answer ready once loading has finished even if some models failed to load "
        "(by default a failed model keeps /v2/health/ready at 503)",
    )
    parser.add_argument("--ssl-certfile", type=Path, default=None, help="TLS certificate (PEM): serve HTTPS")
    parser.add_argument("--ssl-keyfile", type=Path, default=None, help="TLS private key (PEM)")
    parser.add_argument(
        "--audit-window-s",
        type=float,
        default=None,
        metavar="SECONDS",
        help="repeats of a refused or failed attempt by one key on one action within this window are "
        "one audit row with a count (default 60; 0: a row each)",
    )
    parser.add_argument(
        "--audit-queue-size",
        type=int,
        default=None,
        metavar="ROWS",
        help="audit rows waiting for the database; beyond it they are only counted (default 10000)",
    )
    parser.add_argument(
        "--audit-retention-days",
        type=float,
        default=None,
        metavar="DAYS",
        help="delete audit rows older than this (default 90; 0: keep them)",
    )
    parser.add_argument(
        "--audit-max-rows",
        type=int,
        default=None,
        metavar="ROWS",
        help="keep only the newest this many audit rows (default 1000000; 0: no cap)",
    )
    parser.add_argument(
        "--redis-url",
        default=None,
        metavar="URL",
        help="Redis for what nodes share: keys' rate limits, response caches with `shared: true` (redis://host:6379/0)",
    )
    parser.add_argument(
        "--onnx-memory-mb",
        type=int,
        default=None,
        metavar="MB",
        help="memory all ONNX models' tensors may take together; a request needing more gets 413 "
        "(default: half the machine's memory; 0: no limit)",
    )
    parser.add_argument(
        "--cors-origin",
        dest="cors_origins",
        action="append",
        default=None,
        metavar="ORIGIN",
        help="a browser origin allowed to call the API, e.g. https://app.example.com (repeatable)",
    )


def _connection_options(parser: argparse.ArgumentParser) -> None:
    """Limits on what one connection or request may cost (docs/security.md)."""
    parser.add_argument(
        "--max-header-bytes", type=int, default=None, help="request head limit, else 431 (default 64 KiB)"
    )
    parser.add_argument(
        "--max-header-fields", type=int, default=None, help="header fields per request, else 431 (default 100)"
    )
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="a request head must arrive within this, else 408 and close (default 10)",
    )
    parser.add_argument(
        "--body-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="a request body gets this long plus 1 s per --body-min-rate bytes, else 408 and close (default 20)",
    )
    parser.add_argument(
        "--body-min-rate",
        type=int,
        default=None,
        metavar="BYTES_PER_S",
        help="the slowest a request body may arrive after --body-timeout (default 1024)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="close idle keep-alive connections after this (default 5)",
    )
    parser.add_argument(
        "--json-offload-bytes",
        type=int,
        default=None,
        help="decode JSON bodies this large in a worker process, off the event loop (default 1 MiB; 0: never)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=None,
        help="beyond this many connections or requests in flight, 503 (probes excepted; default 1000)",
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "server":
        return _server(args)
    if args.command == "migrate":
        return _migrate(args)
    if args.command == "traffic":
        if args.clear:
            if args.weights or args.shadow:
                args.subparser.error("--clear takes no weights and no --shadow")
            return client.run("traffic", args, body=None)
        if not args.weights:
            args.subparser.error("give VERSION=WEIGHT pairs, or --clear")
        try:
            body = client.traffic_body(args.weights, args.shadow)
        except ValueError as exc:
            args.subparser.error(str(exc))  # exits with 2
        return client.run("traffic", args, body=body)
    if args.command == "bench":
        from ferry.bench.command import run

        return run(args)
    if args.command in CLIENT_COMMANDS:
        if args.command == "push":
            for path in (args.file, args.config):
                if path is not None and not path.is_file():
                    print(f"ferry: {path}: no such file", file=sys.stderr)
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
            "grpc_port": args.grpc_port,
            "ready_despite_failures": args.ready_despite_failures,
            "max_body_bytes": args.max_body_bytes,
            "max_header_bytes": args.max_header_bytes,
            "max_header_fields": args.max_header_fields,
            "header_timeout_s": args.header_timeout,
            "body_timeout_s": args.body_timeout,
            "body_min_rate": args.body_min_rate,
            "idle_timeout_s": args.idle_timeout,
            "max_connections": args.max_connections,
            "json_offload_bytes": args.json_offload_bytes,
            "log_level": args.log_level,
            "log_format": args.log_format,
            "access_log": args.access_log,
            "metrics": args.metrics,
            "auth": args.auth,
            "ssl_certfile": args.ssl_certfile,
            "ssl_keyfile": args.ssl_keyfile,
            "cors_origins": args.cors_origins,
            "audit_window_s": args.audit_window_s,
            "audit_queue_size": args.audit_queue_size,
            "audit_retention_days": args.audit_retention_days,
            "audit_max_rows": args.audit_max_rows,
            "onnx_memory_mb": args.onnx_memory_mb,
            "redis_url": args.redis_url,
            "data_dir": getattr(args, "data_dir", None),
            "migrate": getattr(args, "migrate", None),
            "role": getattr(args, "role", None),
            "database_url": getattr(args, "database_url", None),
            "artifacts_url": getattr(args, "artifacts_url", None),
            "trusted_models": getattr(args, "trusted_models", None),
            "trusted_types": getattr(args, "trusted_types", None),
            "validation_memory_mb": getattr(args, "validation_memory_mb", None),
        }.items()
        if value is not None
    }
    settings = Settings(**overrides)
    from ferry import logs

    logs.configure(settings)
    return settings


def _refused(settings: Settings) -> bool:
    """Settings the server must not start with: says why on stderr."""
    from ferry.errors import ConfigError
    from ferry.server import check_security

    try:
        check_security(settings)
    except ConfigError as exc:
        print(f"ferry: {exc}", file=sys.stderr)
        return True
    return False


def _server(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if _refused(settings):
        return 2
    from ferry.errors import ConfigError
    from ferry.server import serve_registry

    try:
        serve_registry(settings)
    except ConfigError as exc:  # e.g. the schema never came (--no-migrate)
        print(f"ferry: {exc}", file=sys.stderr)
        return 2
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from ferry.registry import connect, default_url, migrate
    from ferry.registry.db import current_revision
    from ferry.settings import Settings

    settings = Settings(**({"data_dir": args.data_dir} if args.data_dir is not None else {}))
    engine = connect(settings.database_url or default_url(settings.data_dir))
    try:
        before = current_revision(engine)
        migrate(engine)
        after = current_revision(engine)
    except Exception as exc:
        print(f"ferry: cannot migrate {engine.url.render_as_string()}: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    change = "already at" if before == after else f"migrated from {before or 'an empty database'} to"
    print(f"{engine.url.render_as_string()}: {change} schema {after}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if _refused(settings):
        return 2
    missing = [p for p in args.paths if not p.exists()]
    for path in missing:
        logging.getLogger("ferry").warning("ignoring %s: no such file or directory", path)
    if len(missing) == len(args.paths):
        print("ferry: none of the given paths exist", file=sys.stderr)
        return 2
    from ferry.server import serve
    from ferry.sources import SUFFIXES, DirectorySource

    paths = [p for p in args.paths if p.exists()]
    source = DirectorySource(paths)
    if not source.discover():
        print(
            f"ferry: no model found in {', '.join(map(str, paths))}: serve a model file "
            f"({', '.join(SUFFIXES)}) or a repository laid out as <repo>/<name>/<version>/model.<ext>",
            file=sys.stderr,
        )
        return 2
    serve(source, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
