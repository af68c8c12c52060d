"""Tables of the API sync: ``connections``, ``sync_state`` and ``sync_runs`` (migration 0002).

* ``connections`` — one registered admin key (or multi-part cloud credential) per row, encrypted
  (:mod:`collector.sync.vault`), with the masked hint shown in lists, the account the rows are
  filed under, plain settings (``options``, migration 0013), the provider's last-reported
  account levels (``facts``: a prepaid balance), and health fields.
* ``sync_state`` — the high-water mark per (connection, endpoint): every bucket before it is
  complete and stored. It is written in the same transaction as the rows it covers.
* ``sync_runs`` — one row per (sync, endpoint): window, pages, rows, duration, status, error,
  for the CLI and the dashboard's freshness page. Kept when a connection is removed.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Column, Float, Integer, String, Text, UniqueConstraint, false
from sqlmodel import Field, SQLModel

from collector.core.sqltypes import UTCDateTime


def _str(length: int = 255) -> Field:  # type: ignore[valid-type]
    return Field(default="", sa_column=Column(String(length), nullable=False, server_default=""))


def _when(nullable: bool = True) -> Field:  # type: ignore[valid-type]
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable))


class Connection(SQLModel, table=True):
    """A provider admin key registered once; the plaintext key is never stored."""

    __tablename__ = "connections"
    __table_args__ = (UniqueConstraint("label", name="uq_connections_label"),)

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    provider: str = _str(64)
    label: str = _str()
    key_encrypted: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    key_hint: str = _str(64)
    base_url: str = _str(512)
    account: str = _str()
    active: bool = Field(default=True, sa_column=Column(Boolean, nullable=False, server_default=false()))
    #: ``untested`` | ``ok`` | ``failing`` (last sync had errors) | ``auth_failed`` (job paused).
    status: str = _str(32)
    last_error: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    created_at: datetime | None = _when(nullable=False)
    last_tested_at: datetime | None = _when()
    last_synced_at: datetime | None = _when()
    #: Non-secret settings as a JSON object (scope, table, region ...); secrets are in the vault.
    options: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    #: What the provider last reported that is not usage (balance ...), as a JSON object.
    facts: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))

    @property
    def option_values(self) -> dict[str, str]:
        """The plain settings as a dict (empty when none)."""
        return _json_object(self.options)

    @property
    def fact_values(self) -> dict[str, str]:
        """The provider-reported levels as a dict (empty when none)."""
        return _json_object(self.facts)

    @property
    def paused(self) -> bool:
        """An auth failure pauses scheduled syncs until the key is replaced or re-tested."""
        return self.status == "auth_failed"


def _json_object(text: str) -> dict[str, str]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


class SyncState(SQLModel, table=True):
    """High-water mark per (connection, endpoint)."""

    __tablename__ = "sync_state"

    connection_id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    endpoint: str = Field(sa_column=Column(String(64), primary_key=True))
    high_water: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class SyncRun(SQLModel, table=True):
    """One endpoint's part of one sync: what was asked, what came back, how it ended."""

    __tablename__ = "sync_runs"

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    connection_id: int = Field(sa_column=Column(Integer, nullable=False, index=True))
    provider: str = _str(64)
    endpoint: str = _str(64)
    window_start: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    window_end: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    started_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    finished_at: datetime | None = _when()
    #: Progress of a back-fill: the end of the last stored page's complete buckets.
    through: datetime | None = _when()
    pages: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    rows: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    duration_seconds: float = Field(default=0.0, sa_column=Column(Float, nullable=False, server_default="0"))
    #: ``running`` | ``ok`` | ``failed`` | ``abandoned`` (its process died; found by the next run) |
    #: ``skipped`` (another process held the connection's lock; endpoint ``''``).
    status: str = _str(16)
    error: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    runner: str = _str(128)


__all__ = ["Connection", "SyncRun", "SyncState"]
