"""The demo's anomaly is there whatever the day of the week it is built on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from collector.core.settings import Settings
from collector.db.migrate import open_database
from collector.demo.seed import build_demo
from collector.finance.anomaly import find_anomalies
from collector.finance.budgets import anomaly_params

MONDAY = datetime(2026, 11, 23, 13, 20, tzinfo=UTC)


@pytest.mark.parametrize("weekday", range(7), ids=["mon", "tue", "wed", "thu", "fri", "sat", "sun"])
def test_the_spike_yesterday_is_an_anomaly_on_every_weekday(tmp_path, weekday):
    now = MONDAY + timedelta(days=weekday)
    engine = open_database(url=f"sqlite:///{tmp_path / 'demo.db'}")
    build_demo(engine, now=now, days=36, rows_per_hour=6)
    yesterday = now.replace(hour=0, minute=0) - timedelta(days=1)
    params = anomaly_params(Settings(data_dir=tmp_path))
    found = find_anomalies(engine, since=yesterday, until=now, scopes=["project"], params=params, with_drivers=False)
    assert found, f"no anomaly on {yesterday:%A}"
    # The one spike, not noise: every anomaly is yesterday's, and one project stands far above.
    assert {a.at for a in found} == {yesterday}
    top = max(found, key=lambda a: a.score)
    assert top.amount > 2 * top.expected
