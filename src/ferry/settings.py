"""Server settings: flags of ``ferry serve`` or ``FERRY_*`` environment variables.
Passed down explicitly, never read from a global."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FERRY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Larger request bodies get 413.")
    max_tensor_elements: int = Field(64 * 1024 * 1024, ge=1, description="Larger input tensors get 413.")
    log_level: str = "info"
    access_log: bool = False
    proxy_headers: bool = Field(False, description="Trust X-Forwarded-For/Proto from a proxy in front of Ferry.")
    graceful_timeout_s: float = Field(30.0, ge=0, description="How long SIGTERM waits for in-flight requests.")
