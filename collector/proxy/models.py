"""Tables of the proxy sidecar: raw per-request events, monitor tokens and refusals.

``proxy_events`` holds one row per forwarded call, keyed by the id the proxy minted *before*
forwarding (a UUIDv7: time-ordered like a ULID), so a write that is retried, or replayed from the
spool after a database outage, lands exactly once (code-anchors §11.11). The provider's response
id is an attribute, never the key. Raw events are kept ``proxy_retention_days`` and rolled up
hourly into ``usage`` (source ``proxy``), so dashboards never scan them (market-anchors §12.7).

Nothing here can hold a prompt, a completion or an API key: the caller's key is reduced to a
salted HMAC fingerprint before an event exists.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Boolean, Column, Float, Index, Integer, String, false
from sqlmodel import Field, SQLModel

from collector.core.sqltypes import MONEY_SCALE, ScaledDecimal, UTCDateTime


def _str(length: int = 255) -> Field:  # type: ignore[valid-type]
    return Field(default="", sa_column=Column(String(length), nullable=False, server_default=""))


def _count() -> Field:  # type: ignore[valid-type]
    return Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))


class ProxyEvent(SQLModel, table=True):
    """One forwarded request: what it used, how long it took, who sent it. No content, no key."""

    __tablename__ = "proxy_events"
    __table_args__ = (
        Index("ix_proxy_events_ts", "ts"),
        Index("ix_proxy_events_rollup", "rolled_up", "hour"),
    )

    id: str = Field(sa_column=Column(String(36), primary_key=True))
    ts: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    hour: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    provider: str = _str(64)
    upstream: str = _str(64)
    endpoint: str = _str(64)
    method: str = _str(8)
    model: str = _str()
    status: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    stream: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    partial: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    usage_known: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    #: The caller disconnected before the upstream finished; what the upstream returned is recorded.
    client_gone: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    error: str = _str(64)
    input_tokens: int = _count()
    cache_read_tokens: int = _count()
    cache_write_5m_tokens: int = _count()
    cache_write_1h_tokens: int = _count()
    output_tokens: int = _count()
    reasoning_tokens: int = _count()
    latency_ms: float = Field(default=0.0, sa_column=Column(Float, nullable=False, server_default="0"))
    ttfb_ms: float = Field(default=0.0, sa_column=Column(Float, nullable=False, server_default="0"))
    team: str = _str()
    project: str = _str()
    token_id: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    api_key_fp: str = _str(64)
    service_tier: str = _str(64)
    response_id: str = _str(128)
    cost: Decimal | None = Field(default=None, sa_column=Column(ScaledDecimal(MONEY_SCALE), nullable=True))
    basis: str = _str(16)
    price_version: str = _str(64)
    rolled_up: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    ingested_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class MonitorToken(SQLModel, table=True):
    """An attribution token (``X-Monitor-Token``): only its SHA-256 is stored; revocable."""

    __tablename__ = "monitor_tokens"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    hint: str = _str(32)
    team: str = _str()
    project: str = _str()
    label: str = _str()
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    #: Requests per minute through the proxy; 0 = no limit (limits are opt-in).
    rpm_limit: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    #: Input + output tokens per minute; 0 = no limit.
    tpm_limit: int = _count()


class ProxyRefusal(SQLModel, table=True):
    """A call the proxy refused (rate limit or budget cap): an event, never a usage row."""

    __tablename__ = "proxy_refusals"
    __table_args__ = (Index("ix_proxy_refusals_ts", "ts"),)

    id: int | None = Field(default=None, primary_key=True)
    ts: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    #: ``rate_requests``, ``rate_tokens`` or ``budget``.
    kind: str = Field(sa_column=Column(String(32), nullable=False))
    upstream: str = _str(64)
    token_id: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    team: str = _str()
    project: str = _str()
    budget_id: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    budget_name: str = _str()


PROXY_EVENTS = ProxyEvent.__table__  # type: ignore[attr-defined]
MONITOR_TOKENS = MonitorToken.__table__  # type: ignore[attr-defined]
PROXY_REFUSALS = ProxyRefusal.__table__  # type: ignore[attr-defined]
