from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.core.schema import InvariantError, UsageRecord

T0 = datetime(2026, 3, 1, 10, tzinfo=UTC)


def rec(**kw):
    base = dict(
        provider="anthropic", source="api", kind="messages", bucket_start=T0, bucket_end=T0 + timedelta(hours=1)
    )
    base.update(kw)
    return UsageRecord(**base)


def test_cache_read_above_input_is_rejected_naming_the_rule():
    with pytest.raises(InvariantError, match=r"rule 4 \(cache reads and writes are part of input\)") as err:
        rec(input_tokens=100, cache_read_tokens=150, model="claude-sonnet-4-5")
    assert "anthropic" in str(err.value) and "model=claude-sonnet-4-5" in str(err.value)


def test_cache_writes_count_against_input_too():
    with pytest.raises(InvariantError, match="cache writes 60 exceed input_tokens 100"):
        rec(input_tokens=100, cache_read_tokens=50, cache_write_5m_tokens=40, cache_write_1h_tokens=20)


def test_reasoning_above_output_is_rejected():
    with pytest.raises(InvariantError, match=r"reasoning is part of output"):
        rec(output_tokens=10, reasoning_tokens=11)


def test_additive_counts_normalise_to_total_input():
    r = UsageRecord.from_additive(
        uncached_input_tokens=1000,
        cache_read_tokens=500,
        cache_write_5m_tokens=200,
        cache_write_1h_tokens=50,
        provider="anthropic",
        source="api",
        kind="messages",
        bucket_start=T0,
        bucket_end=T0 + timedelta(hours=1),
    )
    assert r.input_tokens == 1750
    assert (r.cache_read_tokens, r.cache_write_5m_tokens, r.cache_write_1h_tokens) == (500, 200, 50)


@pytest.mark.parametrize(
    ("kw", "rule"),
    [
        ({"cost": 1.5, "currency": "USD", "basis": "billed"}, "rule 3"),
        ({"cost": Decimal("0"), "basis": "unpriced"}, "unpriced is not \\$0"),
        ({"cost": Decimal("1"), "basis": "estimated", "currency": ""}, "currency"),
        ({"basis": "guessed"}, "rule 5"),
        ({"project": None}, "no NULL in keys"),
        ({"source": "email"}, "rule 6"),
        ({"bucket_start": datetime(2026, 3, 1)}, "timezone-aware"),  # noqa: DTZ001
        ({"bucket_end": T0}, "half-open"),
        ({"input_tokens": -1}, "non-negative"),
        ({"input_tokens": 1.0}, "non-negative integer"),
        ({"cost": Decimal("-1"), "currency": "USD", "basis": "estimated"}, "cannot be negative"),
    ],
)
def test_bad_records_are_rejected(kw, rule):
    with pytest.raises(InvariantError, match=rule):
        rec(**kw)


def test_refunds_may_be_negative_when_billed():
    assert rec(cost=Decimal("-3.20"), currency="EUR", basis="billed").cost == Decimal("-3.20")


def test_times_are_normalised_to_utc_and_key_is_stable():
    kst = timezone(timedelta(hours=9))
    a = rec(bucket_start=T0.astimezone(kst), bucket_end=(T0 + timedelta(hours=1)).astimezone(kst))
    b = rec()
    assert a.bucket_start.tzinfo == UTC
    assert a.record_key == b.record_key and len(a.record_key) == 16
    assert rec(model="x").record_key != b.record_key


_TEXT = st.sampled_from(["", "a", "x\x1fy", "é", "model-1", "\x00"])


def hour_rec(hour, **kw):
    start = T0 + timedelta(hours=hour)
    return rec(bucket_start=start, bucket_end=start + timedelta(hours=1), **kw)


@given(
    records=st.lists(
        st.builds(
            hour_rec,
            hour=st.integers(min_value=-48, max_value=10**5),
            provider=st.sampled_from(["openai", "anthropic"]),
            account=_TEXT,
            project=_TEXT,
            user_id=_TEXT,
            model=_TEXT,
            model_raw=_TEXT,
            service_tier=_TEXT,
            batch=st.booleans(),
            line_item=_TEXT,
            variant=_TEXT,
            team=_TEXT,
        ),
        max_size=20,
    ),
    computed=st.sets(st.integers(min_value=0, max_value=19)),
)
def test_bulk_record_keys_equal_each_records_key(records, computed):
    """The bulk write's keys are the property's bytes, whether or not some were computed before."""
    fresh = [replace(r) for r in records]  # no key computed yet
    for i in computed & set(range(len(fresh))):
        fresh[i].record_key  # noqa: B018  (computes and keeps the key, as the ingest path does)
    assert UsageRecord.record_keys(fresh) == [r.record_key for r in records]
