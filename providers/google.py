"""Google Gemini API and Vertex AI spend from the Cloud Billing export in BigQuery.

Google has no usage or cost REST API for Gemini or Vertex AI (provider-apis.md §3.1); the bill
is the Cloud Billing export to BigQuery (§3.2), read here with ``google-cloud-bigquery`` and a
service-account key. The table (``project.dataset.gcp_billing_export_v1_<BILLING_ACCOUNT>``, or
the detailed ``..._resource_v1_...`` one) is a setting of the connection.

One parameterised query per calendar month of the window sums the AI services' rows per UTC
day, project, service, SKU, unit, cost type and currency, **net of credits** (``cost`` plus the
negative ``credits[].amount``, §3.2), casting to ``NUMERIC`` so money arrives as ``Decimal``.
SKU descriptions name the model and token direction (§3.2, [UNCONFIRMED] strings) and are read
by :mod:`collector.core.cloud_billing` exactly as the CSV importer reads them, and rows are filed
under the row's own ``billing_account_id``, as the importer files them, so precedence can match
an uploaded export of the same account-day.

The SDK's own retries are off; a month's query and its pages run under the product's retry
policy (:func:`collector.core.http.call`). A retried query is answered from BigQuery's result
cache when it can be (same text, same parameters). The test call is a dry run: free, and it
checks the key, the permissions, the table and the columns the query reads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import requests
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth import exceptions as auth_exc
from google.cloud import bigquery
from google.oauth2 import service_account

from collector.core.cloud_billing import (
    NO_TOKENS,
    TOKEN_UNITS,
    model_from_text,
    token_direction,
    token_fields,
    unit_multiplier,
)
from collector.core.http import FatalAPIError, RetriableAPIError, call, redact
from collector.core.schema import UsageRecord
from collector.core.settings import Settings
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
    check_url,
    to_decimal,
)

T = TypeVar("T")
NAME = "google"
DEFAULT_SERVICES = ("Vertex AI", "Gemini API", "Generative Language API")
SCOPES = ("https://www.googleapis.com/auth/bigquery",)
PAGE_SIZE = 5000
_TABLE = re.compile(
    r"^(?:[a-z0-9.-]{1,63}:)?[a-z][a-z0-9-]{4,28}[a-z0-9]\.[A-Za-z0-9_]{1,1024}\.[A-Za-z0-9_$-]{1,1024}$"
)
_EXPORT_ACCOUNT = re.compile(r"gcp_billing_export(?:_resource)?_v1_([0-9A-F]{6})_([0-9A-F]{6})_([0-9A-F]{6})$")
_ACCOUNT = re.compile(r"^[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}$")
_RETRIABLE_REASONS = frozenset({"rateLimitExceeded", "backendError", "internalError", "jobRateLimitExceeded"})

QUERY = """
SELECT
  billing_account_id,
  FORMAT_TIMESTAMP('%F', usage_start_time, 'UTC') AS day,
  IFNULL(project.id, '') AS project_id,
  IFNULL(service.description, '') AS service,
  IFNULL(sku.id, '') AS sku_id,
  IFNULL(sku.description, '') AS sku,
  IFNULL(usage.unit, '') AS unit,
  IFNULL(cost_type, '') AS cost_type,
  currency,
  SUM(CAST(cost AS NUMERIC)) AS cost,
  SUM(IFNULL((SELECT SUM(CAST(c.amount AS NUMERIC)) FROM UNNEST(credits) AS c), 0)) AS credits,
  SUM(CAST(IFNULL(usage.amount, 0) AS NUMERIC)) AS usage_amount
FROM `{table}`
WHERE usage_start_time >= @start AND usage_start_time < @end
  AND service.description IN UNNEST(@services)
GROUP BY billing_account_id, day, project_id, service, sku_id, sku, unit, cost_type, currency
ORDER BY day, project_id, service, sku_id, cost_type, currency
"""


def account_from_table(table: str) -> str:
    """The billing account id a standard or detailed export table is named after (§3.2), or ''."""
    m = _EXPORT_ACCOUNT.search(table)
    return "-".join(m.groups()) if m else ""


def _day(value: Any) -> datetime:
    try:
        return datetime.strptime(str(value)[:10], "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ProviderError(f"google billing day: expected YYYY-MM-DD, got {str(value)[:40]!r}") from None


def parse_billing(payload: Mapping[str, Any], ctx: Context) -> list[UsageRecord]:
    """Billed rows from one page of the billing-export query (provider-apis.md §3.2).

    Net cost is ``cost + credits``; tokens are counted for regular-cost rows whose SKU names a
    token direction and whose unit counts tokens, like the CSV importer; other quantities are
    kept with their unit. The SKU id and description (plus a non-regular cost type) are the line
    item, so a tax or adjustment row never merges into usage.
    """
    records = []
    for row in payload.get("rows") or ():
        start = _day(row.get("day"))
        desc, cost_type = str(row.get("sku") or ""), str(row.get("cost_type") or "").lower()
        cost = to_decimal(row.get("cost") or 0, "cost") + to_decimal(row.get("credits") or 0, "credits")
        amount = to_decimal(row.get("usage_amount") or 0, "usage_amount")
        unit = str(row.get("unit") or "").strip().lower()
        direction = token_direction(desc)
        line_item = " | ".join(p for p in (str(row.get("sku_id") or ""), desc) if p)
        if cost_type and cost_type != "regular":
            line_item += f" | {cost_type}"
        tokens, quantity, q_unit = NO_TOKENS, Decimal(0), ""
        count = amount * unit_multiplier(unit)[0]
        if amount and direction and unit in TOKEN_UNITS and cost_type in ("", "regular") and count % 1 == 0:
            tokens = token_fields(direction, int(count), desc)
        elif amount:
            quantity, q_unit = amount, (unit or "units")[:32]
        records.append(
            UsageRecord(
                provider=NAME,
                source=SOURCE,
                kind="bigquery_billing",
                bucket_start=start,
                bucket_end=start + DAY,
                account=str(row.get("billing_account_id") or "") or ctx.account,
                project=str(row.get("project_id") or ""),
                model=model_from_text(desc),
                line_item=line_item[:512],
                input_tokens=tokens[0],
                cache_read_tokens=tokens[1],
                cache_write_5m_tokens=tokens[2],
                cache_write_1h_tokens=tokens[3],
                output_tokens=tokens[4],
                quantity=quantity,
                quantity_unit=q_unit,
                cost=cost,
                currency=str(row.get("currency") or "USD").upper(),
                basis="billed",
                source_ref=ctx.source_ref,
            )
        )
    return records


ENDPOINTS: tuple[Endpoint, ...] = (Endpoint("bigquery_billing", "queries", DAY, 31, "cost", parse_billing),)


def google_call(fn: Callable[[], T], secrets: tuple[str, ...] = ()) -> T:
    """One SDK call, its errors sorted into retriable and fatal; known secrets masked."""

    def clean(text: str) -> str:
        for secret in secrets:
            if secret:
                text = text.replace(secret, "…")
        return redact(text).strip().splitlines()[0][:300] if text.strip() else ""

    try:
        return fn()
    except auth_exc.RefreshError as exc:
        raise FatalAPIError(f"Google refused the service-account key: {clean(str(exc))}", status=401) from None
    except gexc.GoogleAPICallError as exc:
        status = int(exc.code or 500) if isinstance(exc.code, int) else 500
        reasons = {str(e.get("reason")) for e in exc.errors or () if isinstance(e, Mapping)}
        message = f"BigQuery HTTP {status}: {clean(str(exc.message))}"
        if status in (429, 500, 502, 503, 504) or reasons & _RETRIABLE_REASONS:
            raise RetriableAPIError(message, status=status) from None
        raise FatalAPIError(message, status=status) from None
    except (auth_exc.TransportError, requests.exceptions.RequestException, FutureTimeout) as exc:
        raise RetriableAPIError(f"connection error talking to Google: {type(exc).__name__}") from None


def _months(window: Window) -> Iterator[tuple[datetime, datetime]]:
    start = window.start
    while start < window.end:
        nxt = (start.replace(day=1) + timedelta(days=32)).replace(day=1)
        end = min(nxt, window.end)
        yield start, end
        start = end


class GoogleBillingProvider(Provider):
    """Gemini API and Vertex AI spend per day, project and SKU, from the BigQuery billing export."""

    name = NAME
    title = "Google Cloud (billing export in BigQuery)"
    aliases = ("gcp",)
    admin_key_prefixes = ()
    key_help = "Google needs a service-account key (JSON) that may run BigQuery jobs and read the billing export"
    base_url_setting = "google_bigquery_url"
    endpoints = ENDPOINTS
    fields = (
        ConnField(
            "service_account_json",
            "Service-account key (JSON)",
            secret=True,
            multiline=True,
            help="The key file of a service account with BigQuery Job User and Data Viewer on the dataset.",
        ),
        ConnField(
            "table",
            "Billing export table",
            vault=False,
            help="project.dataset.gcp_billing_export_v1_XXXXXX_XXXXXX_XXXXXX (standard or detailed export).",
        ),
        ConnField(
            "project", "Query project", vault=False, required=False, help="Where query jobs run; default: the key's."
        ),
        ConnField("location", "Dataset location", vault=False, required=False, help="e.g. US or EU."),
        ConnField(
            "account",
            "Billing account id",
            vault=False,
            required=False,
            help="Default: the id in the table name (rows carry their own billing_account_id).",
        ),
        ConnField("services", "Extra services", vault=False, required=False, help="Comma-separated, besides AI ones."),
        ConnField(
            "max_bytes_billed",
            "Maximum bytes billed",
            vault=False,
            required=False,
            help="A query that would scan more fails instead of being charged.",
        ),
    )

    def __init__(self, settings: Settings, options: Mapping[str, str] | None, info: Mapping[str, Any], url: str):
        self.settings = settings
        self.options = dict(options or {})
        self._info = dict(info)
        self._url = url
        self._client: Any = None

    # -- credentials and settings ------------------------------------------------------------

    @classmethod
    def service_account(cls, key: str) -> dict[str, Any]:
        """The service-account key document inside a stored credential."""
        try:
            info = json.loads(cls.credential(key).get("service_account_json", ""))
        except ValueError:
            raise KeyFormatError("the service-account key is not JSON (paste the whole key file)") from None
        if not isinstance(info, dict):
            raise KeyFormatError("the service-account key must be a JSON object")
        return info

    @classmethod
    def check_credential(cls, parts: Mapping[str, str]) -> None:
        super().check_credential(parts)
        info = cls.service_account(json.dumps(dict(parts)))
        if info.get("type") != "service_account":
            raise KeyFormatError("this is not a service-account key file (its type is not service_account)")
        for name in ("client_email", "private_key"):
            if not isinstance(info.get(name), str) or not info[name]:
                raise KeyFormatError(f"the service-account key lacks {name}")
        if not info["private_key"].lstrip().startswith("-----BEGIN"):
            raise KeyFormatError("the service-account key's private_key is not a PEM key")
        if info.get("token_uri"):
            check_url(str(info["token_uri"]), "token_uri")

    @classmethod
    def check_options(cls, options: Mapping[str, str]) -> dict[str, str]:
        out = super().check_options(options)
        if not _TABLE.match(out["table"]):
            raise KeyFormatError("table: expected project.dataset.table (letters, digits, '_', '-')")
        if out.get("account") and not _ACCOUNT.match(out["account"]):
            raise KeyFormatError("account: a billing account id looks like 0123AB-4567CD-89EF01")
        if out.get("project") and not re.fullmatch(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", out["project"]):
            raise KeyFormatError("project: not a Google Cloud project id")
        if out.get("location") and not re.fullmatch(r"[A-Za-z0-9-]{2,40}", out["location"]):
            raise KeyFormatError("location: not a BigQuery location")
        if out.get("max_bytes_billed") and not out["max_bytes_billed"].isdigit():
            raise KeyFormatError("max_bytes_billed: a whole number of bytes")
        return out

    @classmethod
    def key_hint(cls, key: str) -> str:
        info = cls.service_account(key)
        return f"{str(info.get('client_email', ''))[:40]} key …{str(info.get('private_key_id', ''))[-3:]}"[:64]

    @classmethod
    def secrets_in(cls, key: str) -> tuple[str, ...]:
        info = cls.service_account(key)
        return tuple(s for s in (cls.credential(key)["service_account_json"], info.get("private_key")) if s)

    # -- client ----------------------------------------------------------------------------

    @classmethod
    def auth_headers(cls, key: str) -> dict[str, str]:
        return {}  # google-auth signs a JWT and exchanges it for a token itself

    @classmethod
    def connect(
        cls,
        settings: Settings,
        key: str,
        *,
        base_url: str = "",
        transport: Any = None,
        options: Mapping[str, str] | None = None,
    ) -> GoogleBillingProvider:
        """A provider whose BigQuery client is made on first use (no request here)."""
        return cls(settings, options, cls.service_account(key), base_url or settings.google_bigquery_url)

    def close(self) -> None:
        """Close the client's HTTP session."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def _bq(self) -> Any:
        if self._client is None:
            creds = service_account.Credentials.from_service_account_info(self._info, scopes=list(SCOPES))
            self._client = bigquery.Client(
                project=self.options.get("project") or str(self._info.get("project_id") or "") or None,
                credentials=creds,
                client_options=ClientOptions(api_endpoint=self._url) if self._url else None,
                location=self.options.get("location") or None,
            )
        return self._client

    def _secrets(self) -> tuple[str, ...]:
        return tuple(str(v) for v in (self._info.get("private_key"), self._info.get("private_key_id")) if v)

    def _config(self, start: datetime, end: datetime, *, dry_run: bool = False) -> Any:
        extra = [s.strip() for s in self.options.get("services", "").split(",") if s.strip()]
        services = list(dict.fromkeys([*DEFAULT_SERVICES, *extra]))
        config = bigquery.QueryJobConfig(
            query_parameters=[
                bigquery.ScalarQueryParameter("start", "TIMESTAMP", start),
                bigquery.ScalarQueryParameter("end", "TIMESTAMP", end),
                bigquery.ArrayQueryParameter("services", "STRING", services),
            ],
            dry_run=dry_run,
        )
        if self.options.get("max_bytes_billed"):
            config.maximum_bytes_billed = int(self.options["max_bytes_billed"])
        return config

    def _sql(self) -> str:
        table = self.options.get("table", "")
        if not _TABLE.match(table):  # validated when stored; checked again before it meets SQL
            raise ProviderError("google: the connection's table setting is not a table id")
        return QUERY.format(table=table)

    # -- the contract --------------------------------------------------------------------------

    def probe(self) -> str:
        """A dry run of the sync query for yesterday: free, and checks key, permissions and table."""
        client = self._bq()
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        config = self._config(today - DAY, today, dry_run=True)
        call(
            lambda: google_call(lambda: client.query(self._sql(), job_config=config, retry=None), self._secrets()),
            self.settings,
        )
        return self.options.get("account") or account_from_table(self.options.get("table", ""))

    def _month(self, start: datetime, end: datetime) -> list[list[dict[str, Any]]]:
        """One month's result, every page, as plain dicts (run again whole on a transient error)."""
        client = self._bq()
        rows = client.query_and_wait(
            self._sql(),
            job_config=self._config(start, end),
            retry=None,
            job_retry=None,
            api_timeout=self.settings.http_timeout_seconds,
            wait_timeout=max(60.0, self.settings.http_timeout_seconds * 4),
            page_size=PAGE_SIZE,
        )
        return [[dict(row.items()) for row in page] for page in rows.pages]

    def _fetch_month(self, start: datetime, end: datetime) -> list[list[dict[str, Any]]]:
        def once() -> list[list[dict[str, Any]]]:
            return google_call(lambda: self._month(start, end), self._secrets())

        return call(once, self.settings)

    def pages(self, endpoint: Endpoint, window: Window) -> Iterator[Page]:
        """Per calendar month: the query's pages; the month counts as done with its last page."""
        for start, end in _months(window):
            month = self._fetch_month(start, end)
            for i, rows in enumerate(month or [[]]):
                yield Page({"rows": rows}, end if i == max(len(month), 1) - 1 else None)


__all__ = ["ENDPOINTS", "GoogleBillingProvider", "account_from_table", "google_call", "parse_billing"]
