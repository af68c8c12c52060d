"""Tables of the OTLP receiver: GenAI events from spans and metric points, and cumulative series.

``otel_events`` holds one row per model call seen in a span, or per increment of a
``gen_ai.client.token.usage`` series. Its key is what OTLP already makes unique, so a retried
export lands exactly once (``INSERT ... ON CONFLICT DO NOTHING``):

* a span: its trace id and span id (hex, 48 characters);
* a metric increment: a hash of the point's series (resource and attributes) and its time;

both behind the UTC hour in hex, so the key's index grows at its end.

Nothing here can hold a prompt, a completion or an attribute from the deny list: the decoder
copies named numeric and identity fields only. Raw events are kept ``otel_retention_days`` and
rolled up hourly into ``usage`` (source ``otel``), like the proxy's.

``otel_series`` remembers the last point of each *cumulative* series (the OpenTelemetry SDKs'
default temporality), so that each export adds only what grew since the previous one.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Column, Index, String
from sqlmodel import Field, SQLModel

from collector.core.sqltypes import MONEY_SCALE, ScaledDecimal, UTCDateTime

#: ``otel_events.state``: not rolled up yet / added to ``usage`` / left out (the other signal counted).
NEW, COUNTED, SUPERSEDED = "new", "counted", "superseded"
SPAN, METRIC = "span", "metric"


def _str(length: int = 255) -> Field:  # type: ignore[valid-type]
    return Field(default="", sa_column=Column(String(length), nullable=False, server_default=""))


def _count() -> Field:  # type: ignore[valid-type]
    return Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))


class OtelEvent(SQLModel, table=True):
    """One GenAI model call (span) or one increment of a token-usage series (metric)."""

    __tablename__ = "otel_events"
    __table_args__ = (
        Index("ix_otel_events_state", "state", "hour"),
        Index("ix_otel_events_match", "resource_fp", "provider", "ts"),
        Index("ix_otel_events_ts", "ts"),
    )

    id: str = Field(sa_column=Column(String(64), primary_key=True))
    signal: str = _str(8)
    #: Span end time, or the metric point's time; ``window_start`` is the span's end again, or the
    #: start of the interval the increment covers (where a span and a metric point can meet).
    ts: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    window_start: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    hour: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    resource_fp: str = _str(32)
    provider: str = _str(64)
    operation: str = _str(64)
    model: str = _str()
    service: str = _str()
    environment: str = _str(64)
    team: str = _str()
    project: str = _str()
    input_tokens: int = _count()
    cache_read_tokens: int = _count()
    cache_write_5m_tokens: int = _count()
    cache_write_1h_tokens: int = _count()
    output_tokens: int = _count()
    reasoning_tokens: int = _count()
    requests: int = _count()
    errors: int = _count()
    response_id: str = _str(128)
    cost: Decimal | None = Field(default=None, sa_column=Column(ScaledDecimal(MONEY_SCALE), nullable=True))
    basis: str = _str(16)
    price_version: str = _str(64)
    state: str = Field(default=NEW, sa_column=Column(String(16), nullable=False, server_default=NEW))
    ingested_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class OtelSeries(SQLModel, table=True):
    """The last point seen of one cumulative ``gen_ai.client.token.usage`` series."""

    __tablename__ = "otel_series"

    key: str = Field(sa_column=Column(String(32), primary_key=True))
    last_time_ns: int = Field(sa_column=Column(BigInteger, nullable=False))
    total: int = _count()
    calls: int = _count()
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


OTEL_EVENTS = OtelEvent.__table__  # type: ignore[attr-defined]
OTEL_SERIES = OtelSeries.__table__  # type: ignore[attr-defined]
