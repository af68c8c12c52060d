"""Fake cloud billing APIs on 127.0.0.1: OpenRouter, xAI, AWS Cost Explorer + STS, Azure, BigQuery.

One ASGI app serves every provider under its own path prefix, from one :class:`~tests.fakes.cloud_bills.Bills`:

* ``/openrouter/api/v1/{activity,credits}`` (provider-apis.md §7.1, §7.4): one UTC day per
  ``date``, the last 30 completed days only;
* ``/xai/...`` (§4.1): key validation, the usage time series (``limitReached`` when a request
  spans more than ``xai_limit_days``), prepaid balance, invoice preview;
* ``POST /`` with ``X-Amz-Target: AWSInsightsIndexService.GetCostAndUsage`` (AWS JSON 1.1, §6.1)
  or an STS ``Action`` form (query protocol, XML): ``ce_page_days`` days per page, then a
  ``NextPageToken``; days from ``aws_estimated_from`` on are ``Estimated``;
* ``/azure/{scope}/providers/Microsoft.CostManagement/query`` (§5.1): ``azure_page_rows`` rows
  per page, then a ``nextLink`` back to this server; the bearer token must be the one the fake
  authority (:class:`AuthorityServer`, TLS, for ``azure-identity``) issued;
* ``/google/token`` (service-account JWT exchange) and ``/bigquery/v2/...`` (jobs.query,
  getQueryResults, jobs.get, jobs.insert for dry runs): ``bq_page_rows`` rows per page.

Faults come from :class:`tests.fakes.admin_api.Faults` (429/500/timeout/truncated shares, a
revoked credential, latency); each provider answers them in its own wire format (AWS's
``__type`` codes, Google's ``errors[].reason``, Azure's ``x-ms-ratelimit-*`` headers).
``requests`` counts what each provider was asked.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import trustme
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes.admin_api import Faults
from tests.fakes.cloud_bills import (
    AWS_PAYER,
    AZURE_SUBSCRIPTION,
    DAY,
    XAI_TEAM,
    Bills,
    azure_rows,
    ce_results,
    gcp_rows,
)

HOST = "127.0.0.1"
ISSUED_TOKEN = "fake-entra-access-token"
GOOGLE_TOKEN = "ya29.fake-google-token"
BQ_FIELDS = (
    ("billing_account_id", "STRING"), ("day", "STRING"), ("project_id", "STRING"), ("service", "STRING"),
    ("sku_id", "STRING"), ("sku", "STRING"), ("unit", "STRING"), ("cost_type", "STRING"), ("currency", "STRING"),
    ("cost", "NUMERIC"), ("credits", "NUMERIC"), ("usage_amount", "NUMERIC"),
)  # fmt: skip


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    raw = json.dumps(body, default=str, separators=(",", ":"))
    return Response(raw, status, headers=headers, media_type="application/json")


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o{offset}".encode()).decode()


def _untoken(value: str | None) -> int:
    return int(base64.urlsafe_b64decode(value.encode()).decode()[1:]) if value else 0


def _day(text: str) -> datetime:
    return datetime.fromisoformat(text[:10]).replace(tzinfo=UTC)


class FakeCloudAPI:
    """The app, its bills, knobs, faults and counters."""

    def __init__(self, bills: Bills) -> None:
        self.bills = bills
        self.faults = Faults()
        self.requests: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.revoked: set[str] = set()  # providers whose credential is revoked
        self.forbidden: set[str] = set()  # providers whose credential lost its permission (403)
        self.ce_page_days = 7
        self.aws_estimated_from = bills.first + bills.days * DAY
        self.azure_page_rows = 20
        self.bq_page_rows = 25
        self.xai_limit_days = 10
        self.base_url = ""
        self.ce_requests: list[dict] = []
        self.bq_queries: list[dict] = []
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/", self.aws, methods=["POST"]),
                Route("/openrouter/api/v1/activity", self.openrouter_activity),
                Route("/openrouter/api/v1/credits", self.openrouter_credits),
                Route("/xai/auth/management-keys/validation", self.xai_validation),
                Route("/xai/v1/billing/teams/{team}/usage", self.xai_usage, methods=["POST"]),
                Route("/xai/v1/billing/teams/{team}/prepaid/balance", self.xai_balance),
                Route("/xai/v1/billing/teams/{team}/postpaid/invoice/preview", self.xai_invoice),
                Route(
                    "/azure/{scope:path}/providers/Microsoft.CostManagement/query", self.azure_query, methods=["POST"]
                ),
                Route("/google/token", self.google_token, methods=["POST"]),
                Route("/bigquery/v2/projects/{project}/queries", self.bq_query, methods=["POST"]),
                Route("/bigquery/v2/projects/{project}/queries/{job}", self.bq_results),
                Route("/bigquery/v2/projects/{project}/jobs", self.bq_insert, methods=["POST"]),
                Route("/bigquery/v2/projects/{project}/jobs/{job}", self.bq_job),
            ]
        )

    # -- plumbing -------------------------------------------------------------------------------

    def _count(self, provider: str) -> None:
        with self._lock:
            self.requests[provider] += 1
            self.requests["total"] += 1

    def _status(self, response: Response) -> Response:
        with self._lock:
            self.statuses[response.status_code] += 1
        return response

    async def _fault(self, provider: str) -> str | None:
        """The transient fault to answer with, if any ('429', '500', 'truncated'); sleeps for timeouts."""
        f = self.faults
        if f.latency:
            await asyncio.sleep(f.latency)
        if f.transient_rate and f.rng.random() < f.transient_rate:
            kind = f.rng.choice(f.transient_kinds)
            if kind == "timeout":
                await asyncio.sleep(f.timeout_sleep)
                return None
            return kind
        return None

    def _body(self, payload: Any, fault: str | None) -> Response:
        raw = json.dumps(payload, default=str, separators=(",", ":")).encode()
        if fault == "truncated":
            raw = raw[: len(raw) // 2]
        return self._status(Response(raw, 200, media_type="application/json"))

    async def _generic_gate(self, provider: str, request: Request) -> tuple[Response | None, str | None]:
        self._count(provider)
        if provider in self.revoked:
            return self._status(_json({"error": {"code": 401, "message": "Invalid credentials"}}, 401)), None
        if provider in self.forbidden:
            return self._status(_json({"error": {"code": 403, "message": "Forbidden"}}, 403)), None
        fault = await self._fault(provider)
        if fault == "429":
            return self._status(_json({"error": {"message": "Rate limit exceeded"}}, 429, {"Retry-After": "0"})), None
        if fault == "500":
            return self._status(_json({"error": {"message": "Internal error"}}, 500)), None
        return None, fault

    # -- OpenRouter (§7) ----------------------------------------------------------------------------

    async def openrouter_activity(self, request: Request) -> Response:
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        gate, fault = await self._generic_gate("openrouter", request)
        if gate is not None:
            return gate
        if "inference" in key:
            return self._status(
                _json({"error": {"code": 403, "message": "Only management keys can perform this operation"}}, 403)
            )
        date = request.query_params.get("date")
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        items = [
            r for r in self.bills.openrouter
            if (date is None or r["date"] == date) and today - timedelta(days=30) <= _day(r["date"]) < today
        ]  # fmt: skip
        return self._body({"data": items}, fault)

    async def openrouter_credits(self, request: Request) -> Response:
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        gate, fault = await self._generic_gate("openrouter", request)
        if gate is not None:
            return gate
        if "inference" in key:
            return self._status(
                _json({"error": {"code": 403, "message": "Only management keys can perform this operation"}}, 403)
            )
        return self._body({"data": {"total_credits": 100.5, "total_usage": 25.75}}, fault)

    # -- xAI (§4.1) ----------------------------------------------------------------------------------

    async def xai_validation(self, request: Request) -> Response:
        gate, fault = await self._generic_gate("xai", request)
        return gate or self._body({"scope": "SCOPE_TEAM", "scopeId": XAI_TEAM}, fault)

    async def xai_usage(self, request: Request) -> Response:
        gate, fault = await self._generic_gate("xai", request)
        if gate is not None:
            return gate
        if request.path_params["team"] != XAI_TEAM:
            return self._status(_json({"error": {"message": "team not found"}}, 404))
        body = (await request.json())["analyticsRequest"]
        rng = body["timeRange"]
        start = datetime.strptime(rng["startTime"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        end = datetime.strptime(rng["endTime"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        if (end - start) > timedelta(days=self.xai_limit_days):
            return self._body({"limitReached": True, "timeSeries": []}, fault)
        series = []
        for desc, points in self.bills.xai.items():
            data = [
                {"timestamp": d.strftime("%Y-%m-%dT%H:%M:%SZ"), "values": [str(v)]}
                for d, v in points
                if start <= d < end
            ]
            if data:
                series.append({"group": [desc], "groupLabels": [desc], "dataPoints": data})
        return self._body({"limitReached": False, "timeSeries": series}, fault)

    async def xai_balance(self, request: Request) -> Response:
        gate, fault = await self._generic_gate("xai", request)
        return gate or self._body({"changes": [], "total": {"val": "-799"}}, fault)

    async def xai_invoice(self, request: Request) -> Response:
        gate, fault = await self._generic_gate("xai", request)
        return gate or self._body({"coreInvoice": {"totalWithCorr": {"val": "1234"}}, "billingCycle": {}}, fault)

    # -- AWS Cost Explorer (JSON 1.1) and STS (query protocol) (§6.1) ------------------------------

    def _aws_error(self, code: str, message: str, status: int = 400, *, xml: bool = False) -> Response:
        if xml:
            body = (
                '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
                f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>r-1</RequestId></ErrorResponse>"
            )
            return self._status(Response(body, status, media_type="text/xml"))
        return self._status(_json({"__type": code, "message": message}, status))

    async def aws(self, request: Request) -> Response:
        target = request.headers.get("x-amz-target", "")
        sts = not target
        self._count("aws_sts" if sts else "aws")
        auth = request.headers.get("authorization", "")
        if "aws" in self.revoked:
            return self._aws_error(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
                xml=sts,
                status=403 if sts else 400,
            )
        if "aws" in self.forbidden and not sts:
            return self._aws_error("AccessDeniedException", "User is not authorized to perform: ce:GetCostAndUsage")
        if "Credential=" not in auth:
            return self._aws_error("MissingAuthenticationTokenException", "Missing Authentication Token", xml=sts)
        fault = await self._fault("aws")
        if fault == "429":
            return self._aws_error("ThrottlingException", "Rate exceeded", xml=sts)
        if fault == "500":
            return self._aws_error("InternalServerError", "Internal error", 500, xml=sts)
        if sts:
            form = parse_qs((await request.body()).decode())
            return self._sts(form.get("Action", [""])[0])
        body = json.loads(await request.body())
        self.ce_requests.append(body)
        start, end = _day(body["TimePeriod"]["Start"]), _day(body["TimePeriod"]["End"])
        services = set(body["Filter"]["Dimensions"]["Values"])
        offset = _untoken(body.get("NextPageToken"))
        page_start = start + offset * DAY
        page_end = min(end, page_start + self.ce_page_days * DAY)
        results = ce_results(self.bills.aws, page_start, page_end, services, self.aws_estimated_from)
        out: dict[str, Any] = {
            "GroupDefinitions": [{"Type": "DIMENSION", "Key": g["Key"]} for g in body.get("GroupBy", [])],
            "ResultsByTime": results,
            "DimensionValueAttributes": [],
        }
        if page_end < end:
            out["NextPageToken"] = _token(offset + self.ce_page_days)
        raw = json.dumps(out, separators=(",", ":")).encode()
        if fault == "truncated":
            raw = raw[: len(raw) // 2]
        return self._status(Response(raw, 200, media_type="application/x-amz-json-1.1"))

    def _sts(self, action: str) -> Response:
        ns = 'xmlns="https://sts.amazonaws.com/doc/2011-06-15/"'
        if action == "GetCallerIdentity":
            body = (
                f"<GetCallerIdentityResponse {ns}><GetCallerIdentityResult>"
                f"<Arn>arn:aws:iam::{AWS_PAYER}:user/billing</Arn><UserId>AIDAFAKE</UserId>"
                f"<Account>{AWS_PAYER}</Account></GetCallerIdentityResult>"
                "<ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
            )
        elif action == "AssumeRole":
            body = (
                f"<AssumeRoleResponse {ns}><AssumeRoleResult><Credentials>"
                "<AccessKeyId>ASIAFAKEASSUMED00001</AccessKeyId><SecretAccessKey>assumedSecretFake0000000000000000000000</SecretAccessKey>"
                "<SessionToken>assumed-session-token</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration>"
                "</Credentials><AssumedRoleUser><Arn>arn:aws:sts::999988887777:assumed-role/billing/llm-usage-collector</Arn>"
                "<AssumedRoleId>AROAFAKE:llm-usage-collector</AssumedRoleId></AssumedRoleUser></AssumeRoleResult>"
                "<ResponseMetadata><RequestId>r-2</RequestId></ResponseMetadata></AssumeRoleResponse>"
            )
        else:
            return self._aws_error("InvalidAction", f"unknown action {action}", xml=True)
        return self._status(Response(body, 200, media_type="text/xml"))

    # -- Azure Cost Management (§5.1) ---------------------------------------------------------------

    async def azure_query(self, request: Request) -> Response:
        self._count("azure")
        if request.headers.get("authorization") != f"Bearer {ISSUED_TOKEN}" or "azure" in self.revoked:
            return self._status(
                _json({"error": {"code": "AuthenticationFailed", "message": "Authentication failed."}}, 401)
            )
        if "azure" in self.forbidden:
            message = (
                "The client does not have authorization to perform action 'Microsoft.CostManagement/query/action'."
            )
            return self._status(_json({"error": {"code": "AuthorizationFailed", "message": message}}, 403))
        fault = await self._fault("azure")
        if fault == "429":
            headers = {"x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after": "0"}
            return self._status(_json({"error": {"code": "429", "message": "Too many requests."}}, 429, headers))
        if fault == "500":
            return self._status(_json({"error": {"code": "InternalServerError", "message": "oops"}}, 500))
        body = await request.json()
        start = _day(body["timePeriod"]["from"])
        end = _day(body["timePeriod"]["to"]) + DAY
        services = set(body["dataset"]["filter"]["dimensions"]["values"])
        if request.path_params["scope"] != f"subscriptions/{AZURE_SUBSCRIPTION}":
            return self._status(_json({"error": {"code": "BadRequest", "message": "scope not found"}}, 404))
        rows = azure_rows(self.bills.azure, start, end, services)
        if "grouping" not in body["dataset"]:
            total = sum((r[0] for r in rows), Decimal(0))
            return self._body(
                {
                    "properties": {
                        "nextLink": None,
                        "columns": [{"name": "PreTaxCost", "type": "Number"}, {"name": "Currency", "type": "String"}],
                        "rows": [[total, "EUR"]],
                    }
                },
                fault,
            )
        offset = int(request.query_params.get("$skiptoken") or 0)
        page = rows[offset : offset + self.azure_page_rows]
        nxt = None
        if offset + self.azure_page_rows < len(rows):
            nxt = f"{self.base_url}{request.url.path}?api-version=2023-11-01&$skiptoken={offset + self.azure_page_rows}"
        columns = [
            {"name": "PreTaxCost", "type": "Number"},
            {"name": "UsageQuantity", "type": "Number"},
            {"name": "UsageDate", "type": "Number"},
            {"name": "MeterSubcategory", "type": "String"},
            {"name": "Meter", "type": "String"},
            {"name": "Currency", "type": "String"},
        ]
        return self._body(
            {
                "id": "q",
                "name": "q",
                "type": "microsoft.costmanagement/Query",
                "properties": {"nextLink": nxt, "columns": columns, "rows": page},
            },
            fault,
        )

    # -- Google: token and BigQuery (§3.2) ------------------------------------------------------------

    async def google_token(self, request: Request) -> Response:
        self._count("google_token")
        form = parse_qs((await request.body()).decode())
        if "google" in self.revoked or "assertion" not in form:
            return self._status(_json({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, 400))
        return self._status(_json({"access_token": GOOGLE_TOKEN, "expires_in": 3600, "token_type": "Bearer"}))

    async def _bq_gate(self) -> tuple[Response | None, str | None]:
        self._count("google")
        if "google" in self.forbidden:
            return self._status(
                _json(
                    {
                        "error": {
                            "code": 403,
                            "message": "Access Denied: Table: User does not have permission",
                            "errors": [{"reason": "accessDenied"}],
                        }
                    },
                    403,
                )
            ), None
        fault = await self._fault("google")
        if fault == "429":
            return self._status(
                _json(
                    {
                        "error": {
                            "code": 429,
                            "message": "Exceeded rate limits",
                            "errors": [{"reason": "rateLimitExceeded"}],
                        }
                    },
                    429,
                )
            ), None
        if fault == "500":
            return self._status(
                _json({"error": {"code": 500, "message": "backend error", "errors": [{"reason": "backendError"}]}}, 500)
            ), None
        return None, fault

    def _bq_rows(self, params: dict[str, Any]) -> list[dict]:
        start = datetime.fromisoformat(params["start"]).astimezone(UTC)
        end = datetime.fromisoformat(params["end"]).astimezone(UTC)
        return gcp_rows(self.bills.gcp, start, end, set(params["services"]))

    def _bq_page(self, project: str, job: str, rows: list[dict], offset: int) -> dict:
        page = rows[offset : offset + self.bq_page_rows]
        out: dict[str, Any] = {
            "kind": "bigquery#getQueryResultsResponse",
            "schema": {"fields": [{"name": n, "type": t, "mode": "NULLABLE"} for n, t in BQ_FIELDS]},
            "jobReference": {"projectId": project, "jobId": job, "location": "US"},
            "totalRows": str(len(rows)),
            "rows": [{"f": [{"v": None if r[n] is None else str(r[n])} for n, _ in BQ_FIELDS]} for r in page],
            "jobComplete": True,
            "totalBytesProcessed": "1048576",
        }
        if offset + self.bq_page_rows < len(rows):
            out["pageToken"] = _token(offset + self.bq_page_rows)
        return out

    async def bq_query(self, request: Request) -> Response:
        gate, fault = await self._bq_gate()
        if gate is not None:
            return gate
        if request.headers.get("authorization") != f"Bearer {GOOGLE_TOKEN}":
            return self._status(
                _json({"error": {"code": 401, "message": "Request had invalid authentication credentials."}}, 401)
            )
        body = await request.json()
        params = {}
        for p in body.get("queryParameters", []):
            value = p["parameterValue"]
            params[p["name"]] = [v["value"] for v in value["arrayValues"]] if "arrayValues" in value else value["value"]
        with self._lock:
            self.bq_queries.append({"query": body["query"], "params": params})
            job = f"job_{len(self.bq_queries)}"
        return self._body(self._bq_page(request.path_params["project"], job, self._bq_rows(params), 0), fault)

    async def bq_results(self, request: Request) -> Response:
        gate, fault = await self._bq_gate()
        if gate is not None:
            return gate
        job = request.path_params["job"]
        params = self.bq_queries[int(job.split("_")[1]) - 1]["params"]
        q = request.query_params
        offset = _untoken(q.get("pageToken")) if q.get("pageToken") else int(q.get("startIndex") or 0)
        out = self._bq_page(request.path_params["project"], job, self._bq_rows(params), offset)
        if q.get("maxResults") == "0":
            out["rows"], out.pop("pageToken", None)
        return self._body(out, fault)

    async def bq_job(self, request: Request) -> Response:
        gate, fault = await self._bq_gate()
        if gate is not None:
            return gate
        project, job = request.path_params["project"], request.path_params["job"]
        return self._body(
            {
                "kind": "bigquery#job",
                "id": f"{project}:US.{job}",
                "jobReference": {"projectId": project, "jobId": job, "location": "US"},
                "status": {"state": "DONE"},
                "configuration": {
                    "query": {
                        "query": "SELECT 1",
                        "destinationTable": {"projectId": project, "datasetId": "_anon", "tableId": job},
                    }
                },
                "statistics": {"query": {"totalBytesProcessed": "1048576"}},
            },
            fault,
        )

    async def bq_insert(self, request: Request) -> Response:
        gate, fault = await self._bq_gate()
        if gate is not None:
            return gate
        if request.headers.get("authorization") != f"Bearer {GOOGLE_TOKEN}":
            return self._status(
                _json({"error": {"code": 401, "message": "Request had invalid authentication credentials."}}, 401)
            )
        body = await request.json()
        project = request.path_params["project"]
        ref = body.get("jobReference") or {"projectId": project, "jobId": "dry"}
        return self._body(
            {
                "kind": "bigquery#job",
                "jobReference": ref,
                "configuration": body.get("configuration", {}),
                "status": {"state": "DONE"},
                "statistics": {"totalBytesProcessed": "1048576", "query": {"totalBytesProcessed": "1048576"}},
            },
            fault,
        )


class ServerThread:
    """Runs an ASGI app under uvicorn on 127.0.0.1 (optionally TLS) in a background thread."""

    def __init__(self, app: Any, *, ssl_files: tuple[str, str] | None = None) -> None:
        kwargs: dict[str, Any] = {}
        if ssl_files:
            kwargs = {"ssl_certfile": ssl_files[0], "ssl_keyfile": ssl_files[1]}
        config = uvicorn.Config(app, host=HOST, port=0, log_level="warning", lifespan="off", access_log=False, **kwargs)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.scheme = "https" if ssl_files else "http"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake server did not start")
            time.sleep(0.01)
        return self

    @property
    def url(self) -> str:
        port = int(self.server.servers[0].sockets[0].getsockname()[1])
        return f"{self.scheme}://{HOST}:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        # A client that keeps its connection alive (azure-identity's does) would otherwise hold
        # uvicorn's graceful shutdown until the join times out: the test is over, close them.
        self.server.force_exit = True
        self.thread.join(timeout=10)


class FakeAuthority:
    """Microsoft Entra ID's OpenID discovery and token endpoints, as azure-identity (MSAL) calls them."""

    def __init__(self, api: FakeCloudAPI) -> None:
        self.api = api
        self.url = ""
        self.app = Starlette(
            routes=[
                Route("/{tenant}/v2.0/.well-known/openid-configuration", self.discovery),
                Route("/{tenant}/oauth2/v2.0/token", self.token, methods=["POST"]),
            ]
        )

    async def discovery(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        base = f"{self.url}/{tenant}"
        return _json(
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "issuer": f"{base}/v2.0",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            }
        )

    async def token(self, request: Request) -> Response:
        self.api._count("azure_token")
        form = parse_qs((await request.body()).decode())
        if "azure" in self.api.revoked or form.get("client_secret", [""])[0].startswith("revoked"):
            message = "AADSTS7000215: Invalid client secret provided. Use the secret value."
            return _json({"error": "invalid_client", "error_description": message, "error_codes": [7000215]}, 401)
        return _json({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": ISSUED_TOKEN})


class CloudFakes:
    """Both servers (the APIs over http, the Azure authority over TLS) and the CA the authority uses."""

    def __init__(self, bills: Bills, tmp: Path) -> None:
        self.api = FakeCloudAPI(bills)
        self.ca = trustme.CA()
        cert = self.ca.issue_cert(HOST)
        self.ca_file = str(tmp / "fake-ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_file)
        cert_file, key_file = str(tmp / "fake-cert.pem"), str(tmp / "fake-key.pem")
        cert.cert_chain_pems[0].write_to_path(cert_file)
        cert.private_key_pem.write_to_path(key_file)
        self.authority = FakeAuthority(self.api)
        self._http = ServerThread(self.api.app)
        self._tls = ServerThread(self.authority.app, ssl_files=(cert_file, key_file))

    def start(self) -> CloudFakes:
        self._http.start()
        self._tls.start()
        self.api.base_url = self._http.url
        self.authority.url = self._tls.url
        return self

    def stop(self) -> None:
        self._http.stop()
        self._tls.stop()

    @property
    def url(self) -> str:
        return self._http.url

    @property
    def authority_url(self) -> str:
        return self.authority.url

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx
