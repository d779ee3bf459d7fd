"""API shapes of connections. Secrets go in, never out."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.connections.models import ConnectionStatus, Provider

WritebackTargetName = Literal["note", "task", "summary_fields"]
_CUSTOM_FIELD = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,80}__c")


class ConnectionSettings(BaseModel):
    """What the service does on this connection."""

    model_config = ConfigDict(extra="forbid")

    playbook: str = Field("meddpicc", min_length=1, max_length=200)
    writeback_targets: list[WritebackTargetName] = Field(default=["note"], max_length=3)
    writeback_mode: Literal["auto", "off"] = "auto"
    note_audience: Literal["manager", "rep", "both"] = Field(
        "manager",
        description="Whose questions the note (and the task, and the summary fields' prompts) "
        "carries: the manager's questions for the deal review, the rep's self-review, or "
        "both in one note (the manager's first).",
    )
    sync_interval_minutes: int | None = Field(None, ge=1, le=1440)
    page_size: int | None = Field(None, ge=1, le=1000)
    custom_fields: list[str] = Field(
        default_factory=list,
        max_length=200,
        description="Salesforce: extra custom fields (*__c) to read for the playbooks, "
        "beyond those the playbooks name.",
    )
    bulk_threshold: int | None = Field(
        None,
        ge=0,
        le=1_000_000_000,
        description="Salesforce: a first sync of more opportunities than this reads them "
        "with Bulk API 2.0 (default 5000).",
    )

    @field_validator("writeback_targets")
    @classmethod
    def _distinct_targets(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each write-back target once")
        return value

    @field_validator("custom_fields")
    @classmethod
    def _custom_field_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _CUSTOM_FIELD.fullmatch(name):
                raise ValueError(f"not a custom field name (Name__c): {name[:100]!r}")
        return value


class ConnectionCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "provider": "hubspot",
                    "name": "Acme HubSpot",
                    "external_account_id": "4412345",
                    "instance_url": "https://api.hubapi.com",
                    "credentials": {"access_token": "pat-na1-..."},
                    "webhook_secret": "the app's client secret",
                    "settings": {"playbook": "meddpicc", "writeback_targets": ["note"]},
                }
            ]
        },
    )

    provider: Provider
    name: str = Field(min_length=1, max_length=200)
    external_account_id: str = Field(min_length=1, max_length=255)
    instance_url: str | None = Field(None, max_length=500)
    credentials: dict[str, str] = Field(
        default_factory=dict, description="Stored encrypted; never returned."
    )
    webhook_secret: str | None = Field(
        None, max_length=500, description="Stored encrypted; never returned."
    )
    settings: ConnectionSettings = Field(default_factory=ConnectionSettings)


class ConnectionUpdate(BaseModel):
    """Fields an admin may change. Secrets and status have their own endpoints."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    instance_url: str | None = Field(None, max_length=500)
    settings: ConnectionSettings | None = None


class CredentialsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    credentials: dict[str, str] | None = None
    webhook_secret: str | None = Field(None, max_length=500)


class ConnectionOut(BaseModel):
    id: str
    provider: Provider
    name: str
    external_account_id: str
    instance_url: str | None
    status: ConnectionStatus
    last_error: str | None
    settings: dict[str, object]
    has_credentials: bool
    has_webhook_secret: bool
    webhook_urls: dict[str, str]
    secrets_error: str | None = Field(
        None,
        description="Set when the stored secrets no longer decrypt with DEALCOACH_SECRET_KEYS "
        "(a key was removed): the connection's work and webhooks stop until an admin "
        "re-enters its credentials and webhook secret.",
    )
    last_synced_at: datetime | None
    created_at: datetime
    updated_at: datetime
