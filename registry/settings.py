"""One typed settings object, built once and passed in.

Every field has a ``MODELKEEP_`` environment name (``MODELKEEP_DATABASE_URL`` ...). The defaults are the
embedded mode: SQLite (WAL) and a local blob folder under ``./modelkeep-data``. Nothing here runs at import
time; callers construct ``Settings()`` (reads the environment) or ``Settings(...)`` (tests).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MODELKEEP_", extra="ignore")

    data_dir: Path = Path("./modelkeep-data")
    database_url: str | None = None
    """SQLAlchemy URL. ``sqlite:///...`` or ``postgresql://...``; default: ``<data_dir>/registry.db``."""

    blob_store_url: str | None = None
    """``file:///path`` or ``s3://bucket/prefix``; default: ``<data_dir>/blobs``."""
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_multipart_threshold: int = 64 * 1024 * 1024

    host: str = "127.0.0.1"
    port: int = 5000
    max_request_body_bytes: int = 32 * 1024 * 1024
    """JSON request bodies above this size get 413."""
    max_upload_bytes: int = 1024**4
    """Streamed artifact/blob uploads above this size get 413."""
    protected_aliases: list[str] = Field(default_factory=lambda: ["production"])
    db_pool_size: int = 10
    create_admin_token: bool = True
    """On start with no tokens at all, create an admin token and print it once."""

    @field_validator("protected_aliases", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip().startswith("["):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'registry.db').resolve()}"

    @property
    def resolved_blob_store_url(self) -> str:
        if self.blob_store_url:
            return self.blob_store_url
        return (self.data_dir / "blobs").resolve().as_uri()

    @property
    def tmp_dir(self) -> Path:
        """Spool folder for uploads in flight (same filesystem as the local blob folder)."""
        return self.data_dir / "tmp"
