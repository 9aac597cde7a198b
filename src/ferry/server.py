"""Running the app under uvicorn. uvicorn's own SIGTERM handling is what we want:
stop accepting, finish in-flight requests (up to the graceful timeout), run the
lifespan shutdown that drains the batchers; only its exit status is changed (to 0)."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

from ferry.errors import ConfigError
from ferry.http.app import create_app
from ferry.http.connection import ConnectionLimits, limited_protocol
from ferry.manager import ModelManager
from ferry.security.auth import Authenticator
from ferry.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from ferry.artifacts import ArtifactStore
    from ferry.grpc.server import GrpcServer
    from ferry.registry.keys import KeyStore
    from ferry.registry_source import RegistrySource
    from ferry.security.keys import NewSecret
    from ferry.sources import DirectorySource


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, grpc: GrpcServer | None = None) -> None:
        super().__init__(config)
        self.grpc = grpc
        self.failed = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.grpc is None or self.should_exit:
            return
        try:
            await self.grpc.start()
        except Exception as exc:
            logging.getLogger("ferry").error(
                "cannot serve gRPC on %s: %s (--grpc-port PORT picks another port, 0 turns gRPC off)",
                self.grpc.address,
                exc,
            )
            self.failed = self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal after its graceful shutdown, so the process dies
        # "killed by SIGTERM". A requested stop that drained cleanly is a success: exit 0.
        captured = getattr(self, "_captured_signals", None)
        if isinstance(captured, list) and sig in captured:
            captured.remove(sig)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # gRPC stops taking calls now, with HTTP; the lifespan waits for its calls in
        # flight before the models drain.
        if self.grpc is not None:
            self.grpc.stop()
        # Under TLS, closing an idle keep-alive connection waits for the client's TLS
        # close_notify (asyncio's ssl_shutdown_timeout, 30 s), which pooled clients never
        # send: the stop would take the whole graceful timeout. Idle connections carry no
        # request, so they are dropped at once; busy ones still finish their answer.
        if self.config.is_ssl:
            for connection in list(self.server_state.connections):
                cycle = getattr(connection, "cycle", None)
                transport = getattr(connection, "transport", None)
                if transport is not None and (cycle is None or cycle.response_complete):
                    transport.abort()
        await super().shutdown(sockets)


def serve(paths: list[Path] | DirectorySource, settings: Settings) -> None:
    """``ferry serve``: the models at ``paths``, held in memory. API keys and the audit
    trail live in the database of the data directory (opened only when keys are on)."""
    auth = authenticator(settings, lambda: open_keys(settings)) if settings.auth else None
    run(ModelManager(paths), settings, auth)


def open_keys(settings: Settings) -> KeyStore:
    from ferry.registry.keys import KeyStore

    return KeyStore(open_database(settings))


def serve_registry(settings: Settings) -> None:
    """``ferry server``: every model in the registry, with the management API."""
    from ferry.registry.keys import KeyStore

    # The store first: a missing bucket should stop the start at once, not after the
    # wait for the database's schema.
    artifacts = open_artifact_store(settings)
    engine = open_database(settings)
    source = open_registry(settings, engine, artifacts)
    store = KeyStore(engine)
    auth = authenticator(settings, lambda: store) if settings.auth else None
    if settings.role == "control" and settings.grpc_port:
        logging.getLogger("ferry").info("a control node serves no models: no gRPC endpoint")
        settings = settings.model_copy(update={"grpc_port": 0})
    run(ModelManager([], source, serves=settings.role != "control"), settings, auth, audit=store)


def open_database(settings: Settings) -> Engine:
    """Connect to the registry database and migrate it to this release's schema, or, with
    migrate off (cluster nodes), wait until ``ferry migrate`` has."""
    from ferry.registry import connect, default_url, migrate
    from ferry.registry.db import SchemaNotReady, wait_for_schema

    engine = connect(settings.database_url or default_url(settings.data_dir))
    if settings.migrate:
        migrate(engine)
        return engine
    try:
        wait_for_schema(engine, settings.schema_wait_s, log=logging.getLogger("ferry").warning)
    except SchemaNotReady as exc:
        engine.dispose()
        raise ConfigError(str(exc)) from None
    return engine


def open_artifact_store(settings: Settings) -> ArtifactStore:
    """``<data dir>/artifacts``, or the S3 bucket ``artifacts_url`` names, checked with a
    HeadBucket: ConfigError (exit 2) when it is missing, unreachable or refused."""
    from ferry.artifacts import LocalArtifactStore

    if not settings.artifacts_url:
        return LocalArtifactStore(settings.data_dir / "artifacts")
    if not settings.artifacts_url.startswith("s3://"):
        raise ConfigError(
            f"artifacts_url must look like s3://BUCKET or s3://BUCKET/PREFIX, not {settings.artifacts_url!r}"
        )
    try:
        from ferry.artifacts_s3 import S3ArtifactStore
    except ImportError as exc:
        raise ConfigError(
            f"--artifacts-url {settings.artifacts_url} needs boto3 ({exc}): pip install 'ferry-serve[s3]'"
        ) from None
    # Uploads are hashed on local disk before they go to the bucket.
    store = S3ArtifactStore(settings.artifacts_url, staging_dir=settings.data_dir / "staging")
    store.check()
    logging.getLogger("ferry").info("artifacts in %s", store.url)
    return store


def open_registry(settings: Settings, engine: Engine, store: ArtifactStore) -> RegistrySource:
    """The registry, after repairing what a killed process left behind (sparing uploads
    younger than the grace period: another process may be validating them)."""
    from ferry.registry import Registry, cleanup
    from ferry.registry_source import RegistrySource
    from ferry.sandbox import Limits
    from ferry.trust import TrustPolicy

    data_dir = settings.data_dir
    registry = Registry.from_engine(engine)
    cleanup(registry, store, older_than_s=settings.cleanup_grace_s)
    logging.getLogger("ferry").info("registry %s, data in %s", engine.url.render_as_string(), data_dir.resolve())
    trust = TrustPolicy.of(settings.trusted_models, settings.trusted_types)
    if trust.describe():
        logging.getLogger("ferry").warning("trusting code in uploads: %s", trust.describe())
    limits = Limits(settings.validation_memory_mb * 2**20, settings.validation_cpu_s, settings.validation_timeout_s)
    source = RegistrySource(registry, store, data_dir, settings.poll_interval_s, trust, limits)
    if pruned := source.prune(older_than_s=settings.cleanup_grace_s):
        logging.getLogger("ferry").info("removed the laid-out files of %d versions no longer served", len(pruned))
    return source


def authenticator(settings: Settings, open_store: Callable[[], KeyStore]) -> Authenticator:
    shared_limits = None
    if settings.redis_url:
        import redis.asyncio

        from ferry.security.ratelimit import SharedRateLimiter

        # Connects on first use, on the serving event loop.
        shared_limits = SharedRateLimiter(redis.asyncio.from_url(settings.redis_url))
    return Authenticator(
        open_store,
        settings.poll_interval_s,
        first_key=lambda key: announce_first_key(key, settings),
        keys_exist=lambda: announce_sign_in(settings),
        bootstrap=bootstrap_key(settings),
        shared_limits=shared_limits,
    )


def announce_first_key(key: str, settings: Settings) -> None:
    """Shown once, on standard output rather than in the log: a log line may be shipped
    to places a secret should not go."""
    url = base_url(settings)
    print(
        f"""
  Ferry made the first admin key of this data directory. It is shown this once:

      {key}

  Web app:  {url}/login#key={key}
  CLI:      export FERRY_API_KEY={key}
  Make keys with fewer rights for clients: ferry keys create --name NAME --scopes infer
""",
        flush=True,
    )


def announce_sign_in(settings: Settings) -> None:
    """Later starts: where to sign in, and the way back in when every admin key is lost."""
    url = base_url(settings)
    print(
        f"""
  Web app:  {url}/  (sign in with an API key of this data directory)
  Lost every admin key?  ferry keys --data-dir {settings.data_dir} create --name rescue --scopes admin
""",
        flush=True,
    )


def base_url(settings: Settings) -> str:
    scheme = "https" if settings.ssl_certfile else "http"
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{settings.port}"


def check_security(settings: Settings) -> None:
    """ConfigError for settings the server must not start with. No keys is a choice for a
    laptop, not for a network: it is refused anywhere but loopback."""
    if (settings.ssl_certfile is None) != (settings.ssl_keyfile is None):
        raise ConfigError("TLS needs both --ssl-certfile and --ssl-keyfile")
    for path in (settings.ssl_certfile, settings.ssl_keyfile):
        if path is not None and not path.is_file():
            raise ConfigError(f"{path}: no such file")
    if not settings.auth and not is_loopback(settings.host):
        raise ConfigError(
            f"refusing to run without API keys on {settings.host}: anyone who can reach it could "
            "deploy models. Bind to 127.0.0.1 (--host 127.0.0.1) or drop --no-auth."
        )
    bootstrap_key(settings)


def bootstrap_key(settings: Settings) -> NewSecret | None:
    """The operator's first admin key, from FERRY_BOOTSTRAP_ADMIN_KEY or the file
    FERRY_BOOTSTRAP_ADMIN_KEY_FILE names (a mounted Kubernetes Secret); ConfigError when
    it is not a Ferry key."""
    from ferry.security.keys import given_secret

    if settings.bootstrap_admin_key is not None and settings.bootstrap_admin_key_file is not None:
        raise ConfigError("set FERRY_BOOTSTRAP_ADMIN_KEY or FERRY_BOOTSTRAP_ADMIN_KEY_FILE, not both")
    if settings.bootstrap_admin_key_file is not None:
        try:
            text = settings.bootstrap_admin_key_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"FERRY_BOOTSTRAP_ADMIN_KEY_FILE: cannot read it: {exc}") from None
    elif settings.bootstrap_admin_key is not None:
        text = settings.bootstrap_admin_key.get_secret_value()
    else:
        return None
    try:
        return given_secret(text)
    except ValueError as exc:
        raise ConfigError(f"the bootstrap admin key is {exc}") from None


def limit_onnx_memory(settings: Settings) -> None:
    """Before any model loads: the tensors an ONNX graph makes can depend on its inputs'
    values (ConstantOfShape), so a small request may ask for any amount of memory. One
    capped arena for every ONNX model turns that into a 413, not a dead server."""
    megabytes = settings.onnx_memory_mb
    if megabytes is None:
        megabytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2 // 2**20
    if megabytes == 0:
        return
    try:
        from ferry.runtimes import onnx
    except ImportError:  # onnxruntime is optional
        return
    onnx.limit_memory(megabytes * 2**20)
    logging.getLogger("ferry").info("ONNX models may use %d MB of memory for tensors", megabytes)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(models: ModelManager, settings: Settings, auth: Authenticator | None, audit: KeyStore | None = None) -> None:
    limit_onnx_memory(settings)
    app = create_app(settings, models, auth, audit)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # ferry.logs has set up logging, and ferry.http.access writes the access log.
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=max(1, round(settings.graceful_timeout_s)),
        server_header=False,
        # X-Forwarded-For is trusted only when asked for: from anyone else it is a lie
        # away, and the middleware costs time on every request.
        proxy_headers=settings.proxy_headers,
        ssl_certfile=settings.ssl_certfile,
        ssl_keyfile=settings.ssl_keyfile,
        # httptools with Ferry's limits on heads, slow clients and connections
        # (docs/security.md); its cap replaces uvicorn's limit_concurrency.
        http=limited_protocol(ConnectionLimits.of(settings)),
        # uvicorn hands it to call_later: fractions of a second work despite its "int".
        timeout_keep_alive=settings.idle_timeout_s,  # type: ignore[arg-type]
    )
    grpc = None
    if settings.grpc_port:
        from ferry.grpc.server import GrpcServer

        api = app.api
        grpc = GrpcServer(settings, api.state.dataplane, auth, api.state.tracing, api.state.audit_writer)
        api.state.before_drain.append(grpc.stop)
    logging.getLogger("ferry").info("serving on %s", base_url(settings))
    server = _Server(config, grpc)
    server.run()
    if server.failed:
        sys.exit(1)
