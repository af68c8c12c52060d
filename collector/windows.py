"""Half-open UTC windows aligned to bucket widths (design.md rule 2, code-anchors §11.6).

A sync asks a provider for ``[start, end)`` where both ends sit on bucket boundaries, so every
re-fetch of the same window yields the same bucket keys (provider-apis.md §1.7.6: an unaligned
``start_time`` makes OpenAI return a partial first bucket) and the end never passes the start of
the current, incomplete bucket (§1.7.7).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _aware(ts: datetime, name: str) -> datetime:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware UTC, got naive {ts!r}")
    return ts.astimezone(UTC)


def floor(ts: datetime, width: timedelta) -> datetime:
    """The start of the bucket of ``width`` that contains ``ts`` (UTC-epoch aligned)."""
    ts = _aware(ts, "timestamp")
    return ts - (ts - _EPOCH) % width


def ceil(ts: datetime, width: timedelta) -> datetime:
    """The first bucket boundary at or after ``ts``."""
    start = floor(ts, width)
    return start if start == _aware(ts, "timestamp") else start + width


@dataclass(frozen=True, slots=True)
class Window:
    """``[start, end)`` in aware UTC; ``start < end``."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _aware(self.start, "window start"))
        object.__setattr__(self, "end", _aware(self.end, "window end"))
        if self.end <= self.start:
            raise ValueError(f"empty window: end {self.end.isoformat()} is not after start {self.start.isoformat()}")

    def aligned(self, width: timedelta) -> Window:
        """The smallest window of whole buckets that covers this one."""
        return Window(floor(self.start, width), ceil(self.end, width))

    def buckets(self, width: timedelta) -> int:
        """How many buckets of ``width`` the window holds (it should be aligned)."""
        return int((self.end - self.start) / width)

    def split(self, width: timedelta, max_buckets: int) -> Iterator[Window]:
        """Consecutive sub-windows of at most ``max_buckets`` buckets each, oldest first."""
        step = width * max_buckets
        cursor = self.start
        while cursor < self.end:
            nxt = min(cursor + step, self.end)
            yield Window(cursor, nxt)
            cursor = nxt

    def days(self) -> Iterator[datetime]:
        """The UTC midnights of the days the window touches."""
        day = floor(self.start, DAY)
        while day < self.end:
            yield day
            day += DAY

    def __str__(self) -> str:
        return f"[{self.start:%Y-%m-%dT%H:%MZ}, {self.end:%Y-%m-%dT%H:%MZ})"


def plan(
    *,
    now: datetime,
    width: timedelta,
    lookback: timedelta,
    backfill: timedelta,
    high_water: datetime | None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Window | None:
    """The window one sync of one endpoint fetches, or None when nothing is complete yet.

    * end: ``until`` (or ``now``) floored to the bucket, so the incomplete current bucket is
      never fetched and never counted as done;
    * start: ``since`` when given (a CLI back-fill); else the high-water mark minus the lookback
      (providers revise recent buckets, provider-apis.md §1.7.7 and §2.8.1); else, on the first
      sync, ``backfill`` before the end.
    """
    end = floor(min(until, now) if until is not None else now, width)
    if since is not None:
        start = floor(since, width)
    elif high_water is not None:
        start = floor(min(high_water, end) - lookback, width)
    else:
        start = floor(end - backfill, width)
    if start >= end:
        return None
    return Window(start, end)


__all__ = ["DAY", "HOUR", "Window", "ceil", "floor", "plan"]
