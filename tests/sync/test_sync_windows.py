"""Windows: aligned, half-open, never past the current incomplete bucket (collector/windows.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from collector.core.windows import DAY, HOUR, Window, ceil, floor
from collector.sync.engine import plan

NOW = datetime(2026, 11, 26, 10, 37, 12, tzinfo=UTC)


def test_floor_and_ceil_align_to_utc_buckets():
    assert floor(NOW, HOUR) == datetime(2026, 11, 26, 10, tzinfo=UTC)
    assert floor(NOW, DAY) == datetime(2026, 11, 26, tzinfo=UTC)
    assert ceil(NOW, HOUR) == datetime(2026, 11, 26, 11, tzinfo=UTC)
    assert ceil(floor(NOW, HOUR), HOUR) == floor(NOW, HOUR)


def test_windows_reject_naive_and_empty():
    with pytest.raises(ValueError, match="timezone-aware"):
        Window(datetime(2026, 1, 1), datetime(2026, 1, 2))  # noqa: DTZ001
    with pytest.raises(ValueError, match="empty window"):
        Window(NOW, NOW)


def test_split_and_days():
    w = Window(floor(NOW, DAY) - timedelta(days=10), floor(NOW, DAY))
    parts = list(w.split(HOUR, 168))
    assert [p.buckets(HOUR) for p in parts] == [168, 72]
    assert parts[0].start == w.start and parts[-1].end == w.end
    assert len(list(w.days())) == 10


def test_plan_first_sync_backfills_to_the_last_complete_bucket():
    w = plan(now=NOW, width=HOUR, lookback=timedelta(hours=48), backfill=timedelta(days=30), high_water=None)
    assert w == Window(datetime(2026, 10, 27, 10, tzinfo=UTC), datetime(2026, 11, 26, 10, tzinfo=UTC))


def test_plan_later_syncs_refetch_the_lookback():
    mark = datetime(2026, 11, 26, 9, tzinfo=UTC)
    w = plan(now=NOW, width=HOUR, lookback=timedelta(hours=48), backfill=timedelta(days=30), high_water=mark)
    assert w == Window(mark - timedelta(hours=48), floor(NOW, HOUR))
    daily = plan(
        now=NOW, width=DAY, lookback=timedelta(days=3), backfill=timedelta(days=30), high_water=floor(NOW, DAY)
    )
    assert daily == Window(floor(NOW, DAY) - timedelta(days=3), floor(NOW, DAY))


def test_plan_since_until_and_nothing_complete_yet():
    since = datetime(2026, 1, 1, 5, 30, tzinfo=UTC)
    until = datetime(2026, 1, 3, tzinfo=UTC)
    w = plan(now=NOW, width=DAY, lookback=DAY, backfill=DAY, high_water=NOW, since=since, until=until)
    assert w == Window(datetime(2026, 1, 1, tzinfo=UTC), until)
    future = plan(now=NOW, width=HOUR, lookback=HOUR, backfill=DAY, high_water=None, until=NOW + timedelta(days=9))
    assert future is not None and future.end == floor(NOW, HOUR)  # never past now
    assert plan(now=NOW, width=DAY, lookback=DAY, backfill=DAY, high_water=None, since=floor(NOW, DAY)) is None
