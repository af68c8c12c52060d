"""Store tests, each on SQLite and PostgreSQL (the ``engine`` fixture is parametrised)."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text

from collector.core.schema import KEY_FIELDS, RECORD_FIELDS, UsageRecord
from collector.core.store import USAGE, USAGE_DAILY, rebuild_all_daily, upsert_records
from collector.demo.synthetic import GeneratorConfig, generate

SUMS = ("input_tokens", "cache_read_tokens", "output_tokens", "requests", "cost")


def totals(engine, table=USAGE):
    with engine.connect() as conn:
        cols = [func.count()] + [func.sum(table.c[name]) for name in SUMS]
        return tuple(conn.execute(select(*cols)).one())


def expected_totals(records):
    return (
        len(records),
        *(sum(getattr(r, n) for r in records) for n in SUMS[:-1]),
        sum(r.cost for r in records if r.cost is not None),
    )


@pytest.fixture(scope="module")
def ten_thousand():
    return list(generate(GeneratorConfig(days=10, rows_per_hour=45, seed=7), limit=10_000))


def test_upsert_twice_changes_nothing(engine, ten_thousand):
    assert len(ten_thousand) == 10_000
    upsert_records(engine, ten_thousand)
    first = totals(engine)
    assert first == expected_totals(ten_thousand)
    with engine.connect() as conn:
        stamp = conn.execute(select(func.max(USAGE.c.updated_at))).scalar_one()
    again = upsert_records(engine, ten_thousand, now=datetime.now(UTC) + timedelta(days=1))
    assert (again.records, again.changed, again.days) == (10_000, 0, set())
    assert totals(engine) == first
    with engine.connect() as conn:
        # unchanged rows are not rewritten, so their updated_at stays put
        assert conn.execute(select(func.max(USAGE.c.updated_at))).scalar_one() == stamp
    assert totals(engine, USAGE_DAILY)[1:] == first[1:]


def test_reupsert_with_changed_values_updates_those_rows(engine, ten_thousand):
    upsert_records(engine, ten_thousand)
    changed = [replace(r, output_tokens=r.output_tokens + 7) for r in ten_thousand[:100]]
    result = upsert_records(engine, changed)
    assert result.changed == 100 and result.days
    count, _, _, out, *_ = totals(engine)
    assert count == 10_000
    assert out == sum(r.output_tokens for r in ten_thousand) + 700
    daily = totals(engine, USAGE_DAILY)
    assert daily[3] == out  # the rollup followed the update


def test_no_key_column_is_ever_null(engine, ten_thousand):
    upsert_records(engine, ten_thousand[:500])
    with engine.connect() as conn:
        for name in KEY_FIELDS:
            nulls = conn.execute(select(func.count()).where(USAGE.c[name].is_(None))).scalar_one()
            assert nulls == 0, name
        empty_projects = conn.execute(select(func.count()).where(USAGE.c.user_id == "")).scalar_one()
        assert empty_projects == 500  # '' stands for "not applicable"


@pytest.mark.parametrize("amount", ["0.0000042", "123456.789012", "-17.5", "0"])
def test_decimal_amounts_round_trip_exactly(engine, amount):
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    r = UsageRecord(
        provider="openai",
        source="api",
        kind="costs",
        bucket_start=t0,
        bucket_end=t0 + timedelta(days=1),
        line_item="gpt-4o, input",
        cost=Decimal(amount),
        currency="USD",
        basis="billed",
    )
    upsert_records(engine, [r])
    with engine.connect() as conn:
        got = conn.execute(select(USAGE.c.cost, USAGE.c.bucket_start)).one()
        daily = conn.execute(select(USAGE_DAILY.c.cost, USAGE_DAILY.c.day)).one()
    assert got.cost == Decimal(amount) and str(got.cost) == amount
    assert got.bucket_start == t0
    assert daily.cost == Decimal(amount) and daily.day == t0


def test_rollup_matches_usage_by_day_and_can_be_rebuilt(engine, ten_thousand):
    upsert_records(engine, ten_thousand)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM usage_daily"))
        days = rebuild_all_daily(conn)
    assert days >= 9
    assert totals(engine, USAGE_DAILY)[1:] == totals(engine)[1:]
    with engine.connect() as conn:
        rows = conn.execute(select(func.sum(USAGE_DAILY.c.rows))).scalar_one()
    assert rows == 10_000


def test_unpriced_rows_keep_null_cost(engine):
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    r = UsageRecord(
        provider="fireworks",
        source="csv",
        kind="fireworks",
        bucket_start=t0,
        bucket_end=t0 + timedelta(hours=1),
        model="mystery",
        input_tokens=5,
    )
    upsert_records(engine, [r])
    with engine.connect() as conn:
        assert conn.execute(select(USAGE.c.cost, USAGE.c.basis)).one() == (None, "unpriced")
        assert conn.execute(select(USAGE_DAILY.c.cost, USAGE_DAILY.c.input_tokens)).one() == (None, 5)


def test_writing_one_slice_leaves_other_slices_rollups_intact(engine, ten_thousand):
    upsert_records(engine, ten_thousand)
    before = totals(engine, USAGE_DAILY)
    openai = [replace(r, output_tokens=r.output_tokens + 1) for r in ten_thousand if r.provider == "openai"]
    result = upsert_records(engine, openai)
    assert result.changed == len(openai) > 0
    after = totals(engine, USAGE_DAILY)
    assert after[3] == before[3] + len(openai)  # only the openai slices moved
    assert after[1:][:2] == before[1:][:2] and after[1:] == totals(engine)[1:]


def rollup_by_slice_and_day(engine):
    """``usage_daily`` as {(day, provider, account, source, kind, model_raw...): output tokens}."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(USAGE_DAILY.c.day, USAGE_DAILY.c.provider, USAGE_DAILY.c.kind, USAGE_DAILY.c.output_tokens)
        ).all()
    out: dict[tuple, int] = {}
    for day, provider, kind, tokens in rows:
        out[(day, provider, kind)] = out.get((day, provider, kind), 0) + tokens
    return out


def usage_by_slice_and_day(engine):
    """The same figure computed from ``usage`` in Python: the oracle for the rollup."""
    with engine.connect() as conn:
        rows = conn.execute(select(USAGE.c.bucket_start, USAGE.c.provider, USAGE.c.kind, USAGE.c.output_tokens)).all()
    out: dict[tuple, int] = {}
    for start, provider, kind, tokens in rows:
        key = (start.replace(hour=0, minute=0, second=0, microsecond=0), provider, kind)
        out[key] = out.get(key, 0) + tokens
    return out


def test_slices_written_on_different_days_rebuild_exactly(engine, ten_thousand):
    """One upsert touching slice A on some days and slice B on others rebuilds both exactly."""
    upsert_records(engine, ten_thousand)
    days = sorted({r.bucket_start.date() for r in ten_thousand})
    first_half = set(days[: len(days) // 2])
    mixed = [
        replace(r, output_tokens=r.output_tokens + 3)
        for r in ten_thousand
        if (r.provider == "openai" and r.bucket_start.date() in first_half)
        or (r.provider != "openai" and r.bucket_start.date() not in first_half)
    ]
    assert mixed
    upsert_records(engine, mixed)
    rollup = rollup_by_slice_and_day(engine)
    assert rollup == usage_by_slice_and_day(engine)
    assert sum(rollup.values()) == sum(r.output_tokens for r in ten_thousand) + 3 * len(mixed)


def test_a_key_written_twice_in_one_large_batch_keeps_the_last_values(engine, ten_thousand):
    """A large batch takes PostgreSQL's COPY path; as with row-by-row upserts, the last row wins."""
    batch = ten_thousand[:1000]
    twice = [*batch, replace(batch[10], output_tokens=batch[10].output_tokens + 1000)]
    upsert_records(engine, twice)
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(USAGE)).scalar_one()
        out = conn.execute(select(func.sum(USAGE.c.output_tokens))).scalar_one()
        daily = conn.execute(select(func.sum(USAGE_DAILY.c.output_tokens))).scalar_one()
    assert count == 1000
    assert out == daily == sum(r.output_tokens for r in batch) + 1000


def test_data_version_counts_rollup_changes_and_nothing_else(engine, ten_thousand):
    from collector.core.store import data_version, delete_by_source_ref

    first = data_version(engine)
    sample = ten_thousand[:50]
    upsert_records(engine, sample)
    written = data_version(engine)
    assert written > first
    upsert_records(engine, sample)  # nothing changed: the rollup is not rebuilt, readers keep their cache
    assert data_version(engine) == written
    upsert_records(engine, [replace(sample[0], output_tokens=sample[0].output_tokens + 1)])
    changed = data_version(engine)
    assert changed > written
    with engine.begin() as conn:
        delete_by_source_ref(conn, sample[0].source_ref)
    assert data_version(engine) > changed


def rollup_rows(engine):
    """Every ``usage_daily`` row but its id, sorted: what a rebuild from ``usage`` must reproduce."""
    columns = [c for c in USAGE_DAILY.c if c.name != "id"]
    with engine.connect() as conn:
        return sorted(tuple(row) for row in conn.execute(select(*columns)).all())


def rebuilt_rollup_rows(engine):
    """The rollup rebuilt from ``usage`` by SQL (``GROUP BY``), read, then rolled back."""
    with engine.connect() as conn, conn.begin() as tx:
        rebuild_all_daily(conn, count=False)
        columns = [c for c in USAGE_DAILY.c if c.name != "id"]
        rows = sorted(tuple(row) for row in conn.execute(select(*columns)).all())
        tx.rollback()
    return rows


def test_first_writes_summed_from_the_rows_equal_the_rebuild_from_usage(engine, ten_thousand):
    """Slices new to the rollup are summed from the written rows: the same rows as the rebuild from ``usage``.

    One write mixes slice-days that held rows with new ones in the same batches, a level unit
    (a daily mean), unpriced rows, negative amounts, and keys written twice (in one batch and
    across batches, with changed values: the last row wins and its slices are rebuilt instead).
    """
    old = [r for r in ten_thousand if r.provider == "openai" and r.bucket_start.day % 2 == 0]
    upsert_records(engine, old)
    before = rollup_rows(engine)
    assert before == rebuilt_rollup_rows(engine)
    old_ids = {id(r) for r in old}
    rest = [r for r in ten_thousand if id(r) not in old_ids]
    tweaked = []
    for i, r in enumerate(rest):
        if i % 7 == 0:
            r = replace(r, cost=None, basis="unpriced", currency="", price_version="")
        elif i % 11 == 0:
            r = replace(r, quantity=Decimal(1000 + i), quantity_unit="bytes")
        elif i % 13 == 0 and r.cost is not None:
            r = replace(r, cost=-r.cost, basis="billed")
        tweaked.append(r)
    repeats = [replace(tweaked[5], output_tokens=tweaked[5].output_tokens + 9), tweaked[40]]
    stream = [*old[:300], *tweaked[:2000], *repeats, *tweaked[2000:], replace(tweaked[3000], input_tokens=1)]
    result = upsert_records(engine, stream, batch_size=997)
    assert result.records == len(stream)
    assert result.changed == len(tweaked) + 2  # two repeats with new values; old rows and one identical repeat skip
    after = rollup_rows(engine)
    assert after == rebuilt_rollup_rows(engine)
    assert len(after) > len(before)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(USAGE)).scalar_one() == len(old) + len(tweaked)
        assert conn.execute(select(func.sum(USAGE_DAILY.c.rows))).scalar_one() == len(old) + len(tweaked)
        bytes_rows = conn.execute(select(func.count()).where(USAGE_DAILY.c.quantity_unit == "bytes")).scalar_one()
        null_costs = conn.execute(select(func.count()).where(USAGE_DAILY.c.cost.is_(None))).scalar_one()
    assert bytes_rows and null_costs


def test_a_key_repeated_in_a_later_batch_of_a_new_slice_keeps_the_last_values(engine, ten_thousand):
    """A new slice's repeated key is found by the row count of ``DO NOTHING`` and settled by the upsert."""
    batch = ten_thousand[:600]
    again = replace(batch[3], output_tokens=batch[3].output_tokens + 500, cost=None, basis="unpriced", currency="")
    result = upsert_records(engine, [*batch, again], batch_size=100)
    assert result.changed == 601
    with engine.connect() as conn:
        out = conn.execute(select(func.sum(USAGE.c.output_tokens))).scalar_one()
        daily = conn.execute(select(func.sum(USAGE_DAILY.c.output_tokens))).scalar_one()
    assert out == daily == sum(r.output_tokens for r in batch) + 500
    assert rollup_rows(engine) == rebuilt_rollup_rows(engine)


def test_every_stored_value_is_the_records_own(engine, ten_thousand):
    """The batch-built parameter rows (keys, scaled amounts, column order) store each record's own values.

    Mixed in: unpriced rows (NULL cost among scaled ones), integer quantities and amounts with
    more places than the column keeps (rounded half-even, as the per-value binding does).
    """
    records = []
    for i, r in enumerate(ten_thousand[:3000]):
        if i % 5 == 0:
            r = replace(r, cost=None, basis="unpriced", currency="", price_version="")
        elif i % 7 == 0:
            r = replace(r, quantity=3 + i, quantity_unit="images")
        elif i % 11 == 0:
            r = replace(r, cost=Decimal("0.123456789012345"), basis="billed", currency="USD")
        records.append(r)
    upsert_records(engine, records, batch_size=700)
    names = [c for c in RECORD_FIELDS if c not in ("cost", "quantity")]
    with engine.connect() as conn:
        stored = {row.record_key: row for row in conn.execute(select(USAGE)).all()}
    assert len(stored) == len(records)
    for r in records:
        row = stored[r.record_key]
        assert [getattr(row, n) for n in names] == [getattr(r, n) for n in names]
        assert row.quantity == r.quantity
        expected = None if r.cost is None else r.cost.quantize(Decimal("1E-10"))
        assert row.cost == expected


def test_rows_another_writer_commits_to_a_summed_slice_are_counted(pg_url):
    """PostgreSQL: writers run side by side, so a slice found empty may not be empty at the end.

    While one write is between batches, another commits rows to the same slice-days, one of them
    under a key the first write sends next (with other values). The first write's rollup must
    count both writers' rows, with the last value of the shared key, as the rebuild does.
    """
    from collector.db.migrate import open_database

    engine = open_database(url=pg_url)
    records = list(generate(GeneratorConfig(days=2, rows_per_hour=40, seed=23), limit=1500))
    ours, theirs = records[::2], records[1::2]
    shared = replace(ours[700], output_tokens=ours[700].output_tokens + 77)

    def stream():
        yield from ours[:600]
        # The first batch is written and its slices found empty; another writer commits now.
        upsert_records(engine, [*theirs, shared])
        yield from ours[600:]

    with engine.begin() as conn:
        from collector.core.store import upsert

        result = upsert(conn, stream(), batch_size=600)
    assert result.records == len(ours)
    assert rollup_rows(engine) == rebuilt_rollup_rows(engine)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(USAGE)).scalar_one() == len(records)
        assert conn.execute(select(func.sum(USAGE_DAILY.c.rows))).scalar_one() == len(records)
        out = conn.execute(select(func.sum(USAGE_DAILY.c.output_tokens))).scalar_one()
    assert out == sum(r.output_tokens for r in records)  # our row of the shared key came last
    engine.dispose()
