"""Azure OpenAI spend through the Cost Management Query API, as a service principal.

Facts from provider-apis.md §5 (the official REST spec, api-version 2023-11-01). A token for
``https://management.azure.com/.default`` comes from ``azure-identity``'s
``ClientSecretCredential`` (tenant, client id, secret); the query itself is plain REST through the
product's HTTP client (:func:`collector.core.http.make_client`), so timeouts, retries and
redaction are the ones every provider has, and a 429's ``x-ms-ratelimit-*-retry-after`` headers
(§5.1, names [UNCONFIRMED]) set the wait like ``Retry-After`` does.

The query: ``ActualCost``, ``Daily``, ``PreTaxCost`` and ``UsageQuantity`` summed, grouped by
``MeterSubcategory`` and ``Meter`` (at most two groupings, §5.1: the sub-category tells Azure
OpenAI from other AI Services meters exactly as the export importer does, and the meter names
the model and token direction, §5.2), filtered to the AI Services meter categories. Rows are
parsed by column *name* (the order follows ``columns[]``), ``UsageDate`` is a number
``YYYYMMDD``, and further pages are POSTed to ``properties.nextLink``, which must stay on the
management host (the bearer token goes with it). One request per calendar month of the window.

The Query API gives no unit of measure, so meter quantities are kept as ``meter units`` and not
claimed as tokens (the export importer, which has ``UnitOfMeasure``, does count tokens).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import httpx
from azure.core.exceptions import AzureError, ClientAuthenticationError
from azure.identity import ClientSecretCredential

from collector.core.cloud_billing import is_azure_openai_meter, model_from_text
from collector.core.http import FatalAPIError, RetriableAPIError, call, check, make_client, redact
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
API_VERSION = "2023-11-01"
TOKEN_SCOPE = "https://management.azure.com/.default"  # noqa: S105  (an OAuth scope, not a secret)
DEFAULT_SERVICES = ("Cognitive Services", "Azure OpenAI", "Azure OpenAI Service", "Foundry Models")
GROUPING = ("MeterSubcategory", "Meter")
COST_COLUMNS = ("pretaxcost", "cost", "costinbillingcurrency", "pretaxcostusd", "costusd")
_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_SCOPE = re.compile(
    rf"^(?:subscriptions/(?P<sub>{_GUID})(?:/resourceGroups/[\w().-]{{1,90}})?"
    r"|providers/Microsoft\.Billing/billingAccounts/(?P<ba>[\w:.-]{1,128})"
    r"(?:/billingProfiles/[\w-]{1,128}(?:/invoiceSections/[\w-]{1,128})?|/departments/\d{1,16}"
    r"|/enrollmentAccounts/\d{1,16})?"
    r"|providers/Microsoft\.Management/managementGroups/[\w().-]{1,90})$"
)
_TENANT = re.compile(rf"^(?:{_GUID}|[\w.-]{{1,253}}\.[a-z]{{2,}})$")


def parse_scope(scope: str) -> tuple[str, str]:
    """``(billing account id, subscription id)`` a scope names ('' when it names none)."""
    m = _SCOPE.match(scope.strip("/"))
    if not m:
        raise KeyFormatError(
            "scope: expected subscriptions/<subscription id> (optionally /resourceGroups/<name>), "
            "providers/Microsoft.Billing/billingAccounts/<id> or a management group"
        )
    return m["ba"] or "", m["sub"] or ""


def _day(value: Any) -> datetime:
    text = str(value)
    try:
        if re.fullmatch(r"\d{8}", text):
            return datetime.strptime(text, "%Y%m%d").replace(tzinfo=UTC)  # a number YYYYMMDD (§5.1)
        return datetime.fromisoformat(text[:10]).replace(tzinfo=UTC)
    except ValueError:
        raise ProviderError(f"azure UsageDate: expected YYYYMMDD, got {text[:40]!r}") from None


def parse_query(payload: Mapping[str, Any], ctx: Context) -> list[UsageRecord]:
    """Billed rows from one Query API result page (provider-apis.md §5.1-§5.2).

    Columns are found by name. The provider is ``azure_openai`` when the meter sub-category or
    name names an OpenAI model, else ``azure_ai`` (both are AI Services meters), as in the export
    importer. ``project`` is the subscription when the connection's scope names one.
    """
    props = payload.get("properties") or {}
    columns = [str(c.get("name") or "").lower() for c in props.get("columns") or ()]
    index = {name: i for i, name in enumerate(columns)}
    cost_i = next((index[c] for c in COST_COLUMNS if c in index), None)
    if props.get("rows") and (cost_i is None or "usagedate" not in index):
        raise ProviderError(f"azure query: result lacks a cost or UsageDate column (columns: {columns})")
    project = str(payload.get("subscription") or "")  # added by the provider: the scope's subscription

    def col(row: list[Any], name: str) -> str:
        i = index.get(name)
        return "" if i is None or row[i] is None else str(row[i])

    records = []
    for row in props.get("rows") or ():
        start = _day(row[index["usagedate"]])
        sub, meter = col(row, "metersubcategory"), col(row, "meter")
        quantity = to_decimal(row[index["usagequantity"]], "UsageQuantity") if "usagequantity" in index else Decimal(0)
        records.append(
            UsageRecord(
                provider="azure_openai" if is_azure_openai_meter(sub, meter) else "azure_ai",
                source=SOURCE,
                kind="cost_management",
                bucket_start=start,
                bucket_end=start + DAY,
                account=ctx.account,
                project=project,
                model=model_from_text(meter),
                line_item=" | ".join(p for p in (sub, meter) if p)[:512],
                quantity=quantity,
                quantity_unit="meter units" if quantity else "",
                cost=to_decimal(row[cost_i], "cost"),  # type: ignore[index]
                currency=(col(row, "currency") or "USD").upper(),
                basis="billed",
                source_ref=ctx.source_ref,
            )
        )
    return records


#: Cost Management lags 24-48 h for Azure OpenAI (provider-apis.md §5.1, third-party, unconfirmed).
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "cost_management", "providers/Microsoft.CostManagement/query", DAY, 31, "cost", parse_query, delay=2 * DAY
    ),
)


def _months(window: Window) -> Iterator[tuple[datetime, datetime]]:
    start = window.start
    while start < window.end:
        nxt = (start.replace(day=1) + timedelta(days=32)).replace(day=1)
        end = min(nxt, window.end)
        yield start, end
        start = end


class AzureOpenAIProvider(Provider):
    """Azure OpenAI / AI Services spend per day and meter, from Cost Management."""

    name = "azure_openai"
    title = "Azure OpenAI (Cost Management)"
    aliases = ("azure",)
    admin_key_prefixes = ()
    key_help = "Azure needs a service principal: tenant id, client id and client secret, with Cost Management Reader"
    base_url_setting = "azure_management_url"
    endpoints = ENDPOINTS
    fields = (
        ConnField("tenant_id", "Tenant id", help="The Microsoft Entra tenant (directory) id."),
        ConnField("client_id", "Client id", help="The app registration's application (client) id."),
        ConnField("client_secret", "Client secret", secret=True, help="A client secret of that app registration."),
        ConnField(
            "scope",
            "Scope",
            vault=False,
            help="subscriptions/<id> or providers/Microsoft.Billing/billingAccounts/<id>.",
        ),
        ConnField(
            "account",
            "Billing account id",
            vault=False,
            required=False,
            help="The BillingAccountId your cost exports carry; default: the scope's own id.",
        ),
        ConnField(
            "services", "Extra meter categories", vault=False, required=False, help="Comma-separated, besides AI ones."
        ),
        ConnField("authority", "Authority", vault=False, required=False, help="Only for sovereign clouds."),
    )

    def __init__(self, client: httpx.Client, settings: Settings, options: Mapping[str, str] | None = None) -> None:
        super().__init__(client, settings, options)
        self._credential: Any = None
        self._parts: dict[str, str] = {}

    @classmethod
    def check_credential(cls, parts: Mapping[str, str]) -> None:
        super().check_credential(parts)
        if not _TENANT.match(parts["tenant_id"]):
            raise KeyFormatError("tenant_id: a tenant id is a GUID (or a verified domain)")
        if not re.fullmatch(_GUID, parts["client_id"]):
            raise KeyFormatError("client_id: an application (client) id is a GUID")
        if any(c.isspace() for c in parts["client_secret"]):
            raise KeyFormatError("client_secret: contains whitespace")

    @classmethod
    def check_options(cls, options: Mapping[str, str]) -> dict[str, str]:
        out = super().check_options(options)
        out["scope"] = out["scope"].strip("/")
        parse_scope(out["scope"])
        if out.get("authority"):
            check_url(out["authority"], "authority")
        return out

    @classmethod
    def key_hint(cls, key: str) -> str:
        parts = cls.credential(key)
        return f"client {parts.get('client_id', '')[:8]}…, secret …{parts.get('client_secret', '')[-3:]}"

    @classmethod
    def auth_headers(cls, key: str) -> dict[str, str]:
        return {}  # the bearer token is fetched per request (it expires)

    @classmethod
    def connect(
        cls,
        settings: Settings,
        key: str,
        *,
        base_url: str = "",
        transport: httpx.BaseTransport | None = None,
        options: Mapping[str, str] | None = None,
    ) -> AzureOpenAIProvider:
        url = base_url or settings.azure_management_url
        client = make_client(settings, base_url=url.rstrip("/") + "/", transport=transport)
        api = cls(client, settings, options)
        api._parts = cls.credential(key)
        return api

    def close(self) -> None:
        super().close()
        if self._credential is not None:
            self._credential.close()

    # -- token -----------------------------------------------------------------------------

    def _token(self) -> str:
        if self._credential is None:
            authority = self.options.get("authority") or self.settings.azure_authority_url
            loopback = httpx.URL(authority).host.startswith("127.") or httpx.URL(authority).host == "localhost"
            self._credential = ClientSecretCredential(
                self._parts["tenant_id"],
                self._parts["client_id"],
                self._parts["client_secret"],
                authority=authority,
                retry_total=0,  # the product's policy retries (collector.core.http.call)
                connection_timeout=10,
                read_timeout=self.settings.http_timeout_seconds,
                disable_instance_discovery=loopback,
            )
        credential = self._credential
        return call(lambda: self._azure(lambda: credential.get_token(TOKEN_SCOPE).token), self.settings)

    def _azure(self, fn: Callable[[], T]) -> T:
        """An azure-identity call, its errors sorted into retriable and fatal, secret masked."""
        secret = self._parts.get("client_secret", "")
        try:
            return fn()
        except ClientAuthenticationError as exc:
            status = exc.response.status_code if exc.response is not None else None
            text = redact(str(exc.message or exc)).replace(secret, "…") if secret else redact(str(exc))
            first = text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__
            # MSAL answers for the token endpoint, so the HTTP status is often lost; an
            # AADSTS code is the identity platform refusing the principal (revoked, expired).
            if (status is not None and 400 <= status < 500) or "AADSTS" in text or "invalid_client" in text:
                raise FatalAPIError(f"Microsoft Entra ID refused the service principal: {first}", status=401) from None
            raise RetriableAPIError(f"Microsoft Entra ID token request failed: {first}", status=status) from None
        except AzureError as exc:
            raise RetriableAPIError(f"Microsoft Entra ID token request failed: {type(exc).__name__}") from None

    # -- query -----------------------------------------------------------------------------

    def _post_once(self, url: str, body: Mapping[str, Any], params: Mapping[str, str] | None) -> Any:
        headers = {"Authorization": f"Bearer {self._token()}"}
        try:
            response = self.client.post(url, json=body, params=params, headers=headers)
        except httpx.TimeoutException as exc:
            raise RetriableAPIError(f"timeout talking to Azure Cost Management: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            raise RetriableAPIError(
                f"connection error talking to Azure Cost Management: {type(exc).__name__}"
            ) from None
        check(response)
        if response.status_code == 204 or not response.content:
            return {"properties": {"columns": [], "rows": []}}  # 204: no data (§5.1)
        try:
            return json.loads(response.content, parse_float=Decimal)
        except ValueError:
            raise RetriableAPIError("truncated or invalid JSON from Azure Cost Management") from None

    def _post(self, url: str, body: Mapping[str, Any], params: Mapping[str, str] | None = None) -> Any:
        return call(lambda: self._post_once(url, body, params), self.settings)

    def _scope(self) -> str:
        return self.options.get("scope", "").strip("/")

    def _services(self) -> list[str]:
        extra = [s.strip() for s in self.options.get("services", "").split(",") if s.strip()]
        return list(dict.fromkeys([*DEFAULT_SERVICES, *extra]))

    def _query(self, start: datetime, end: datetime, *, grouped: bool = True) -> dict[str, Any]:
        dataset: dict[str, Any] = {
            "granularity": "Daily" if grouped else "None",
            "aggregation": {"totalCost": {"name": "PreTaxCost", "function": "Sum"}},
            "filter": {"dimensions": {"name": "ServiceName", "operator": "In", "values": self._services()}},
        }
        if grouped:
            dataset["aggregation"]["totalQuantity"] = {"name": "UsageQuantity", "function": "Sum"}
            dataset["grouping"] = [{"type": "Dimension", "name": g} for g in GROUPING]
        return {
            "type": "ActualCost",
            "timeframe": "Custom",
            # ``to`` is inclusive: the last second of the window's last day.
            "timePeriod": {
                "from": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "to": (end - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            "dataset": dataset,
        }

    def _account(self) -> str:
        billing_account, subscription = parse_scope(self._scope())
        return self.options.get("account") or billing_account or subscription or self._scope()

    def probe(self) -> str:
        """A token, then one ungrouped query of yesterday: proves Cost Management Reader on the scope."""
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        url = f"{self._scope()}/{ENDPOINTS[0].path}"
        self._post(url, self._query(today - DAY, today, grouped=False), {"api-version": API_VERSION})
        return self._account()

    def pages(self, endpoint: Endpoint, window: Window) -> Iterator[Page]:
        """Per calendar month: the query, then POSTs to ``nextLink`` until there is none (§5.1)."""
        url = f"{self._scope()}/{endpoint.path}"
        base = self.client.base_url
        for start, end in _months(window):
            body = self._query(start, end)
            payload = self._post(url, body, {"api-version": API_VERSION})
            seen: set[str] = set()
            while True:
                nxt = str(((payload.get("properties") or {}).get("nextLink")) or "")
                yield Page(self._tagged(payload), None if nxt else end)
                if not nxt:
                    break
                link = httpx.URL(nxt)
                if (link.scheme, link.host, link.port) != (base.scheme, base.host, base.port):
                    raise ProviderError("azure query: nextLink points to another host; not sending the token there")
                if nxt in seen:
                    raise ProviderError("azure query: nextLink repeated; stopping")
                seen.add(nxt)
                payload = self._post(nxt, body)

    def _tagged(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The page plus the subscription its rows belong to (the parser is pure: it cannot know)."""
        return {**payload, "subscription": parse_scope(self._scope())[1]}


__all__ = ["ENDPOINTS", "AzureOpenAIProvider", "parse_query", "parse_scope"]
