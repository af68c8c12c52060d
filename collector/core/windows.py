"""Time windows and date words: one half-open UTC ``Window`` for syncs, reports and exports.

Windows are ``[start, end)`` in aware UTC (design rule 2). A sync asks a provider for a window
whose ends sit on bucket boundaries, so every re-fetch of the same window yields the same bucket
keys (provider-apis.md §1.7.6: an unaligned ``start_time`` makes OpenAI return a partial first
bucket) and the end never passes the start of the current, incomplete bucket (§1.7.7).

Reports read windows from date words: ``2026-11-01``, ``2026-11``, ``today``, ``7d``, ``mtd``...
A word names a *range*; ``--since`` takes its start and ``--until`` its end, so
``--since 2026-10 --until 2026-11`` is October and November. Words mean UTC days unless a time
zone is given, in which case they mean local days, converted to aware UTC datetimes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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


def floor_day(ts: datetime) -> datetime:
    """UTC midnight at or before ``ts`` (the day a bucket is counted on)."""
    return floor(ts, DAY)


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

    def describe(self, tz: tzinfo = UTC) -> str:
        """``2026-11-01 .. 2026-11-30`` style label of the (inclusive) days covered, or times."""
        start = self.start.astimezone(tz)
        end = self.end.astimezone(tz)
        if is_midnight(start) and is_midnight(end):
            last = (end - timedelta(days=1)).date()
            if last == start.date():
                return f"{start.date().isoformat()}"
            return f"{start.date().isoformat()} .. {last.isoformat()}"
        return f"{start.isoformat()} .. {end.isoformat()} (end excluded)"

    def __str__(self) -> str:
        return f"[{self.start:%Y-%m-%dT%H:%MZ}, {self.end:%Y-%m-%dT%H:%MZ})"


#: Shown in error messages: the forms a date argument accepts.
DATE_FORMS = "YYYY-MM-DD, YYYY-MM, today, yesterday, Nd (e.g. 7d), mtd, last-month"

_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MONTH_RE = re.compile(r"^\d{4}-\d{2}$")
_DAYS_RE = re.compile(r"^(\d{1,5})d$")


class DateError(ValueError):
    """A date or window argument that cannot be understood; the message names the argument."""


def is_midnight(ts: datetime) -> bool:
    """True when ``ts`` is midnight in its own time zone."""
    return (ts.hour, ts.minute, ts.second, ts.microsecond) == (0, 0, 0, 0)


def parse_tz(name: str) -> tzinfo:
    """An IANA time zone (``Asia/Seoul``) or ``UTC``.

    Raises:
        DateError: the zone is unknown.
    """
    if name.upper() in ("UTC", "Z", "ETC/UTC"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise DateError(f"--tz: unknown time zone {name!r}; accepted: an IANA name such as Asia/Seoul, or UTC") from exc


def _local_midnight(day: date, tz: tzinfo) -> datetime:
    """Aware UTC datetime of local midnight starting ``day`` in ``tz``."""
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _next_month(day: date) -> date:
    return date(day.year + (day.month == 12), day.month % 12 + 1, 1)


def day_range(word: str, *, now: datetime, tz: tzinfo = UTC, argument: str = "date") -> tuple[datetime, datetime]:
    """The half-open UTC range a date word names.

    Args:
        word: one of :data:`DATE_FORMS`.
        now: the current time (aware); ``today`` and friends count from it.
        tz: the zone whose days the words mean.
        argument: the option name, for the error message.

    Returns:
        ``(start, end)`` as aware UTC datetimes, start inclusive, end exclusive.

    Raises:
        DateError: the word is not one of the accepted forms or not a real date.
    """
    text = word.strip().lower()
    today = now.astimezone(tz).date()
    try:
        if _DAY_RE.match(text):
            day = date.fromisoformat(text)
            return _local_midnight(day, tz), _local_midnight(day + timedelta(days=1), tz)
        if _MONTH_RE.match(text):
            first = date.fromisoformat(text + "-01")
            return _local_midnight(first, tz), _local_midnight(_next_month(first), tz)
    except ValueError as exc:
        raise DateError(f"{argument}: {word!r} is not a real date; accepted: {DATE_FORMS}") from exc
    tomorrow = today + timedelta(days=1)
    if text == "today":
        return _local_midnight(today, tz), _local_midnight(tomorrow, tz)
    if text == "yesterday":
        return _local_midnight(today - timedelta(days=1), tz), _local_midnight(today, tz)
    if text == "mtd":
        return _local_midnight(_month_start(today), tz), _local_midnight(tomorrow, tz)
    if text == "last-month":
        first = _month_start(_month_start(today) - timedelta(days=1))
        return _local_midnight(first, tz), _local_midnight(_month_start(today), tz)
    match = _DAYS_RE.match(text)
    if match and int(match.group(1)) > 0:
        # "7d" = the last seven whole days including today.
        return _local_midnight(tomorrow - timedelta(days=int(match.group(1))), tz), _local_midnight(tomorrow, tz)
    raise DateError(f"{argument}: cannot read {word!r}; accepted: {DATE_FORMS}")


def parse_window(
    since: str | None,
    until: str | None,
    *,
    now: datetime | None = None,
    tz: tzinfo = UTC,
    default: str = "mtd",
) -> Window:
    """The report window from ``--since`` / ``--until`` words.

    ``--since`` takes the *start* of the range its word names and ``--until`` the *end*, so both
    name days that are included: ``--since 2026-10 --until 2026-10`` is October, and
    ``--since 2026-11-01 --until 2026-11-30`` is November. ``--since`` alone runs to the end of
    today; ``--until`` alone starts on the first of its last day's month; neither means
    ``default`` (month to date).

    Raises:
        DateError: a word cannot be read, or the window would be empty.
    """
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        raise DateError("now must be timezone-aware")
    if since is None and until is None:
        start, end = day_range(default, now=now, tz=tz)
        return Window(start, end)
    if until is None:
        _, end = day_range("today", now=now, tz=tz)
    else:
        _, end = day_range(until, now=now, tz=tz, argument="--until")
    if since is None:
        last_day = (end - timedelta(seconds=1)).astimezone(tz).date()
        start = _local_midnight(_month_start(last_day), tz)
    else:
        start, _ = day_range(since, now=now, tz=tz, argument="--since")
    if end <= start:
        if until is None:
            raise DateError(f"--since: {since!r} is after today; accepted: a day up to today ({DATE_FORMS})")
        raise DateError(f"--until: {until!r} is before --since {since!r}; --until must name a day on or after --since")
    return Window(start, end)


__all__ = [
    "DATE_FORMS",
    "DAY",
    "HOUR",
    "DateError",
    "Window",
    "ceil",
    "day_range",
    "floor",
    "floor_day",
    "is_midnight",
    "parse_tz",
    "parse_window",
]
