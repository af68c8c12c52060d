"""Rollup of OTLP events into usage: exactly once, cumulative series, one count per call across spans and metrics."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import text

from collector.otel.rollup import rollup
from collector.query.report import Filters, report
from tests.otel.conftest import PROTOBUF, events, hour, metrics_body, span, token_points, traces_body


def post(receiver, path: str, body: bytes) -> None:
    r = httpx.post(f"{receiver.url}{path}", content=body, headers=PROTOBUF)
    assert r.status_code == 200, r.content


def otel_report(engine, by=("project",)):
    day = hour(0)
    return report(engine, Filters(day, day + timedelta(days=1), sources=("otel",)), by=by)


def tokens(engine, by=("project",)) -> dict[tuple, tuple[int, int, int]]:
    return {tuple(r.dims.values()): (r.input_tokens, r.output_tokens, r.requests) for r in otel_report(engine, by).rows}


def states(engine) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in events(engine):
        out.setdefault(e["signal"], []).append(e["state"])
    return out


def test_spans_roll_up_once_into_their_own_section(receiver, engine):
    post(receiver, "/v1/traces", traces_body([span(1, hour(10, 5)), span(2, hour(10, 50))], service="checkout"))
    post(receiver, "/v1/traces", traces_body([span(3, hour(11, 1), trace=2)], service="search"))
    assert rollup(engine) == 2
    assert rollup(engine) == 0  # nothing new: nothing written
    post(receiver, "/v1/traces", traces_body([span(1, hour(10, 5))], service="checkout"))  # a replayed export
    assert rollup(engine) == 0
    assert tokens(engine) == {("checkout",): (200, 40, 2), ("search",): (100, 20, 1)}
    result = otel_report(engine)
    assert {r.section for r in result.rows} == {"otel"}
    assert all(r.basis == "estimated" and r.cost and r.cost > 0 for r in result.rows)
    assert "otel rows are listed separately and are never added to the providers' numbers" in result.notes
    day = hour(0)
    assert report(engine, Filters(day, day + timedelta(days=1))).rows == []  # never in provider totals
    with engine.connect() as conn:
        kinds = conn.execute(text("SELECT DISTINCT source, kind, variant FROM usage")).all()
    assert kinds == [("otel", "otel", "operation=chat")]


def test_cumulative_metrics_count_increments_once(receiver, engine):
    start = hour(9, 58)
    first = metrics_body([token_points(hour(10, 0), 200, 40, 2, start=start)])
    second = metrics_body([token_points(hour(10, 1), 500, 100, 5, start=start)])
    for body in (first, second, first, second):  # retries and a reordered retry add nothing
        post(receiver, "/v1/metrics", body)
    assert rollup(engine, now=hour(10, 2), settle_seconds=600) == 0  # not settled: spans may still come
    assert rollup(engine, now=hour(10, 30), settle_seconds=600) == 1
    assert tokens(engine) == {("checkout",): (500, 100, 5)}
    # a restarted process starts a new series (new start time): counted from zero again
    post(receiver, "/v1/metrics", metrics_body([token_points(hour(10, 20), 30, 6, 1, start=hour(10, 19))]))
    rollup(engine, now=hour(11), settle_seconds=600)
    assert tokens(engine) == {("checkout",): (530, 106, 6)}


def test_delta_metrics_add_up(receiver, engine):
    for minute in (1, 2):
        post(
            receiver,
            "/v1/metrics",
            metrics_body([token_points(hour(10, minute), 100, 10, 1, start=hour(10, minute - 1), cumulative=False)]),
        )
    rollup(engine, now=hour(12), settle_seconds=600)
    assert tokens(engine) == {("checkout",): (200, 20, 2)}


def test_a_call_seen_as_span_and_metric_counts_once_spans_win(receiver, engine):
    start = hour(9, 30)
    post(
        receiver,
        "/v1/traces",
        traces_body(
            [
                span(1, hour(10, 0)),
                span(
                    2,
                    hour(
                        10,
                        0,
                    ),
                ),
            ],
            service="checkout",
        ),
    )
    post(
        receiver, "/v1/metrics", metrics_body([token_points(hour(10, 1), 200, 40, 2, start=start)], service="checkout")
    )
    # another process (another resource) exports only metrics: they count
    post(receiver, "/v1/metrics", metrics_body([token_points(hour(10, 1), 70, 7, 1, start=start)], service="batch"))
    rollup(engine, now=hour(12), settle_seconds=600)
    assert tokens(engine) == {("checkout",): (200, 40, 2), ("batch",): (70, 7, 1)}
    assert sorted(states(engine)["metric"]) == ["counted", "superseded"]


def test_a_late_span_after_its_metric_was_counted_is_left_out(receiver, engine):
    start = hour(9, 30)
    post(receiver, "/v1/metrics", metrics_body([token_points(hour(10, 1), 100, 20, 1, start=start)]))
    rollup(engine, now=hour(12), settle_seconds=600)
    post(receiver, "/v1/traces", traces_body([span(1, hour(10, 0))]))  # the same call, exported late
    rollup(engine, now=hour(12), settle_seconds=600)
    assert tokens(engine) == {("checkout",): (100, 20, 1)}
    assert states(engine) == {"metric": ["counted"], "span": ["superseded"]}


def test_prefer_metrics_for_sampled_traces(receiver, engine):
    start = hour(9, 30)
    post(receiver, "/v1/traces", traces_body([span(1, hour(10, 0))]))  # 1 of 4 calls sampled
    post(receiver, "/v1/metrics", metrics_body([token_points(hour(10, 1), 400, 80, 4, start=start)]))
    assert rollup(engine, prefer="metrics", now=hour(10, 2), settle_seconds=600) == 1
    assert rollup(engine, prefer="metrics", now=hour(12), settle_seconds=600) == 0
    assert tokens(engine) == {("checkout",): (400, 80, 4)}
    assert states(engine) == {"metric": ["counted"], "span": ["superseded"]}


def test_otel_chargeback_splits_its_own_traffic(receiver, engine):
    from collector.finance import chargeback

    post(
        receiver,
        "/v1/traces",
        traces_body([span(1, hour(10)), span(2, hour(10))], service="ranker", service__namespace="search"),
    )
    post(receiver, "/v1/traces", traces_body([span(3, hour(10), trace=2)], service="bot", service__namespace="support"))
    post(receiver, "/v1/traces", traces_body([span(4, hour(10), trace=3)], service="misc"))
    rollup(engine)
    chargeback.save_rules(engine, [chargeback.Rule("project", "ranker", "ranking", "CC-1")])
    month = hour(0).date().replace(day=1)
    cb = chargeback.monthly_chargeback(engine, month, source="otel")
    spend = {tuple(r.dims.values()): r.cost for r in otel_report(engine, by=("team", "project")).rows}
    lines = {(ln.team, ln.cost_centre): ln.amount for ln in cb.lines}
    assert lines == {
        ("ranking", "CC-1"): spend[("search", "ranker")],
        ("support", ""): spend[("support", "bot")],  # no rule: the service namespace, as recorded
        ("unallocated", ""): spend[("", "misc")],
    }
    assert cb.line_sum("USD") == sum(spend.values())
    assert any("otel traffic" in n for n in cb.notes)
    assert chargeback.monthly_chargeback(engine, month).lines == []  # never in the providers' chargeback


def test_reconciliation_shows_otel_as_another_view(receiver, engine):
    from collector.core.ingest import ingest_records
    from collector.core.schema import UsageRecord
    from collector.query.reconcile import reconcile

    post(receiver, "/v1/traces", traces_body([span(1, hour(10)), span(2, hour(11))], service="checkout"))
    rollup(engine)
    start = hour(10)
    usage = {"provider": "openai", "source": "api", "kind": "completions", "model": "gpt-4o-mini"}
    ingest_records(  # the provider's own usage for the same hour, and on the day before
        engine,
        [
            UsageRecord(**usage, bucket_start=t, bucket_end=t + timedelta(hours=1), input_tokens=200, output_tokens=40)
            for t in (start, start - timedelta(days=1))
        ],
    )
    day = hour(0)
    result = reconcile(engine, Filters(day - timedelta(days=1), day + timedelta(days=1)))
    otel_cost = sum(r.cost for r in otel_report(engine).rows)
    lines = {d.day: d for d in result.days if d.provider == "openai"}
    today, before = lines[day], lines[day - timedelta(days=1)]
    assert today.otel == otel_cost and today.proxy is None
    provider_only = report(engine, Filters(day, day + timedelta(days=1)), basis="estimated").rows
    assert today.estimated == sum(r.cost for r in provider_only)  # the otel money is never added to it
    assert before.otel is None and before.missing == ("billed", "otel")
    assert result.accounts[0].otel == otel_cost
    assert reconcile(engine, Filters(day, day + timedelta(days=1)), otel=False).days[0].otel is None
