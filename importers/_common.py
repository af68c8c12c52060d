"""Small helpers shared by several importers (key-length fitting, tags; model names from core)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from decimal import Decimal

from collector.core.cloud_billing import model_from_text as model_from_text

#: Key columns are VARCHAR(255) (line_item 512) in ``usage``; longer ids are shortened with a hash.
KEY_LIMIT = 255
LINE_ITEM_LIMIT = 512


def fit(text: str, limit: int = KEY_LIMIT) -> str:
    """``text`` if it fits the key column, else a prefix plus a short hash (still unique and stable)."""
    if len(text) <= limit:
        return text
    digest = hashlib.blake2b(text.encode(), digest_size=6).hexdigest()
    return f"{text[: limit - 13]}~{digest}"


def team_from_tags(text: str) -> str:
    """The ``team`` tag from a JSON tags cell (FOCUS ``Tags`` object, GCP ``labels`` list), or ''."""
    if not text or text[0] not in "[{":
        return ""
    try:
        data = json.loads(text, parse_float=Decimal)
    except ValueError:
        return ""  # tags are descriptive; a malformed cell does not make the row wrong
    if isinstance(data, list):
        data = {str(d.get("key", "")): d.get("value", "") for d in data if isinstance(d, dict)}
    if not isinstance(data, dict):
        return ""
    for key, value in data.items():
        k = str(key).lower()
        if k == "team" or k.endswith((":team", "/team", "_team")):
            return fit(str(value))
    return ""


class Memo(dict[str, str]):
    """A bounded string cache for per-distinct-value work (tags, SKU texts)."""

    def __init__(self, fn: Callable[[str], str], limit: int = 50_000) -> None:
        super().__init__()
        self.fn = fn
        self.limit = limit

    def __missing__(self, key: str) -> str:
        if len(self) >= self.limit:
            self.clear()
        value = self.fn(key)
        self[key] = value
        return value
