"""Date words and windows (collector/dates.py): half-open, UTC unless a zone is given."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from collector.core.windows import DateError, Window, day_range, parse_tz, parse_window

NOW = datetime(2026, 11, 26, 10, 30, tzinfo=UTC)  # a Thursday


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("word", "start", "end"),
    [
        ("2026-11-01", utc(2026, 11, 1), utc(2026, 11, 2)),
        ("2026-02", utc(2026, 2, 1), utc(2026, 3, 1)),
        ("2026-12", utc(2026, 12, 1), utc(2027, 1, 1)),
        ("today", utc(2026, 11, 26), utc(2026, 11, 27)),
        ("yesterday", utc(2026, 11, 25), utc(2026, 11, 26)),
        ("7d", utc(2026, 11, 20), utc(2026, 11, 27)),
        ("1d", utc(2026, 11, 26), utc(2026, 11, 27)),
        ("mtd", utc(2026, 11, 1), utc(2026, 11, 27)),
        ("last-month", utc(2026, 10, 1), utc(2026, 11, 1)),
        (" Today ", utc(2026, 11, 26), utc(2026, 11, 27)),
    ],
)
def test_day_range_words(word: str, start: datetime, end: datetime) -> None:
    assert day_range(word, now=NOW) == (start, end)


def test_last_month_in_january_is_december() -> None:
    assert day_range("last-month", now=utc(2027, 1, 15)) == (utc(2026, 12, 1), utc(2027, 1, 1))


def test_words_in_a_time_zone_mean_local_days() -> None:
    seoul = parse_tz("Asia/Seoul")
    # 10:30 UTC is 19:30 in Seoul, still Nov 26 there; local midnight is 15:00 UTC the day before.
    assert day_range("today", now=NOW, tz=seoul) == (utc(2026, 11, 25, 15), utc(2026, 11, 26, 15))
    late = utc(2026, 11, 26, 16)  # already Nov 27 in Seoul
    assert day_range("today", now=late, tz=seoul)[0] == utc(2026, 11, 26, 15)


@pytest.mark.parametrize("word", ["2026-13-01", "2026-02-30", "soon", "0d", "-3d", "2026/11/01", "", "2026-1"])
def test_bad_words_name_the_argument_and_forms(word: str) -> None:
    with pytest.raises(DateError, match=r"^--since: .*accepted: YYYY-MM-DD, YYYY-MM, today"):
        day_range(word, now=NOW, argument="--since")


def test_window_defaults_to_month_to_date() -> None:
    assert parse_window(None, None, now=NOW) == Window(utc(2026, 11, 1), utc(2026, 11, 27))


def test_until_names_the_last_day_included() -> None:
    assert parse_window("2026-10", "2026-10", now=NOW) == Window(utc(2026, 10, 1), utc(2026, 11, 1))
    assert parse_window("2026-11-01", "2026-11-30", now=NOW) == Window(utc(2026, 11, 1), utc(2026, 12, 1))
    assert parse_window("last-month", "last-month", now=NOW) == Window(utc(2026, 10, 1), utc(2026, 11, 1))


def test_since_alone_runs_to_the_end_of_today() -> None:
    assert parse_window("7d", None, now=NOW) == Window(utc(2026, 11, 20), utc(2026, 11, 27))
    assert parse_window("2026-09-15", None, now=NOW) == Window(utc(2026, 9, 15), utc(2026, 11, 27))


def test_until_alone_starts_on_the_first_of_its_month() -> None:
    assert parse_window(None, "2026-10-15", now=NOW) == Window(utc(2026, 10, 1), utc(2026, 10, 16))


def test_until_before_since_is_an_error() -> None:
    with pytest.raises(DateError, match=r"^--until: '2026-10-01' is before --since '2026-10-02'"):
        parse_window("2026-10-02", "2026-10-01", now=NOW)
    with pytest.raises(DateError, match=r"^--since: '2027-01-01' is after today"):
        parse_window("2027-01-01", None, now=NOW)


def test_bad_time_zone() -> None:
    with pytest.raises(DateError, match=r"^--tz: unknown time zone 'Nowhere/City'"):
        parse_tz("Nowhere/City")
    assert parse_tz("utc") is UTC


def test_window_describe() -> None:
    assert Window(utc(2026, 10, 1), utc(2026, 11, 1)).describe() == "2026-10-01 .. 2026-10-31"
    assert Window(utc(2026, 10, 1), utc(2026, 10, 2)).describe() == "2026-10-01"
    assert "end excluded" in Window(utc(2026, 10, 1, 5), utc(2026, 10, 2)).describe()
