"""AWS Bedrock spend through Cost Explorer ``GetCostAndUsage``, with ``boto3``.

Facts from provider-apis.md §6.1-§6.2. One request per sync window (every Cost Explorer call is
charged, so the window is never split and scheduled syncs ask at most every
``aws_cost_explorer_min_hours``): ``DAILY`` ``UnblendedCost`` and ``UsageQuantity``, filtered to
the Bedrock services, grouped by ``USAGE_TYPE`` and ``LINKED_ACCOUNT`` (the API allows two
groups), followed by ``NextPageToken``. The usage type names the model's billing name and the
token direction (§6.2), read by :func:`collector.core.cloud_billing.parse_usage_type` exactly as
the CUR importer reads it. ``Amount`` is a string (§10): parsed to ``Decimal``.

Days Cost Explorer still marks ``Estimated`` are re-read by every sync: the high-water mark stops
before the first of them (one request covers any number of days, so this costs nothing more).
History reaches back 13 months; older days are not asked.

boto3's own retries are turned off and every call runs under the product's retry policy
(:func:`collector.core.http.call`): throttling and 5xx are retried with the same backoff, and a
refused credential (``UnrecognizedClientException``, ``AccessDeniedException``,
``ExpiredTokenException`` ...) pauses the connection after one request. Messages carry AWS's
error code and text, never a credential.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import boto3
import botocore.config
import botocore.exceptions

from collector import __version__
from collector.core.cloud_billing import parse_usage_type, token_fields, unit_multiplier
from collector.core.http import FatalAPIError, RetriableAPIError, call
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
    details,
    to_decimal,
)

NAME = "aws_bedrock"
T = TypeVar("T")
#: The Bedrock service as Cost Explorer names it; Marketplace-sold models ("Claude Sonnet 4.5
#: (Amazon Bedrock Edition)", §6.2) are services of their own, added with the ``services`` setting.
DEFAULT_SERVICES = ("Amazon Bedrock",)
METRICS = ("UnblendedCost", "UsageQuantity")
GROUP_BY = ("USAGE_TYPE", "LINKED_ACCOUNT")
HISTORY_MONTHS = 13
_AUTH_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredTokenException",
        "ExpiredToken",
        "AccessDeniedException",
        "AccessDenied",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "IncompleteSignature",
        "MissingAuthenticationToken",
    }
)
_THROTTLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "LimitExceededException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalServerError",
        "InternalFailure",
    }
)
_ACCOUNT = re.compile(r"^\d{12}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_KEY_ID = re.compile(r"^[A-Z0-9]{16,128}$")


def _day(value: Any, what: str) -> datetime:
    try:
        return datetime.strptime(str(value), "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ProviderError(f"aws {what}: expected YYYY-MM-DD, got {str(value)[:40]!r}") from None


def _metric(metrics: Mapping[str, Any], name: str) -> tuple[Decimal, str]:
    m = metrics.get(name) or {}
    return to_decimal(m.get("Amount", "0"), f"{name}.Amount"), str(m.get("Unit") or "")


def _tokens(usage_type: str, quantity: Decimal, unit: str) -> tuple[int, int, int, int, int] | None:
    """Token fields for a usage type's quantity, or None when it does not count tokens (§6.2)."""
    ut = parse_usage_type(usage_type)
    if not ut.direction or quantity < 0:
        return None
    mult = unit_multiplier(unit)[0] if unit and unit.upper() != "N/A" else 1
    count = quantity * mult
    if count != count.to_integral_value():
        return None
    return token_fields(ut.direction, int(count), usage_type)


def parse_cost_and_usage(payload: Mapping[str, Any], ctx: Context) -> list[UsageRecord]:
    """Billed rows from one ``GetCostAndUsage`` page grouped by usage type and linked account (§6.1).

    The payer account is the connection's (the CUR's ``bill_payer_account_id``), the linked
    account is the project, exactly as the CUR importer files them, so the two bill the same
    account-days and precedence can pick one. Credits and refunds are netted into their usage
    type by Cost Explorer, as the CUR's own credit lines net out in a sum.
    """
    records = []
    for result in payload.get("ResultsByTime") or ():
        period = result.get("TimePeriod") or {}
        start, end = _day(period.get("Start"), "TimePeriod.Start"), _day(period.get("End"), "TimePeriod.End")
        extra = {"estimated": True} if result.get("Estimated") else {}
        for group in result.get("Groups") or ():
            keys = [str(k) for k in group.get("Keys") or ()]
            usage_type = keys[0] if keys else ""
            linked = keys[1] if len(keys) > 1 else ""
            metrics = group.get("Metrics") or {}
            cost, currency = _metric(metrics, "UnblendedCost")
            quantity, unit = _metric(metrics, "UsageQuantity")
            ut = parse_usage_type(usage_type)
            tokens = _tokens(usage_type, quantity, unit)
            records.append(
                UsageRecord(
                    provider=NAME,
                    source=SOURCE,
                    kind="cost_explorer",
                    bucket_start=start,
                    bucket_end=end,
                    account=ctx.account,
                    project=linked,
                    model=ut.model,
                    service_tier=ut.tier if ut.tier != "batch" else "",
                    batch=ut.tier == "batch",
                    line_item=usage_type[:512],
                    input_tokens=tokens[0] if tokens else 0,
                    cache_read_tokens=tokens[1] if tokens else 0,
                    cache_write_5m_tokens=tokens[2] if tokens else 0,
                    cache_write_1h_tokens=tokens[3] if tokens else 0,
                    output_tokens=tokens[4] if tokens else 0,
                    quantity=Decimal(0) if tokens or not quantity else quantity,
                    quantity_unit="" if tokens or not quantity else (unit.lower() or "units")[:32],
                    cost=cost,
                    currency=(currency or "USD").upper(),
                    basis="billed",
                    source_ref=ctx.source_ref,
                    details=details(extra, frozenset()),
                )
            )
    return records


#: Cost Explorer "refreshes your cost data at least once every 24 hours" and AI services can lag
#: more (provider-apis.md §6.1, 24-48 h): a day is complete two days after it ends.
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("cost_explorer", "GetCostAndUsage", DAY, 1, "cost", parse_cost_and_usage, delay=2 * DAY),
)


def aws_call(fn: Callable[[], T]) -> T:
    """One boto3 call, its errors sorted into the product's retriable and fatal kinds."""
    try:
        return fn()
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error") or {}
        code = str(error.get("Code") or "")
        status = int((exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 400)
        message = f"AWS {code or 'error'} (HTTP {status}): {str(error.get('Message') or '')[:300]}"
        if code in _THROTTLE_CODES or status == 429 or status >= 500:
            raise RetriableAPIError(message, status=status) from None
        if code in _AUTH_CODES or status in (401, 403):
            raise FatalAPIError(message, status=403) from None
        raise FatalAPIError(message, status=status if 400 <= status < 500 else 400) from None
    except (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError) as exc:
        raise FatalAPIError(f"AWS credentials incomplete: {type(exc).__name__}", status=401) from None
    except (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError) as exc:
        raise RetriableAPIError(f"connection error talking to AWS: {type(exc).__name__}") from None


def _complete(page: dict[str, Any]) -> dict[str, Any]:
    """The page, if it is one.

    botocore turns a truncated JSON body into ``{"message": ...}`` instead of failing, which
    would read as a window without costs.
    """
    if not isinstance(page.get("ResultsByTime"), list):
        raise RetriableAPIError("truncated or invalid answer from Cost Explorer (no ResultsByTime)")
    return page


def _horizon(now: datetime) -> datetime:
    """The first day Cost Explorer still serves: the first of the month 12 months back (13 months)."""
    month = now.year * 12 + now.month - 1 - (HISTORY_MONTHS - 1)
    return datetime(month // 12, month % 12 + 1, 1, tzinfo=UTC)


class AwsBedrockProvider(Provider):
    """Amazon Bedrock spend per day, usage type and linked account, from Cost Explorer."""

    name = NAME
    title = "AWS Bedrock (Cost Explorer)"
    aliases = ("aws",)
    admin_key_prefixes = ()
    key_help = (
        "AWS credentials need an access key pair, or a role ARN to assume, with ce:GetCostAndUsage "
        "(and sts:GetCallerIdentity, sts:AssumeRole for a role)"
    )
    base_url_setting = "aws_cost_explorer_url"
    endpoints = ENDPOINTS
    fields = (
        ConnField("access_key_id", "Access key id", secret=True, required=False, help="An IAM user's key id."),
        ConnField("secret_access_key", "Secret access key", secret=True, required=False),
        ConnField(
            "role_arn",
            "Role ARN to assume",
            required=False,
            help="Assumed with the key pair above, or with the collector's own AWS identity when none is given.",
        ),
        ConnField("external_id", "External id of the role", secret=True, required=False),
        ConnField(
            "account",
            "Payer account id",
            vault=False,
            required=False,
            help="The bill_payer_account_id of your CUR files; default: the credentials' own account.",
        ),
        ConnField("region", "Region", vault=False, required=False, help="Cost Explorer's region (us-east-1)."),
        ConnField(
            "services",
            "Extra services",
            vault=False,
            required=False,
            help="Comma-separated Cost Explorer services besides Amazon Bedrock, e.g. Marketplace models.",
        ),
        ConnField("sts_url", "STS endpoint", vault=False, required=False, help="Only for private endpoints."),
    )

    def __init__(
        self,
        settings: Settings,
        options: Mapping[str, str] | None,
        credential: Mapping[str, str],
        endpoint_url: str,
    ) -> None:
        self.settings = settings
        self.options = dict(options or {})
        self._credential = dict(credential)
        self._endpoint_url = endpoint_url
        self._config = botocore.config.Config(
            retries={"total_max_attempts": 1},  # the product's policy retries (collector.core.http.call)
            connect_timeout=10,
            read_timeout=settings.http_timeout_seconds,
            user_agent_extra=f"llm-usage-collector/{__version__}",
        )
        self._ce: Any = None
        self._sts: Any = None

    # -- credentials and settings ------------------------------------------------------------

    @classmethod
    def check_credential(cls, parts: Mapping[str, str]) -> None:
        key_id, secret, role = parts.get("access_key_id", ""), parts.get("secret_access_key", ""), parts.get("role_arn")
        if bool(key_id) != bool(secret):
            raise KeyFormatError("an AWS access key needs both its id and its secret")
        if not key_id and not role:
            raise KeyFormatError(cls.key_help)
        if key_id and not _KEY_ID.match(key_id):
            raise KeyFormatError("the AWS access key id should be 16+ upper-case letters and digits (AKIA...)")
        if secret and (len(secret) < 16 or any(c.isspace() for c in secret)):
            raise KeyFormatError("the AWS secret access key looks truncated or contains whitespace")
        if role and not _ROLE_ARN.match(role):
            raise KeyFormatError("the role ARN should look like arn:aws:iam::123456789012:role/name")

    @classmethod
    def check_options(cls, options: Mapping[str, str]) -> dict[str, str]:
        out = super().check_options(options)
        if out.get("account") and not _ACCOUNT.match(out["account"]):
            raise KeyFormatError("account: an AWS account id is 12 digits")
        if out.get("region") and not _REGION.match(out["region"]):
            raise KeyFormatError("region: an AWS region looks like us-east-1")
        if out.get("sts_url"):
            check_url(out["sts_url"], "sts_url")
        return out

    @classmethod
    def key_hint(cls, key: str) -> str:
        parts = cls.credential(key)
        shown = []
        if parts.get("access_key_id"):
            key_id = parts["access_key_id"]
            shown.append(f"{key_id[:4]}…{key_id[-3:]}")
        if parts.get("role_arn"):
            shown.append("role " + parts["role_arn"].rsplit("/", 1)[-1][:40])
        return ", ".join(shown)[:64]

    # -- clients -------------------------------------------------------------------------------

    @classmethod
    def auth_headers(cls, key: str) -> dict[str, str]:
        return {}  # boto3 signs every request itself (SigV4)

    @classmethod
    def connect(
        cls,
        settings: Settings,
        key: str,
        *,
        base_url: str = "",
        transport: Any = None,
        options: Mapping[str, str] | None = None,
    ) -> AwsBedrockProvider:
        """A provider whose boto3 clients are made on first use (no request here)."""
        return cls(settings, options, cls.credential(key), base_url or settings.aws_cost_explorer_url)

    def close(self) -> None:
        """Drop the clients (boto3 pools close with them)."""
        self._ce = None

    def min_interval(self, endpoint: Endpoint) -> timedelta | None:
        """Every Cost Explorer call is charged (§6.1): scheduled syncs ask at most this often."""
        return timedelta(hours=self.settings.aws_cost_explorer_min_hours)

    def _session(self) -> Any:
        region = self.options.get("region") or "us-east-1"
        c = self._credential
        session = boto3.session.Session(
            aws_access_key_id=c.get("access_key_id") or None,
            aws_secret_access_key=c.get("secret_access_key") or None,
            region_name=region,
        )
        if not c.get("role_arn"):
            return session
        sts = session.client("sts", endpoint_url=self.options.get("sts_url") or None, config=self._config)
        extra = {"ExternalId": c["external_id"]} if c.get("external_id") else {}
        assumed = call(
            lambda: aws_call(
                lambda: sts.assume_role(RoleArn=c["role_arn"], RoleSessionName="llm-usage-collector", **extra)
            ),
            self.settings,
        )
        creds = assumed["Credentials"]
        return boto3.session.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name=region,
        )

    def _client(self) -> Any:
        if self._ce is None:
            session = self._session()
            self._ce = session.client("ce", endpoint_url=self._endpoint_url or None, config=self._config)
            self._sts = session.client("sts", endpoint_url=self.options.get("sts_url") or None, config=self._config)
        return self._ce

    def _filter(self) -> dict[str, Any]:
        extra = [s.strip() for s in self.options.get("services", "").split(",") if s.strip()]
        services = list(dict.fromkeys([*DEFAULT_SERVICES, *extra]))
        return {"Dimensions": {"Key": "SERVICE", "Values": services}}

    # -- the contract --------------------------------------------------------------------------

    def probe(self) -> str:
        """The payer account (setting, else ``sts:GetCallerIdentity``, free) and one Cost Explorer call.

        The Cost Explorer call (yesterday, no grouping) proves ``ce:GetCostAndUsage`` is granted;
        it is charged like any other (§6.1).
        """
        ce = self._client()
        account = self.options.get("account") or ""
        if not account:
            identity = call(lambda: aws_call(self._sts.get_caller_identity), self.settings)
            account = str(identity.get("Account") or "")
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        period = {"Start": (today - DAY).strftime("%Y-%m-%d"), "End": today.strftime("%Y-%m-%d")}
        call(
            lambda: aws_call(
                lambda: ce.get_cost_and_usage(
                    TimePeriod=period, Granularity="DAILY", Metrics=["UnblendedCost"], Filter=self._filter()
                )
            ),
            self.settings,
        )
        return account

    def pages(self, endpoint: Endpoint, window: Window) -> Iterator[Page]:
        """One ``GetCostAndUsage`` for the whole window, then its ``NextPageToken`` pages."""
        start = max(window.start, _horizon(datetime.now(UTC)))
        if start >= window.end:
            return
        ce = self._client()
        request: dict[str, Any] = {
            "TimePeriod": {"Start": start.strftime("%Y-%m-%d"), "End": window.end.strftime("%Y-%m-%d")},
            "Granularity": "DAILY",
            "Metrics": list(METRICS),
            "Filter": self._filter(),
            "GroupBy": [{"Type": "DIMENSION", "Key": k} for k in GROUP_BY],
        }
        seen: set[str] = set()
        estimated_from: datetime | None = None
        while True:
            page = call(lambda: aws_call(lambda: _complete(ce.get_cost_and_usage(**request))), self.settings)
            results = page.get("ResultsByTime") or []
            for r in results:
                if r.get("Estimated"):
                    day = _day((r.get("TimePeriod") or {}).get("Start"), "TimePeriod.Start")
                    estimated_from = day if estimated_from is None else min(estimated_from, day)
            token = page.get("NextPageToken")
            if token:
                # The last day on this page may continue on the next one.
                last = _day((results[-1].get("TimePeriod") or {}).get("Start"), "TimePeriod.Start") if results else None
                through = last
            else:
                through = window.end
            if through is not None and estimated_from is not None:
                through = min(through, estimated_from)  # estimated days are read again next sync
            yield Page(page, through)
            if not token:
                return
            if token in seen:
                raise ProviderError("aws cost explorer: NextPageToken repeated; stopping")
            seen.add(token)
            request["NextPageToken"] = token


__all__ = ["ENDPOINTS", "AwsBedrockProvider", "aws_call", "parse_cost_and_usage"]
