"""One typed settings object, built once and passed in.

Every field has a ``MODELKEEP_`` environment name (``MODELKEEP_DATABASE_URL`` ...). The defaults are the
embedded mode: SQLite (WAL) and a local blob folder under ``./modelkeep-data``. Nothing here runs at import
time; callers construct ``Settings()`` (reads the environment) or ``Settings(...)`` (tests).
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$"
)


_TOKEN_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


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
    s3_direct_transfers: bool = True
    """Hand clients presigned URLs, so blob bytes go between them and the bucket without passing through
    the registry (which still verifies every digest). Streaming through the server keeps working."""
    s3_public_endpoint_url: str | None = None
    """The S3 endpoint as clients reach it, for presigned URLs; default: ``s3_endpoint_url``."""
    s3_part_bytes: int = Field(default=64 * 1024 * 1024, ge=5 * 1024 * 1024)
    """Smallest part of a presigned multipart upload (the server raises it to stay within 10,000 parts)."""
    s3_single_put_max_bytes: int = Field(default=5 * 1024**3, ge=0, le=5 * 1024**3)
    """Direct uploads up to this size are one PUT that the store checks against the blob's SHA-256 (the
    registry reads no bytes); larger ones are parallel multipart uploads that the registry reads back to
    verify. 0: always multipart (for stores that keep no SHA-256 checksum, or for parallel parts)."""
    s3_presign_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    s3_create_bucket: bool = False
    """Create the bucket of ``blob_store_url`` on start when it does not exist (a fresh compose stack)."""
    migrate_on_start: bool = True
    """``registry serve`` applies migrations before serving. False where a separate job migrates (Kubernetes):
    the server then waits until the schema is at the newest revision, up to ``migrate_wait_seconds``."""
    migrate_wait_seconds: float = Field(default=300.0, ge=0)

    host: str = "127.0.0.1"
    port: int = 5000
    max_request_body_bytes: int = 32 * 1024 * 1024
    """JSON request bodies above this size get 413."""
    max_upload_bytes: int = 1024**4
    """Streamed artifact/blob uploads above this size get 413."""
    # NoDecode: list settings come from the environment as comma-separated text (or a JSON list).
    protected_aliases: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["production"])
    gate_record_role: Literal["writer", "maintainer"] = "writer"
    """Least role that may record a gate run (the evidence gate policies rely on). ``maintainer`` when only a
    trusted evaluation job should produce it; inbound triggers, set up by maintainers, still may."""
    db_pool_size: int = 10
    auth_cache_seconds: float = 2.0
    """How long a verified token is trusted without a lookup (0: check every request). A revocation made
    outside this process (another replica, the CLI on the database) takes effect within this time."""
    create_admin_token: bool = True
    """On start with no tokens at all, create an admin token and print it once."""
    monitor_workers: int = Field(default=1, ge=0)
    """Processes that read and profile monitoring data (production batches, baselines) beside each API process,
    so that work never holds the API's GIL or more cores than this; a burst of batches queues for them. 0
    profiles inside the API process, one batch at a time."""
    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object per log line (time, level, logger, message, request_id, exception)."""
    metrics_public: bool = False
    """Serve ``/metrics`` without a token (where only the scraper can reach the port)."""
    session_secret: SecretStr | None = None
    """Mixed into the web UI's session keys, so that a copy of the database alone cannot mint a session cookie.
    Every replica needs the same value; changing it signs every browser out. Unset: the keys derive from the
    tokens' stored digests only."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """For Modelkeep's own loggers. DEBUG adds, among others, every scheduled housekeeping run that had
    nothing to do."""

    # Webhooks and automations.
    webhook_retry_schedule: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 50400.0, 72000.0, 86400.0]
    )
    """Seconds before each attempt (the first is immediate); about 3 days in all, ±10% jitter."""
    webhook_timeout_seconds: float = 15.0
    webhook_allow_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """What webhooks may reach besides public https: host names, IP addresses and CIDR ranges, comma-separated
    (``127.0.0.1,localhost,10.0.0.0/8``). A host named here may use http and resolve to any address; an address
    inside a range may be reached though it is not public. Cloud metadata addresses (169.254.169.254 ...) stay
    refused unless an entry is that very address."""
    webhook_allow_private: str | None = None
    """Removed (it turned off every SSRF check, metadata addresses included): set, it stops the start with
    a message pointing to ``webhook_allow_hosts``."""
    webhook_lock_seconds: float = 60.0
    """A claimed delivery or job whose worker died is retried after this long."""
    webhook_disable_after_days: float = 5.0
    webhook_rotation_overlap_hours: float = 24.0
    dispatcher_enabled: bool = True
    dispatcher_poll_seconds: float = 0.5
    dispatcher_coalesce_seconds: float = 0.05
    """After a commit wakes the dispatcher, wait this long so a burst of commits is served by one round."""
    dispatcher_concurrency: int = 64
    scheduler_enabled: bool = True
    reap_interval_seconds: float = 5.0
    instance_name: str | None = None
    """Identity of this replica in claims and locks (default: host:pid)."""

    # Storage reclaim and retention (docs/storage.md).
    gc_grace_hours: float = Field(default=24.0, ge=0)
    """Blobs nothing references are deleted once they were stored (or uploaded again) this long ago. Keep it
    longer than any upload takes: a push's blobs are unreferenced until its version is created."""
    gc_interval_seconds: float = Field(default=3600.0, gt=0)
    """How often the scheduled collection (``blobs.collect_garbage``) runs; once per slot across replicas."""
    event_retention_days: float = Field(default=90.0, ge=0)
    """Outbox events older than this are deleted once every consumer's cursor passed them and no delivery or
    unfinished automation job refers to them (0: keep forever)."""
    delivery_retention_days: float = Field(default=30.0, ge=0)
    """Finished webhook deliveries (succeeded, failed, cancelled, with their attempts) and finished automation
    jobs older than this are deleted (0: keep forever). Pending and in-flight ones are always kept."""

    # GitHub: gate results back to commits (rules' github_status / github_comment), GitHub's own webhooks.
    public_url: str | None = None
    """Where people reach this registry (``https://registry.example.com``): links in GitHub statuses and
    comments to the gate run. None: no link."""
    github_api_url: str = "https://api.github.com"
    """GitHub's REST API root; a GitHub Enterprise Server's is ``https://HOST/api/v3``. Tokens are only ever
    sent here: a rule names a token, it cannot name where the token goes."""
    github_tokens: SecretStr | None = None
    """Tokens rules may post with, by name: a JSON object (``{"acme": "ghp_..."}``) or ``name=token`` pairs,
    comma-separated. A rule says ``github_token: acme``; the token itself is never in a rule file. Kept as one
    secret and read where used (:meth:`github_token`), so no error message can echo it."""
    github_webhook_secret: SecretStr | None = None
    """The secret GitHub signs its webhooks with (``X-Hub-Signature-256``). None: ``POST /api/v1/hooks/github``
    answers 404."""
    github_webhook_previous_secret: SecretStr | None = None
    """While rotating: the secret being replaced, still accepted."""
    github_max_wait_seconds: float = 30.0
    """How long one job waits in all for GitHub's rate limits (``Retry-After``) before failing."""

    @field_validator("protected_aliases", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            if value.strip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("webhook_allow_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            if value.strip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("webhook_allow_hosts")
    @classmethod
    def _check_hosts(cls, value: list[str]) -> list[str]:
        checked = []
        for entry in value:
            entry = entry.strip().lower()
            if not entry:
                continue
            try:
                ipaddress.ip_network(entry.strip("[]"), strict=False)
            except ValueError:
                if not _HOST_NAME.match(entry.rstrip(".")) or entry.replace(".", "").isdigit():
                    raise ValueError(
                        f"{entry!r} is neither a host name nor an IP address or CIDR range "
                        "(no scheme, port or path: e.g. 127.0.0.1,localhost,10.0.0.0/8)"
                    ) from None
            checked.append(entry)
        return checked

    @field_validator("webhook_allow_private", mode="before")
    @classmethod
    def _removed(cls, value: object) -> object:
        if value is None:
            return None
        raise ValueError(
            "this setting was removed: it turned off every SSRF check, cloud metadata addresses included. "
            "Name what webhooks may reach in MODELKEEP_WEBHOOK_ALLOW_HOSTS instead "
            "(e.g. MODELKEEP_WEBHOOK_ALLOW_HOSTS=127.0.0.1,localhost,10.0.0.0/8)"
        )

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _split_floats(cls, value: object) -> object:
        if isinstance(value, str):
            if value.strip().startswith("["):
                return json.loads(value)
            return [float(part) for part in value.split(",") if part.strip()]
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
    def instance(self) -> str:
        import os
        import socket

        return self.instance_name or f"{socket.gethostname()}:{os.getpid()}"

    def github_token_names(self) -> list[str]:
        """Names of the configured GitHub tokens (raises ValueError, naming no token, if the setting is malformed)."""
        return sorted(self._github_tokens())

    def github_token(self, name: str) -> str | None:
        """The GitHub token named ``name`` (raises ValueError, naming no token, if the setting is malformed)."""
        return self._github_tokens().get(name)

    def _github_tokens(self) -> dict[str, str]:
        if self.github_tokens is None:
            return {}
        text = self.github_tokens.get_secret_value().strip()
        problem = ValueError("MODELKEEP_GITHUB_TOKENS is neither a JSON object of names to tokens nor name=token pairs")
        if text.startswith("{"):
            try:
                loaded = json.loads(text)
            except ValueError:
                raise problem from None
            if not isinstance(loaded, dict) or not all(isinstance(v, str) for v in loaded.values()):
                raise problem
            found = {str(k): v for k, v in loaded.items()}
        else:
            pairs = [part.strip().partition("=") for part in text.split(",") if part.strip()]
            if any(not sep or not token.strip() for _, sep, token in pairs):
                raise problem
            found = {name.strip(): token.strip() for name, _, token in pairs}
        bad = [name for name in found if not _TOKEN_NAME.match(name)]
        if bad:
            raise ValueError(f"MODELKEEP_GITHUB_TOKENS: {bad[0]!r} is not a name (1-64 letters, digits, '_', '-', '.')")
        return found

    @property
    def github_webhook_secrets(self) -> list[str]:
        return [s.get_secret_value() for s in (self.github_webhook_secret, self.github_webhook_previous_secret) if s]

    @property
    def tmp_dir(self) -> Path:
        """Spool folder for uploads in flight (same filesystem as the local blob folder)."""
        return self.data_dir / "tmp"
