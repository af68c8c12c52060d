"""Fixtures: the OTLP receiver served by a real uvicorn on 127.0.0.1, and OTLP bodies built with opentelemetry-proto."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from sqlalchemy import text
from sqlalchemy.engine import Engine

from collector.core.settings import Settings, get_settings
from collector.otel.receiver import OtelReceiver
from tests.fakes.upstream import ServerThread

PROMPT_MARKER = "PROMPT-MARKER-0tel"


@dataclass
class Receiver:
    receiver: OtelReceiver
    server: ServerThread

    @property
    def url(self) -> str:
        return self.server.url


def start_receiver(engine: Engine | None, settings: Settings | None = None, **kwargs: Any) -> Receiver:
    receiver = OtelReceiver(settings or get_settings(), engine=engine, **kwargs)
    return Receiver(receiver, ServerThread(receiver.app()).start())


@pytest.fixture
def receiver(engine) -> Iterator[Receiver]:  # type: ignore[no-untyped-def]
    r = start_receiver(engine)
    yield r
    r.server.stop()


def attrs(**values: Any) -> list[KeyValue]:
    """KeyValues from keyword arguments (``__`` stands for ``.``)."""
    out = []
    for key, value in values.items():
        name = key.replace("__", ".")
        if isinstance(value, bool):
            v = AnyValue(bool_value=value)
        elif isinstance(value, int):
            v = AnyValue(int_value=value)
        elif isinstance(value, float):
            v = AnyValue(double_value=value)
        else:
            v = AnyValue(string_value=str(value))
        out.append(KeyValue(key=name, value=v))
    return out


def ns(ts: datetime) -> int:
    return int(ts.timestamp() * 1e9)


def span(
    n: int,
    end: datetime,
    *,
    trace: int = 1,
    model: str = "gpt-4o-mini",
    input_tokens: int | None = 100,
    output_tokens: int | None = 20,
    **extra: Any,
) -> trace_pb2.Span:
    values: dict[str, Any] = {
        "gen_ai__provider__name": "openai",
        "gen_ai__operation__name": "chat",
        "gen_ai__request__model": model,
        "gen_ai__input__messages": f"[{{'content': '{PROMPT_MARKER}'}}]",
    }
    if input_tokens is not None:
        values["gen_ai__usage__input_tokens"] = input_tokens
    if output_tokens is not None:
        values["gen_ai__usage__output_tokens"] = output_tokens
    values.update(extra)
    return trace_pb2.Span(
        trace_id=trace.to_bytes(16, "big"),
        span_id=n.to_bytes(8, "big"),
        name="chat",
        start_time_unix_nano=ns(end) - 1_000_000,
        end_time_unix_nano=ns(end),
        attributes=attrs(**values),
    )


def traces_body(spans: list[trace_pb2.Span], service: str = "checkout", **resource: Any) -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(attrs(service__name=service, **resource))
    rs.scope_spans.add().spans.extend(spans)
    return req.SerializeToString()


def token_points(
    end: datetime,
    input_sum: int,
    output_sum: int,
    calls: int,
    *,
    start: datetime,
    cumulative: bool = True,
    model: str = "gpt-4o-mini",
) -> metrics_pb2.Metric:
    temporality = (
        metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE if cumulative else metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    )
    metric = metrics_pb2.Metric(name="gen_ai.client.token.usage", unit="{token}")
    metric.histogram.aggregation_temporality = temporality
    for token_type, total in (("input", input_sum), ("output", output_sum)):
        dp = metric.histogram.data_points.add()
        dp.start_time_unix_nano = ns(start)
        dp.time_unix_nano = ns(end)
        dp.count = calls
        dp.sum = float(total)
        dp.attributes.extend(
            attrs(
                gen_ai__provider__name="openai",
                gen_ai__operation__name="chat",
                gen_ai__request__model=model,
                gen_ai__token__type=token_type,
            )
        )
    return metric


def metrics_body(metrics: list[metrics_pb2.Metric], service: str = "checkout", **resource: Any) -> bytes:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(attrs(service__name=service, **resource))
    rm.scope_metrics.add().metrics.extend(metrics)
    return req.SerializeToString()


def events(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text("SELECT * FROM otel_events ORDER BY ts, id"))]


def hour(h: int = 10, minute: int = 0) -> datetime:
    """``h:minute`` UTC yesterday (recent enough for retention, never in the future)."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=1) + timedelta(hours=h, minutes=minute)


PROTOBUF = {"content-type": "application/x-protobuf"}
