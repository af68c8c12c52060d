"""``paused_gc``: the collector is off inside, back on after the last user leaves, never left off."""

from __future__ import annotations

import gc
import threading

import pytest

from collector.core.gcpause import paused_gc


@pytest.fixture(autouse=True)
def _collector_on():
    gc.enable()
    yield
    gc.enable()


def test_nested_pauses_switch_it_back_on_only_at_the_outermost_exit():
    with paused_gc():
        assert not gc.isenabled()
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_an_exception_inside_still_switches_it_back_on():
    with pytest.raises(RuntimeError), paused_gc():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_a_collector_switched_off_before_stays_off():
    gc.disable()
    with paused_gc():
        pass
    assert not gc.isenabled()


def test_overlapping_pauses_in_two_threads_end_with_the_collector_on():
    """A enters, B enters, A leaves (B still inside: stays off), B leaves (back on)."""
    a_in, b_in, a_out, b_may_leave = (threading.Event() for _ in range(4))
    seen: dict[str, bool] = {}

    def first() -> None:
        with paused_gc():
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def second() -> None:
        a_in.wait(10)
        with paused_gc():
            b_in.set()
            a_out.wait(10)
            seen["after A left"] = gc.isenabled()
            b_may_leave.wait(10)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    a_out.wait(10)
    b_may_leave.set()
    for t in threads:
        t.join(10)
    assert seen == {"after A left": False}
    assert gc.isenabled()


def test_a_columnar_write_holds_the_collector_off_in_its_reading_thread_too(sqlite_engine):
    """``ingest_columns`` pauses for the whole write: batches are built in the read-ahead thread."""
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from collector.core.ingest import ingest_columns
    from collector.core.schema import UsageRecord
    from collector.core.store import RowColumns

    start = datetime(2026, 3, 1, 10, tzinfo=UTC)
    seen: list[tuple[str, bool]] = []

    def batches():
        for i in range(3):
            seen.append((threading.current_thread().name, gc.isenabled()))
            rec = UsageRecord(
                provider="openai",
                source="csv",
                kind="focus",
                bucket_start=start + timedelta(hours=i),
                bucket_end=start + timedelta(hours=i + 1),
                model="gpt-5",
                input_tokens=10,
                cost=Decimal("0.5"),
                currency="USD",
                basis="billed",
            )
            yield RowColumns.from_records([rec])

    with sqlite_engine.begin() as conn:
        result = ingest_columns(conn, batches())
    assert result.changed == 3
    assert seen == [("read-ahead", False)] * 3
    assert gc.isenabled()
