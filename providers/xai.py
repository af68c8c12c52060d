"""xAI: the Management API's billing usage time series, read with a management key.

Facts from provider-apis.md §4.1, which marks most of them as third-party evidence
([3RD]/[UNCONFIRMED]); the module follows the request and response shapes seen there and is
lenient exactly where they are unconfirmed:

* the team comes from ``GET /auth/management-keys/validation`` (``scope``/``scopeId``), or from the
  connection's ``team_id`` setting when the key is not team-scoped;
* ``POST /v1/billing/teams/{team}/usage`` with an ``analyticsRequest`` (daily ``TIME_UNIT_DAY``,
  the ``usd`` sum grouped by ``description``) answers ``timeSeries`` of ``dataPoints`` whose
  ``values`` are **USD strings, not cents**; no pagination is documented, so windows are asked in
  chunks, and a chunk the API answers with ``limitReached`` is split in two until it is not;
* token counts are not a confirmed value name, so none is asked for and rows carry money only
  (the test ``test_xai_rows_without_token_values`` says so);
* the prepaid balance and the invoice preview are in **USD cents**, the balance a negative
  accounting value (``"-799"`` = $7.99 left): levels reported beside the connection.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from collector.core.cloud_billing import model_from_text
from collector.core.http import send
from collector.core.schema import UsageRecord
from collector.core.windows import DAY, Window
from providers.base import (
    SOURCE,
    ConnField,
    Context,
    Endpoint,
    KeyFormatError,
    Page,
    Provider,
    ProviderError,
    to_decimal,
)

NAME = "xai"
#: Days asked per request before any split; no page size is documented (§4.1).
CHUNK_DAYS = 31
VALUES = ("usd",)


def _ts(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ProviderError(f"xai usage timestamp: expected an RFC 3339 string, got {value!r}")
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ProviderError(f"xai usage timestamp: not RFC 3339: {value[:40]!r}") from None
    return ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)


def _label(series: Mapping[str, Any]) -> str:
    labels = series.get("groupLabels")
    if isinstance(labels, list) and labels:
        return " ".join(str(x) for x in labels)
    group = series.get("group")
    if isinstance(group, list):
        return " ".join(str(x) for x in group)
    return str(group or "")


def parse_usage(payload: Mapping[str, Any], ctx: Context) -> list[UsageRecord]:
    """Billed rows from one usage time series response (provider-apis.md §4.1).

    One row per (day, description): the description ("Chat grok-4-0709") is the line item and
    names the model. A data point without a ``usd`` value is skipped (nothing was billed), and
    ``limitReached`` is refused here too, so a truncated answer is never stored as complete.
    """
    if payload.get("limitReached"):
        raise ProviderError("xai usage: the API reported limitReached; the answer is incomplete")
    series_list = payload.get("timeSeries")
    if series_list is None:
        return []  # no usage at all in the range: the series list is absent (§4.1 [UNCONFIRMED])
    if not isinstance(series_list, list):
        raise ProviderError("xai usage: 'timeSeries' is not a list")
    records = []
    for series in series_list:
        label = _label(series)
        for point in series.get("dataPoints") or ():
            values = point.get("values") or []
            if not values:
                continue
            start = _ts(point.get("timestamp"))
            records.append(
                UsageRecord(
                    provider=NAME,
                    source=SOURCE,
                    kind="usage",
                    bucket_start=start,
                    bucket_end=start + DAY,
                    account=ctx.account,
                    model=model_from_text(label),
                    line_item=label[:512],
                    cost=to_decimal(values[0], "usd value"),  # USD, not cents (§4.1)
                    currency="USD",
                    basis="billed",
                    source_ref=ctx.source_ref,
                )
            )
    return records


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("usage", "v1/billing/teams/{team}/usage", DAY, CHUNK_DAYS, "cost", parse_usage),
)


def _wall(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _cents(value: Any, what: str) -> Decimal:
    """A ``{"val": "<cents>"}`` amount in USD (§4.1: balance and invoice are in cents)."""
    raw = value.get("val") if isinstance(value, Mapping) else value
    return to_decimal(raw if raw is not None else 0, what).scaleb(-2)


class XAIProvider(Provider):
    """xAI team spend per day and description, read with a management key."""

    name = NAME
    title = "xAI"
    admin_key_prefixes = ()
    key_help = (
        "this is not an xAI management key: billing usage needs a management key (xAI Console > "
        "Settings > Management Keys, with billing read permission), not an inference API key"
    )
    base_url_setting = "xai_base_url"
    endpoints = ENDPOINTS
    fields = (
        ConnField(
            "team_id",
            "Team id",
            vault=False,
            required=False,
            help="Only for keys that are not scoped to one team; a team-scoped key names its team itself.",
        ),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._team: str | None = None

    @classmethod
    def check_key(cls, key: str) -> None:
        """A management key has no documented prefix (§4.1): refuse only what cannot be one."""
        if not key or any(c.isspace() for c in key):
            raise KeyFormatError("the key is empty or contains whitespace")
        if key.startswith("sk-"):
            raise KeyFormatError(cls.key_help)

    @classmethod
    def key_hint(cls, key: str) -> str:
        return f"{key[:4]}…{key[-3:]}" if len(key) > 12 else "…" + key[-3:]

    @classmethod
    def auth_headers(cls, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def team(self) -> str:
        """The team id: the setting, else what the key's validation says (§4.1)."""
        if self._team is None:
            self._team = self.options.get("team_id") or self._discover_team()
        return self._team

    def _discover_team(self) -> str:
        body = send(self.client, "GET", "auth/management-keys/validation", self.settings)
        if isinstance(body, Mapping) and body.get("scope") == "SCOPE_TEAM" and body.get("scopeId"):
            return str(body["scopeId"])
        raise ProviderError("this xAI management key is not scoped to one team; set the connection's team_id setting")

    def probe(self) -> str:
        """The key's validation (one cheap call) names the team rows are filed under."""
        return self.team()

    def pages(self, endpoint: Endpoint, window: Window) -> Iterator[Page]:
        """Chunks of at most :data:`CHUNK_DAYS` days, each split while the API says limitReached."""
        path = endpoint.path.format(team=self.team())
        start = window.start
        while start < window.end:
            end = min(start + timedelta(days=endpoint.max_buckets), window.end)
            yield from self._chunk(path, start, end)
            start = end

    def _chunk(self, path: str, start: datetime, end: datetime) -> Iterator[Page]:
        body = {
            "analyticsRequest": {
                "timeRange": {"startTime": _wall(start), "endTime": _wall(end), "timezone": "Etc/GMT"},
                "timeUnit": "TIME_UNIT_DAY",
                "values": [{"name": v, "aggregation": "AGGREGATION_SUM"} for v in VALUES],
                "groupBy": ["description"],
                "filters": [],
            }
        }
        payload = send(self.client, "POST", path, self.settings, json=body, parse_float=Decimal)
        if not isinstance(payload, Mapping):
            raise ProviderError("xai usage: expected a JSON object")
        if payload.get("limitReached") and end - start > DAY:
            days = (end - start) // DAY
            middle = start + DAY * (days // 2)
            yield from self._chunk(path, start, middle)
            yield from self._chunk(path, middle, end)
            return
        yield Page(payload, end)

    def account_facts(self) -> dict[str, str]:
        """Prepaid balance and the current invoice preview, in USD (§4.1: cents; balance negative)."""
        team = self.team()
        facts: dict[str, str] = {}
        balance = send(self.client, "GET", f"v1/billing/teams/{team}/prepaid/balance", self.settings)
        if isinstance(balance, Mapping) and balance.get("total") is not None:
            facts["balance_usd"] = str(-_cents(balance["total"], "prepaid balance"))
        preview = send(self.client, "GET", f"v1/billing/teams/{team}/postpaid/invoice/preview", self.settings)
        core = preview.get("coreInvoice") if isinstance(preview, Mapping) else None
        if isinstance(core, Mapping) and core.get("totalWithCorr") is not None:
            facts["invoice_preview_usd"] = str(_cents(core["totalWithCorr"], "invoice preview"))
        return facts


__all__ = ["ENDPOINTS", "XAIProvider", "parse_usage"]
