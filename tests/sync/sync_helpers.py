"""Helpers shared by the sync / connections tests (fixtures are in tests/conftest.py)."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.engine import Engine

from collector.core.settings import Settings
from collector.sync.vault import new_secret

OPENAI_KEY = "sk-admin-test-Zq7Qx9WmK2rT5vB8nL3p"  # dummy, < 40 chars after the prefix
ANTHROPIC_KEY = "sk-ant-admin01-test-Hy4Jk8Lm2Np6Qr0S"  # dummy


def make_settings(data_dir, **overrides) -> Settings:  # type: ignore[no-untyped-def]
    """Test settings: tiny backoff and timeouts so fault tests run in seconds."""
    values = {
        "data_dir": data_dir,
        "secret_keys": new_secret(),
        "http_max_backoff_seconds": 0.01,
        "http_timeout_seconds": 0.5,
        "http_max_attempts": 8,
        "backfill_days": 3,
    }
    values.update(overrides)
    return Settings(**values)


def totals(engine: Engine, where: str = "1=1") -> tuple:
    """(rows, input, output, cache reads, requests, quantity, cost) over usage: the sums tests compare."""
    with engine.connect() as db:
        row = db.execute(
            text(
                "SELECT COUNT(*), COALESCE(SUM(input_tokens),0), COALESCE(SUM(output_tokens),0), "
                "COALESCE(SUM(cache_read_tokens),0), COALESCE(SUM(requests),0), COALESCE(SUM(quantity),0), "
                f"COALESCE(SUM(cost),0) FROM usage WHERE {where}"
            )
        ).one()
    # SQLite stores quantity and money as scaled integers (collector/sqltypes.py): unscale so
    # totals compare exactly across backends.
    q_scale, m_scale = (6, 10) if engine.dialect.name == "sqlite" else (0, 0)
    return (
        *tuple(int(v) for v in row[:5]),
        Decimal(row[5]).scaleb(-q_scale).normalize(),
        Decimal(row[6]).scaleb(-m_scale).normalize(),
    )
