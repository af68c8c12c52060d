"""The real OpenTelemetry SDK, OTLP/HTTP exporters and the official openai-v2 instrumentation, against the receiver.

The official ``openai`` client calls the fake upstream; ``opentelemetry-instrumentation-openai-v2``
records each call as a span *and* in the ``gen_ai.client.token.usage`` histogram, which the
SDK's OTLP/HTTP exporters send to a real receiver. N calls must become exactly N calls' tokens,
by service, in ``llm-usage report --source otel``; replaying the exports adds nothing; the
prompt and completion (captured by the instrumentation on purpose) never reach the database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import openai
import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import MetaData, select
from typer.testing import CliRunner

from collector.app import app
from collector.core.settings import get_settings
from collector.otel.rollup import rollup
from tests.fakes.upstream import COMPLETION_MARKER, OPENAI_USAGE, FakeUpstream, ServerThread
from tests.otel.conftest import events

PROMPT = "PROMPT-MARKER-sdk-5e1f"
CALLS = {"checkout": 3, "search": 2}


@dataclass
class Service:
    """One instrumented application: its providers, exporters and a copy of what it exported."""

    tracer: TracerProvider
    meter: MeterProvider
    spans: InMemorySpanExporter
    span_exporter: OTLPSpanExporter


def service(name: str, endpoint: str) -> Service:
    resource = Resource.create(
        {"service.name": name, "service.namespace": "shop", "deployment.environment.name": "test"}
    )
    tracer = TracerProvider(resource=resource)
    exporter = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")
    copy = InMemorySpanExporter()
    tracer.add_span_processor(SimpleSpanProcessor(exporter))
    tracer.add_span_processor(SimpleSpanProcessor(copy))
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics"), export_interval_millis=3_600_000
    )
    meter = MeterProvider(resource=resource, metric_readers=[reader])
    return Service(tracer, meter, copy, exporter)


@pytest.fixture
def upstream() -> Iterator[ServerThread]:
    with ServerThread(FakeUpstream()) as server:
        yield server


def call_openai(svc: Service, base_url: str, calls: int) -> None:
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=svc.tracer, meter_provider=svc.meter)
    try:
        client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="sk-test-otel-KEYMARKER", max_retries=0)
        for i in range(calls):
            reply = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"{PROMPT} #{i}"}]
            )
            assert COMPLETION_MARKER in (reply.choices[0].message.content or "")
    finally:
        instrumentor.uninstrument()
    svc.tracer.force_flush()
    assert svc.meter.force_flush()


def dump(engine) -> str:
    meta = MetaData()
    meta.reflect(engine)
    parts = []
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)):
                parts.extend(str(v) for v in row)
    return "\n".join(parts)


def test_n_calls_are_n_calls_by_service_replays_add_nothing_content_never_stored(
    receiver, engine, upstream, monkeypatch, request
):
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "span_only")
    services = {name: service(name, receiver.url) for name in CALLS}
    request.addfinalizer(lambda: [(s.tracer.shutdown(), s.meter.shutdown()) for s in services.values()])
    for name, calls in CALLS.items():
        call_openai(services[name], upstream.url, calls)
    # The instrumentation really put the prompt and completion on the spans it exported.
    exported = services["checkout"].spans.get_finished_spans()
    assert any(PROMPT in str(s.attributes.get("gen_ai.input.messages", "")) for s in exported)

    stored = events(engine)
    assert sorted(e["signal"] for e in stored) == ["metric"] * 2 + ["span"] * sum(CALLS.values())
    settled = datetime.now(UTC) + timedelta(hours=1)
    rollup(engine, now=settled)

    # Replays: the same spans exported again, and the cumulative metrics exported again.
    for svc in services.values():
        assert svc.span_exporter.export(svc.spans.get_finished_spans()).name == "SUCCESS"
        assert svc.meter.force_flush()
    rollup(engine, now=settled)
    assert len(events(engine)) == len(stored)

    monkeypatch.setenv("LLM_USAGE_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    result = CliRunner().invoke(
        app, ["report", "--source", "otel", "--by", "project", "--format", "json", "--since", "7d"]
    )
    assert result.exit_code == 0, result.output
    rows = {r["project"]: r for r in json.loads(result.output)}
    assert set(rows) == set(CALLS)
    for name, calls in CALLS.items():
        r = rows[name]
        assert r["section"] == "otel"
        assert (r["input_tokens"], r["output_tokens"], r["requests"]) == (
            calls * OPENAI_USAGE[0],
            calls * OPENAI_USAGE[2],
            calls,
        )
        assert r["basis"] == "estimated" and float(r["cost"]) > 0
    # spans won over the metric points of the same calls
    assert sorted(e["state"] for e in events(engine) if e["signal"] == "metric") == ["superseded"] * 2

    everything = dump(engine)
    for secret in (PROMPT, COMPLETION_MARKER, "sk-test-otel-KEYMARKER"):
        assert secret not in everything
