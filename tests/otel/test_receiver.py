"""The OTLP/HTTP receiver over real HTTP: encodings, OTLP status codes, partial success, what is dropped."""

from __future__ import annotations

import gzip
import json

import httpx
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import text

from collector.core.settings import get_settings
from tests.otel.conftest import (
    PROMPT_MARKER,
    PROTOBUF,
    events,
    hour,
    ns,
    span,
    start_receiver,
    traces_body,
)


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_protobuf_spans_are_stored_once_and_content_is_dropped(receiver, engine):
    body = traces_body([span(1, hour(10, 5)), span(2, hour(10, 6), output_tokens=30)], service="checkout")
    for _ in range(2):  # the second export is a client retry: nothing new
        r = httpx.post(f"{receiver.url}/v1/traces", content=body, headers=PROTOBUF)
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/x-protobuf"
        assert not ExportTraceServiceResponse.FromString(r.content).HasField("partial_success")
    rows = events(engine)
    assert [(e["provider"], e["model"], e["input_tokens"], e["output_tokens"], e["project"]) for e in rows] == [
        ("openai", "gpt-4o-mini", 100, 20, "checkout"),
        ("openai", "gpt-4o-mini", 100, 30, "checkout"),
    ]
    assert all(e["basis"] == "estimated" and e["cost"] > 0 for e in rows)
    with engine.connect() as conn:
        dump = " ".join(str(v) for r in conn.execute(text("SELECT * FROM otel_events")) for v in r)
    assert PROMPT_MARKER not in dump
    metrics = scrape(receiver.url)
    assert metrics[("llm_otel_events_written_total", (("signal", "span"),))] == 2
    assert metrics[("llm_otel_dropped_attributes_total", (("reason", "content"),))] == 4


def test_json_encoding_with_hex_ids_and_gzip(receiver, engine):
    end = hour(11)
    doc = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "search"}}]},
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "name": "chat claude",
                                "startTimeUnixNano": str(ns(end) - 1000),
                                "endTimeUnixNano": str(ns(end)),
                                "attributes": [
                                    {"key": "gen_ai.system", "value": {"stringValue": "anthropic"}},
                                    {"key": "gen_ai.request.model", "value": {"stringValue": "claude-sonnet-4-5"}},
                                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "1000"}},
                                    {"key": "gen_ai.usage.cache_read.input_tokens", "value": {"intValue": "600"}},
                                    {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "50"}},
                                    {"key": "unknownFieldIsIgnored", "value": {"stringValue": "x"}},
                                ],
                                "someFutureField": 1,
                            }
                        ]
                    }
                ],
            }
        ]
    }
    body = gzip.compress(json.dumps(doc).encode())
    r = httpx.post(
        f"{receiver.url}/v1/traces",
        content=body,
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {}
    (row,) = events(engine)
    assert row["id"].endswith("5b8efff798038103d269b633813fc60c" + "eee19b7ec3c1b174")
    assert (row["provider"], row["input_tokens"], row["cache_read_tokens"], row["project"]) == (
        "anthropic",
        1000,
        600,
        "search",
    )


@pytest.mark.parametrize(
    ("headers", "body", "status", "reason"),
    [
        ({"content-type": "application/x-protobuf"}, b"\xff\xff\xff not protobuf", 400, "malformed"),
        ({"content-type": "application/json"}, b"{not json", 400, "malformed"),
        (
            {"content-type": "application/json"},
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
            400,
            "malformed",
        ),
        ({"content-type": "text/plain"}, b"hello", 415, "content_type"),
        ({"content-type": "application/x-protobuf", "content-encoding": "br"}, b"x", 415, "encoding"),
        ({"content-type": "application/x-protobuf", "content-encoding": "gzip"}, b"not gzip", 400, "malformed"),
    ],
)
def test_bad_input_gets_the_otlp_status_and_a_count(sqlite_engine, headers, body, status, reason):
    r = start_receiver(sqlite_engine)
    try:
        resp = httpx.post(f"{r.url}/v1/traces", content=body, headers=headers)
        assert resp.status_code == status
        if headers["content-type"] == "application/x-protobuf":
            assert Status.FromString(resp.content).message
        elif headers["content-type"] == "application/json":
            assert resp.json()["message"]
        metrics = scrape(r.url)
        assert metrics[("llm_otel_refused_requests_total", (("reason", reason), ("signal", "traces")))] == 1
        assert httpx.get(f"{r.url}/healthz").json()["status"] == "ok"  # still serving
    finally:
        r.server.stop()
    assert events(sqlite_engine) == []


def test_oversized_bodies_and_gzip_bombs_get_413(sqlite_engine):
    settings = get_settings().model_copy(update={"otel_max_body_bytes": 4096})
    r = start_receiver(sqlite_engine, settings)
    try:
        big = traces_body([span(i, hour(10)) for i in range(1, 200)])
        assert len(big) > 4096
        assert httpx.post(f"{r.url}/v1/traces", content=big, headers=PROTOBUF).status_code == 413
        bomb = gzip.compress(b"\x00" * 2_000_000, compresslevel=9)
        assert len(bomb) < 4096
        resp = httpx.post(f"{r.url}/v1/traces", content=bomb, headers={**PROTOBUF, "content-encoding": "gzip"})
        assert resp.status_code == 413
        small = traces_body([span(1, hour(10))])
        assert httpx.post(f"{r.url}/v1/traces", content=small, headers=PROTOBUF).status_code == 200
        assert scrape(r.url)[("llm_otel_refused_requests_total", (("reason", "too_large"), ("signal", "traces")))] == 2
    finally:
        r.server.stop()


def test_bearer_token_protects_the_endpoint(sqlite_engine):
    settings = get_settings().model_copy(update={"otel_bearer_token": SecretStr("s3cret-otlp-token")})
    r = start_receiver(sqlite_engine, settings)
    body = traces_body([span(1, hour(10))])
    try:
        assert httpx.post(f"{r.url}/v1/traces", content=body, headers=PROTOBUF).status_code == 401
        wrong = {**PROTOBUF, "authorization": "Bearer nope"}
        assert httpx.post(f"{r.url}/v1/traces", content=body, headers=wrong).status_code == 401
        assert events(sqlite_engine) == []
        right = {**PROTOBUF, "authorization": "Bearer s3cret-otlp-token"}
        assert httpx.post(f"{r.url}/v1/traces", content=body, headers=right).status_code == 200
        assert len(events(sqlite_engine)) == 1
    finally:
        r.server.stop()


def test_database_down_answers_503_with_retry_after(tmp_path):
    def broken():
        raise OSError("database unreachable")

    r = start_receiver(None, engine_factory=broken)
    try:
        resp = httpx.post(f"{r.url}/v1/traces", content=traces_body([span(1, hour(10))]), headers=PROTOBUF)
        assert resp.status_code == 503
        assert int(resp.headers["retry-after"]) > 0
        assert scrape(r.url)[("llm_otel_refused_requests_total", (("reason", "database"), ("signal", "traces")))] == 1
    finally:
        r.server.stop()


def test_broken_taxonomy_is_a_partial_success_and_other_spans_are_kept(receiver, engine):
    body = traces_body(
        [
            span(1, hour(10)),
            span(2, hour(10), input_tokens=10, gen_ai__usage__cache_read__input_tokens=50),  # cache > input
            span(3, hour(10), output_tokens=5, gen_ai__usage__reasoning__output_tokens=9),  # reasoning > output
            span(4, hour(10), input_tokens=-3),
            span(5, hour(10), gen_ai__operation__name="invoke_agent"),  # sums its children: ignored
        ]
    )
    r = httpx.post(f"{receiver.url}/v1/traces", content=body, headers=PROTOBUF)
    assert r.status_code == 200
    partial = ExportTraceServiceResponse.FromString(r.content).partial_success
    assert partial.rejected_spans == 3
    assert "cache read and write tokens exceed" in partial.error_message
    assert "reasoning tokens exceed" in partial.error_message
    assert [e["id"][-1] for e in events(engine)] == ["1"]  # span id 1


def test_non_genai_spans_are_ignored_and_unknown_models_unpriced(receiver, engine):
    plain = span(1, hour(10))
    del plain.attributes[:]
    body = traces_body([plain, span(2, hour(10), model="no-such-model-xyz")])
    assert httpx.post(f"{receiver.url}/v1/traces", content=body, headers=PROTOBUF).status_code == 200
    (row,) = events(engine)
    assert (row["model"], row["basis"], row["cost"]) == ("no-such-model-xyz", "unpriced", None)
    metrics = scrape(receiver.url)
    assert metrics[("llm_otel_spans_total", (("outcome", "ignored"),))] == 1
    assert metrics[("llm_otel_spans_total", (("outcome", "genai"),))] == 1


def test_attribution_mappings_and_the_deny_list(sqlite_engine):
    settings = get_settings().model_copy(
        update={
            "otel_team_attributes": "app.team,service.namespace",
            "otel_project_attributes": "user.email,service.name",
        }
    )
    r = start_receiver(sqlite_engine, settings)
    try:
        body = traces_body(
            [span(1, hour(10), app__team="search", user__email="alice@example.com")],
            service="ranker",
            service__namespace="platform",
            deployment__environment__name="production",
        )
        assert httpx.post(f"{r.url}/v1/traces", content=body, headers=PROTOBUF).status_code == 200
        metrics = scrape(r.url)
    finally:
        r.server.stop()
    (row,) = events(sqlite_engine)
    # user.* is on the deny list: never read, even though a mapping names it.
    assert (row["team"], row["project"], row["environment"]) == ("search", "ranker", "production")
    with sqlite_engine.connect() as conn:
        dump = " ".join(str(v) for r in conn.execute(text("SELECT * FROM otel_events")) for v in r)
    assert "alice@example.com" not in dump
    assert metrics[("llm_otel_dropped_attributes_total", (("reason", "deny_list"),))] == 1
