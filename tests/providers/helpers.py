"""Fixture loading for provider tests (exact decimals, like the HTTP path)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from providers.base import Context

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CTX = Context(account="org-test", source_ref="conn:1/run:1")


def load(provider: str, name: str) -> Any:
    """A fixture payload parsed with ``parse_float=Decimal`` (as collector.core.http.send does)."""
    return json.loads((FIXTURES / provider / f"{name}.json").read_text(), parse_float=Decimal)


def page(*buckets: Any) -> dict:
    """An OpenAI page around the given buckets."""
    return {"object": "page", "data": list(buckets), "has_more": False, "next_page": None}
