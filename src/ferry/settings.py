"""Server settings: flags of ``ferry serve``/``ferry server`` or ``FERRY_*`` environment variables.
Passed down explicitly, never read from a global."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FERRY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    grpc_port: int = Field(
        8001, ge=0, le=65535, description="Port of the gRPC endpoint (Open Inference Protocol); 0: no gRPC."
    )
    max_body_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Larger request bodies get 413 (gRPC messages: RESOURCE_EXHAUSTED)."
    )
    max_tensor_elements: int = Field(64 * 1024 * 1024, ge=1, description="Larger input tensors get 413.")
    json_offload_bytes: int = Field(
        1024 * 1024,
        ge=0,
        description="JSON request bodies (V2, V1) this large or larger are decoded in a worker process, "
        "not on the event loop every request shares; 0: always on the event loop.",
    )
    log_level: str = "info"
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="json: one JSON object per line; console: readable; auto: json unless on a terminal."
    )
    access_log: bool = Field(False, description="Log every request: method, path, status, duration, model.")
    otlp_endpoint: str | None = Field(
        None,
        description="OpenTelemetry collector (OTLP over HTTP), e.g. http://127.0.0.1:4318: trace every inference. "
        "Unset: no tracing, nothing imported.",
    )
    trace_sample_ratio: float = Field(
        1.0, ge=0, le=1, description="Share of requests without a sampled parent that are traced."
    )
    proxy_headers: bool = Field(False, description="Trust X-Forwarded-For/Proto from a proxy in front of Ferry.")
    metrics: bool = Field(True, description="Serve Prometheus metrics on /metrics (FERRY_METRICS=false: off).")
    auth: bool = Field(
        True,
        description="Require API keys (FERRY_AUTH=false or --no-auth: none; allowed only on a loopback address).",
    )
    metrics_public: bool = Field(False, description="Serve /metrics without a key (by default it needs `read`).")
    cors_origins: list[str] = Field(
        default_factory=list,
        description='Browser origins allowed to call the API, as a JSON list: ["https://app.example.com"].',
    )
    ssl_certfile: Path | None = Field(None, description="TLS certificate (PEM); with ssl_keyfile, serve HTTPS.")
    ssl_keyfile: Path | None = Field(None, description="TLS private key (PEM).")
    ready_despite_failures: bool = Field(
        False,
        description="Answer ready once loading has finished even if some models failed to load "
        "(by default a failed model keeps /v2/health/ready at 503).",
    )
    bootstrap_admin_key: SecretStr | None = Field(
        None,
        description="The first admin key of an empty key table (made with `ferry keys generate`), "
        "instead of a new one printed on standard output: for clusters.",
    )
    bootstrap_admin_key_file: Path | None = Field(
        None, description="A file holding the bootstrap admin key (a mounted Kubernetes Secret)."
    )
    graceful_timeout_s: float = Field(30.0, ge=0, description="How long SIGTERM waits for in-flight requests.")
    # The audit trail (docs/security.md, "Audit trail")
    audit_window_s: float = Field(
        60.0,
        ge=0,
        description="Repeats of an attempt that changed nothing (refused, or failed with a 4xx) by one key on "
        "one action within this window are written as one row with their count; 0: a row each.",
    )
    audit_queue_size: int = Field(
        10_000,
        ge=1,
        description="Audit rows waiting for the database; beyond it they are counted (one `dropped` row), "
        "so a request never waits for its audit row.",
    )
    audit_retention_days: float = Field(
        90.0, ge=0, description="Audit rows older than this are deleted (checked hourly); 0: kept for ever."
    )
    audit_max_rows: int = Field(
        1_000_000, ge=0, description="Only the newest this many audit rows are kept (checked hourly); 0: no cap."
    )

    # Connections (docs/security.md, "Connections and request size")
    max_header_bytes: int = Field(
        64 * 1024,
        ge=1024,
        description="Larger request heads (request line and headers) get 431, refused before they are parsed; "
        "also gRPC's metadata limit.",
    )
    max_header_fields: int = Field(100, ge=1, description="Requests with more header fields get 431.")
    header_timeout_s: float = Field(
        10.0, gt=0, description="A request head must arrive whole within this many seconds (else 408 and close)."
    )
    body_timeout_s: float = Field(
        20.0,
        gt=0,
        description="A request body may take this many seconds, plus one second per body_min_rate bytes "
        "received (else 408 and close): slow clients are fine, trickling ones are cut off.",
    )
    body_min_rate: int = Field(
        1024, ge=1, description="Bytes per second a request body must average after body_timeout_s."
    )
    idle_timeout_s: float = Field(
        5.0,
        gt=0,
        description="Idle keep-alive connections are closed after this many seconds; behind a load balancer, "
        "make it longer than the balancer's own idle timeout.",
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="Open HTTP connections or requests in flight beyond which requests get 503 at once "
        "(health probes and /metrics are still answered).",
    )

    redis_url: str | None = Field(
        None,
        description="Redis for what nodes share: API keys' rate limits, and response caches with "
        "`shared: true` (redis://host:6379/0).",
    )

    # ferry server (the registry)
    role: Literal["all", "control", "inference"] = Field(
        "all",
        description="What this node serves: all (one process does everything), control (management "
        "API, web app, keys, audit; no models loaded) or inference (REST and gRPC inference, metadata, "
        "health and metrics; everything else 404).",
    )
    data_dir: Path = Field(Path("ferry-data"), description="Registry database (SQLite) and artifacts.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the registry; default sqlite:///<data_dir>/registry.db."
    )
    artifacts_url: str | None = Field(
        None,
        description="Where artifacts are kept: s3://BUCKET/PREFIX (any S3-compatible store; the endpoint, "
        "region and credentials come from the standard AWS settings: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, "
        "AWS_PROFILE, a role). Unset: <data_dir>/artifacts.",
    )
    migrate: bool = Field(
        True,
        description="Bring the database to this release's schema at start (FERRY_MIGRATE=false or "
        "--no-migrate: wait for `ferry migrate` to do it, as cluster nodes should).",
    )
    schema_wait_s: float = Field(300.0, gt=0, description="With migrate off, how long to wait for the schema.")
    max_upload_bytes: int = Field(4 * 1024**3, ge=1024, description="Larger model uploads get 413.")
    cleanup_grace_s: float = Field(
        600.0,
        ge=0,
        description="At start-up, uploads younger than this are left alone: another server "
        "process on the same registry may still be validating them.",
    )
    trusted_models: list[str] = Field(
        default_factory=list,
        description='Models whose uploads may be pickles/joblib or hold any .skops type, as a JSON list: ["fraud"]. '
        "Loading them can run code: an operator's decision, never an uploader's.",
    )
    trusted_types: list[str] = Field(
        default_factory=list,
        description="Types every model's .skops uploads may hold beyond skops' defaults: [\"numpy.float64\"].",
    )
    onnx_memory_mb: int | None = Field(
        None,
        ge=0,
        description="Memory all ONNX models' tensors may take together (one shared onnxruntime arena): "
        "a request whose model would need more gets 413 instead of exhausting the machine. "
        "None: half the machine's memory; 0: no limit.",
    )
    validation_memory_mb: int = Field(
        2048,
        ge=256,
        description="Memory an upload's validation (load, warm-up) may use, in a child process, "
        "plus 4 times the file's size; beyond it the version fails.",
    )
    validation_cpu_s: int = Field(300, ge=1, description="CPU seconds an upload's validation may use.")
    validation_timeout_s: float = Field(600.0, gt=0, description="How long an upload's validation may take in all.")
    poll_interval_s: float = Field(1.0, gt=0, description="How often to look for registry changes.")
