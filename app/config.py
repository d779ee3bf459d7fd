"""One place for the service's settings (environment variables with the ``DEALCOACH_`` prefix)."""

from __future__ import annotations

import logging
import sys
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
#: SQLAlchemy drivers the service supports (``postgresql`` means psycopg 3 here).
_DATABASE_DRIVERS = frozenset({"sqlite", "postgresql", "postgresql+psycopg"})


class Settings(BaseSettings):
    """Settings read from the environment (and an optional ``.env`` file).

    Invalid values stop start-up with a message that names the variable.
    """

    model_config = SettingsConfigDict(
        env_prefix="DEALCOACH_", env_file=".env", extra="ignore", frozen=True
    )

    data_dir: Path = Field(
        default=Path("./data"), description="Folder for the SQLite files and other local state."
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. Default: a SQLite file dealcoach.db in the data directory.",
    )
    log_level: LogLevel = "INFO"
    log_format: Literal["json", "text"] = Field(
        default="json",
        description="json: one JSON object per line with the request id (production); "
        "text: plain lines for a terminal.",
    )
    default_playbook: str = Field(
        default="meddpicc", description="Built-in playbook name or a path to a playbook YAML file."
    )
    sqlite_busy_timeout_ms: int = Field(default=5000, ge=0, le=600_000)

    # --- the service (review pipeline, API, queue) ---------------------------------------
    secret_keys: str | None = Field(
        default=None,
        description="Comma-separated Fernet keys, newest first, that encrypt secrets at rest. "
        "Required outside sandbox mode.",
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="The external base URL of the service (webhook URLs, OAuth callbacks). "
        "When set, HubSpot signatures are checked over this URL + the path and query as "
        "received (set it behind a proxy); unset, over the URL of the request itself.",
    )
    sandbox: bool = Field(
        default=False,
        # DEALCOACH_DEV_MODE is the name to use: "sandbox" reads, to a Salesforce admin,
        # as a Salesforce sandbox *org*, which this is not. DEALCOACH_SANDBOX still works
        # (deprecated); the attribute keeps its name inside the code.
        validation_alias=AliasChoices("DEALCOACH_DEV_MODE", "DEALCOACH_SANDBOX", "sandbox"),
        description="Development mode (DEALCOACH_DEV_MODE): allow localhost and private CRM "
        "URLs (the bundled CRM emulators) and a development secret key. Demo and tests only.",
    )
    queue_url: str | None = Field(
        default=None,
        description="Task queue backend: default a SQLite file queue.db in the data directory; "
        "redis://... or postgresql://... to scale out.",
    )
    worker_threads: int = Field(default=2, ge=1, le=64, description="Worker threads.")
    sync_interval_minutes: int = Field(default=15, ge=1, le=1440)
    webhook_coalesce_seconds: float = Field(
        default=5.0, ge=0, le=300, description="Events for one deal within this window: one review."
    )
    write_batch_size: int = Field(default=100, ge=1, le=200)
    daily_quota_share: float = Field(
        default=0.5, gt=0, le=1, description="Share of a CRM's daily API allowance syncs may use."
    )
    crm_ca_bundle: Path | None = Field(
        default=None,
        description="A PEM file of the CA certificates trusted for CRM API calls instead of "
        "the system's: a CRM emulator's in sandbox mode, or a TLS-inspecting proxy's.",
    )
    salesforce_client_id: str | None = None
    salesforce_client_secret: str | None = None
    salesforce_login_url: str = "https://login.salesforce.com"
    hubspot_client_id: str | None = None
    hubspot_client_secret: str | None = Field(
        default=None,
        repr=False,
        description="The HubSpot app's client secret: OAuth, and the signatures of HubSpot "
        "webhooks and app-card requests of connections without their own webhook_secret.",
    )
    hubspot_oauth_url: str = Field(
        default="https://api.hubapi.com",
        description="Base URL of HubSpot's OAuth token API (an emulator's URL in tests).",
    )
    hubspot_authorize_url: str = Field(
        default="https://app.hubspot.com/oauth/authorize",
        description="HubSpot's OAuth authorisation page, where the admin approves the app.",
    )

    # --- the HTTP server and its limits (docs/deploy.md, "HTTP limits") ---------------------
    max_api_body_bytes: int = Field(
        default=512 * 1024, ge=1024, le=64 * 1024 * 1024, description="Largest admin API body."
    )
    max_webhook_body_bytes: int = Field(
        default=2 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="Largest webhook body."
    )
    max_other_body_bytes: int = Field(
        default=64 * 1024, ge=0, le=64 * 1024 * 1024, description="Largest body elsewhere."
    )
    http_read_timeout_seconds: float = Field(
        default=30.0, gt=0, le=600, description="Longest wait for the next chunk of a body."
    )
    http_max_connections: int = Field(
        default=500, ge=1, le=100_000, description="Concurrent connections; 503 beyond."
    )
    http_backlog: int = Field(default=256, ge=1, le=65_535, description="Listen backlog.")
    http_keepalive_seconds: int = Field(
        default=5, ge=1, le=600, description="Idle keep-alive connections close after this."
    )
    metrics_token: str | None = Field(
        default=None,
        description="When set, GET /metrics needs Authorization: Bearer <this token>.",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            drivername = make_url(value).drivername
        except (ArgumentError, ValueError):
            raise ValueError("not a database URL (sqlite:///PATH or postgresql://...)") from None
        if drivername not in _DATABASE_DRIVERS:
            raise ValueError(
                f"driver {drivername!r} is not supported: use sqlite:///PATH, "
                "postgresql://... or postgresql+psycopg://..."
            )
        return value

    @field_validator("default_playbook")
    @classmethod
    def _check_default_playbook(cls, value: str) -> str:
        from app.coaching.playbook import BUILT_IN_PLAYBOOKS  # lazy: settings load first

        if value.lower() in BUILT_IN_PLAYBOOKS or Path(value).is_file():
            return value
        raise ValueError(
            f"{value!r} is neither a built-in playbook ({', '.join(BUILT_IN_PLAYBOOKS)}) "
            "nor an existing playbook file"
        )

    @field_validator("queue_url")
    @classmethod
    def _check_queue_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("sqlite", "redis://", "rediss://", "postgresql://")):
            raise ValueError("must be a sqlite:///, redis:// or postgresql:// URL")
        return value

    @field_validator(
        "public_url", "salesforce_login_url", "hubspot_oauth_url", "hubspot_authorize_url"
    )
    @classmethod
    def _check_public_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @property
    def explicit_public_url(self) -> str | None:
        """``DEALCOACH_PUBLIC_URL`` when it was set (behind a proxy, what the CRM calls),
        else None: signatures over the full URL then use the URL as requested."""
        return self.public_url if "public_url" in self.model_fields_set else None

    @property
    def resolved_queue_url(self) -> str:
        """The queue URL in use: the setting, or a SQLite file queue.db in the data directory."""
        return self.queue_url or f"sqlite:///{(self.data_dir / 'queue.db').resolve()}"

    @property
    def resolved_database_url(self) -> str:
        """The database URL in use: the setting, or a SQLite file in the data directory."""
        if self.database_url:
            url = self.database_url
            if url.startswith("postgresql://"):
                # psycopg 3 is the driver we ship.
                url = "postgresql+psycopg://" + url[len("postgresql://") :]
            return url
        return f"sqlite:///{(self.data_dir / 'dealcoach.db').resolve()}"

    @property
    def safe_database_url(self) -> str:
        """The database URL with any password masked, fit for logs and output."""
        from sqlalchemy.engine import make_url

        return make_url(self.resolved_database_url).render_as_string(hide_password=True)


class SettingsError(RuntimeError):
    """Settings could not be read; the message names each offending variable."""


def load_settings() -> Settings:
    """Read the settings, turning validation errors into one readable message."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = "_".join(str(part) for part in error["loc"]).upper()
            name = name if name.startswith("DEALCOACH_") else "DEALCOACH_" + name
            problems.append(f"{name}: {error['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
    except (OSError, UnicodeDecodeError) as exc:  # the .env file: unreadable or not UTF-8
        reason = exc.reason if isinstance(exc, UnicodeDecodeError) else exc.strerror or str(exc)
        raise SettingsError(
            f"cannot read the settings file .env in {Path.cwd()}: {reason}; "
            "fix or remove it (it must be UTF-8 text, one NAME=value per line)"
        ) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return load_settings()


def exit_on_invalid_settings() -> Settings:
    """For entry points: read the settings or exit with status 2 and a one-line message."""
    try:
        return get_settings()
    except SettingsError as exc:
        print(f"dealcoach: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def configure_logging(settings: Settings) -> None:
    """For entry points (``serve``, ``worker``): every log line (uvicorn's access log
    included) on stderr in one format at ``log_level``: JSON lines with the request id
    (``log_format=json``, the default) or plain text; URL secrets redacted either way."""
    from app.logs import (
        RateLimitRepeats,
        RequestIdFilter,
        configure_json_logging,
        install_redaction,
    )

    if settings.log_format == "json":
        configure_json_logging(settings.log_level)
    else:
        root = logging.getLogger()
        for existing in list(root.handlers):
            root.removeHandler(existing)
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s")
        )
        handler.addFilter(RequestIdFilter())
        handler.addFilter(RateLimitRepeats())
        root.addHandler(handler)
        root.setLevel(settings.log_level)
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True
    install_redaction()
