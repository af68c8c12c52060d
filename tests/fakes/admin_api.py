"""A fake OpenAI + Anthropic admin API (ASGI, 127.0.0.1 only) for sync tests and the benchmark.

It serves deterministic generated data shaped like provider-apis.md §1.4-§1.6 and §2.4-§2.6:
every value is a pure function of (endpoint, bucket start, group, revision), so a re-fetch
returns the same numbers, and a test can compute the expected totals. Pagination follows the
real APIs (``limit`` buckets per page, ``has_more`` + opaque ``next_page``).

Injectable faults (:class:`Faults`, mutable while the server runs): a share of responses that
fail transiently (429 with ``Retry-After``, 500, a read timeout, truncated JSON), a 401 for
every request, a repeating cursor, a revision of the values of buckets from a given time on,
and per-request latency. ``requests`` counts what was asked.

With ``month=`` (:func:`tests.fakes.month.generate`) it serves a realistic month of October 2026
instead, whose bill is consistent with documented prices (reconciliation tests and benchmark).

Run standalone (the benchmark does): ``python -m tests.fakes.admin_api --groups 50``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.month import Month

HOST = "127.0.0.1"
HOUR = 3600
DAY = 86_400
OPENAI_USAGE = (
    "completions",
    "embeddings",
    "moderations",
    "images",
    "audio_speeches",
    "audio_transcriptions",
    "vector_stores",
    "code_interpreter_sessions",
    "file_search_calls",
    "web_search_calls",
)
OPENAI_MODELS = (
    "gpt-4o-mini-2024-07-18",
    "gpt-4o-2024-08-06",
    "gpt-4.1-2025-04-14",
    "o3-mini",
    "gpt-model-not-in-any-price-table",
)
ANTHROPIC_MODELS = ("claude-sonnet-4-20250514", "claude-3-5-haiku-20241022", "claude-opus-4-1-20250805")
TRANSIENT_KINDS = ("429", "500", "timeout", "truncated")


@dataclass
class Faults:
    """Faults to inject; change the fields while the server runs."""

    transient_rate: float = 0.0
    transient_kinds: tuple[str, ...] = TRANSIENT_KINDS
    retry_after: str = "1"
    timeout_sleep: float = 2.0
    auth_fail: bool = False
    #: How a 401 echoes the key: "verbatim", "upper" (upper-cased) or "bare" (without its prefix).
    echo: str = "verbatim"
    #: Answer every request with a large HTML error page of this status (a CDN or proxy in the way).
    html_status: int = 0
    repeat_cursor: bool = False
    latency: float = 0.0
    revise_from: int | None = None  # epoch seconds: buckets starting at or after it are revised
    revision: int = 0
    seed: int = 1234
    rng: random.Random = field(default_factory=lambda: random.Random(99))


def _mix(*parts: int) -> int:
    """A cheap deterministic hash of integers (no Python hash randomisation)."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (p & 0xFFFFFFFFFFFF)) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h >> 11


def _cursor(ts: int) -> str:
    return "page_" + base64.urlsafe_b64encode(str(ts).encode()).decode()


def _uncursor(value: str) -> int:
    return int(base64.urlsafe_b64decode(value.removeprefix("page_").encode()).decode())


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(value: str) -> int:
    return int(datetime.fromisoformat(value).timestamp())


class FakeAdminAPI:
    """The ASGI app plus its data generator, faults and request counters."""

    def __init__(self, groups: int = 4, seed: int = 1234, month: Month | None = None) -> None:
        self.groups = groups
        self.month = month
        self.faults = Faults(seed=seed)
        self.requests: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/v1/organization/usage/{kind}", self.openai_usage),
                Route("/v1/organization/costs", self.openai_costs),
                Route("/v1/organizations/usage_report/messages", self.anthropic_messages),
                Route("/v1/organizations/cost_report", self.anthropic_costs),
                Route("/v1/organizations/usage_report/claude_code", self.anthropic_claude_code),
            ]
        )

    # -- values -----------------------------------------------------------------------------

    def value(self, endpoint: str, ts: int, group: int, salt: int, modulo: int) -> int:
        """Deterministic count for one field; revised buckets get a higher value."""
        f = self.faults
        rev = f.revision if f.revise_from is not None and ts >= f.revise_from else 0
        return _mix(f.seed, sum(map(ord, endpoint)), ts // 60, group, salt) % modulo + rev * 1000

    # -- common plumbing --------------------------------------------------------------------

    async def _preamble(self, request: Request, provider: str) -> Response | None:
        """Count, authenticate, delay and maybe fail the request; None means serve it."""
        path = request.url.path
        with self._lock:
            self.requests[path] += 1
            self.requests["total"] += 1
        f = self.faults
        if f.latency:
            await asyncio.sleep(f.latency)
        auth = self._auth_error(request, provider)
        if auth is not None:
            return auth
        if f.transient_rate and f.rng.random() < f.transient_rate:
            kind = f.rng.choice(f.transient_kinds)
            if kind == "429":
                return self._status(
                    JSONResponse({"error": {"message": "Rate limit reached"}}, 429, {"Retry-After": f.retry_after})
                )
            if kind == "500":
                return self._status(JSONResponse({"error": {"message": "The server had an error"}}, 500))
            if kind == "timeout":
                await asyncio.sleep(f.timeout_sleep)
            if kind == "truncated":
                return Response(status_code=299)  # the handler serves the page cut in half
        return None

    def _status(self, response: Response) -> Response:
        with self._lock:
            self.statuses[response.status_code] += 1
        return response

    def _auth_error(self, request: Request, provider: str) -> Response | None:
        f = self.faults
        if f.html_status:
            page = "<!DOCTYPE html><html><head><title>502 Bad Gateway</title><style>body{}</style></head><body>"
            page += "<p>upstream</p>" * 5000 + "</body></html>"
            return self._status(Response(page, f.html_status, media_type="text/html"))
        if provider == "openai":
            key = request.headers.get("authorization", "").removeprefix("Bearer ")
            if f.auth_fail or not key.startswith("sk-admin-"):
                # Like OpenAI, echo the key in the message: the client must redact it.
                echoed = {"upper": key.upper(), "bare": key.removeprefix("sk-admin-")}.get(f.echo, key)
                message = (
                    f"Incorrect API key provided: {echoed}. You can find your API key at https://platform.openai.com."
                )
                return self._status(JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, 401))
        else:
            key = request.headers.get("x-api-key", "")
            if request.headers.get("anthropic-version") != "2023-06-01":
                return self._status(
                    JSONResponse(
                        {
                            "type": "error",
                            "error": {
                                "type": "invalid_request_error",
                                "message": "anthropic-version header is required",
                            },
                        },
                        400,
                    )
                )
            if f.auth_fail or not key.startswith("sk-ant-admin"):
                return self._status(
                    JSONResponse(
                        {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}},
                        401,
                    )
                )
        return None

    def _page(self, gate: Response | None, body: dict) -> Response:
        raw = json.dumps(body, separators=(",", ":")).encode()
        if gate is not None and gate.status_code == 299:
            return self._status(Response(raw[: len(raw) // 2], 200, media_type="application/json"))
        return self._status(Response(raw, 200, media_type="application/json"))

    def _window(self, start: int, end: int, width: int, limit: int, page: str | None) -> tuple[list[int], str | None]:
        first = _uncursor(page) if page else start
        starts = list(range(first, end, width))[:limit]
        nxt = starts[-1] + width if starts else end
        if nxt >= end:
            return starts, None
        if self.faults.repeat_cursor and page:
            return starts, page
        return starts, _cursor(nxt)

    # -- OpenAI -----------------------------------------------------------------------------

    def openai_result(self, kind: str, ts: int, g: int) -> dict:
        """One generated result of an OpenAI usage endpoint (spec result schemas, §1.5)."""
        v = self.value
        r: dict = {"object": f"organization.usage.{kind}.result", "project_id": f"proj_{g % 7}"}
        if kind not in ("vector_stores", "code_interpreter_sessions"):
            r["api_key_id"] = f"key_{g}"
            r["user_id"] = None
        if kind in (
            "completions",
            "embeddings",
            "moderations",
            "images",
            "audio_speeches",
            "audio_transcriptions",
            "web_search_calls",
        ):
            r["model"] = OPENAI_MODELS[g % len(OPENAI_MODELS)]
        if kind == "completions":
            inp = 1000 + v(kind, ts, g, 1, 50_000)
            r.update(
                input_tokens=inp,
                input_cached_tokens=inp // 4,
                output_tokens=100 + v(kind, ts, g, 2, 9000),
                num_model_requests=1 + v(kind, ts, g, 3, 40),
                batch=g % 3 == 0,
                service_tier="default",
            )
            if g % 5:  # new shape; every fifth group keeps the old shape (§1.5 schema history)
                r.update(input_cache_write_tokens=inp // 10, input_uncached_tokens=inp - inp // 4 - inp // 10)
        elif kind in ("embeddings", "moderations"):
            r.update(input_tokens=10 + v(kind, ts, g, 1, 20_000), num_model_requests=1 + v(kind, ts, g, 3, 40))
        elif kind == "images":
            r.update(
                images=1 + v(kind, ts, g, 1, 9),
                num_model_requests=1 + v(kind, ts, g, 3, 9),
                size="1024x1024",
                source="image.generation",
            )
        elif kind == "audio_speeches":
            r.update(characters=v(kind, ts, g, 1, 5000), num_model_requests=1 + v(kind, ts, g, 3, 9))
        elif kind == "audio_transcriptions":
            r.update(seconds=v(kind, ts, g, 1, 600), num_model_requests=1 + v(kind, ts, g, 3, 9))
        elif kind == "vector_stores":
            r.update(usage_bytes=v(kind, ts, g, 1, 10**9))
        elif kind == "code_interpreter_sessions":
            r.update(num_sessions=v(kind, ts, g, 1, 20))
        elif kind == "file_search_calls":
            r.update(num_requests=v(kind, ts, g, 1, 50), vector_store_id=None)
        elif kind == "web_search_calls":
            r.update(
                num_requests=v(kind, ts, g, 1, 50), num_model_requests=v(kind, ts, g, 3, 50), context_level="medium"
            )
        return r

    def _openai_results(self, kind: str, ts: int) -> list[dict]:
        if self.month is not None:
            return self.month.openai_usage[kind].get(ts, [])
        return [self.openai_result(kind, ts, g) for g in range(self.groups)]

    async def openai_usage(self, request: Request) -> Response:
        gate = await self._preamble(request, "openai")
        if gate is not None and gate.status_code != 299:
            return gate
        kind = request.path_params["kind"]
        if kind not in OPENAI_USAGE:
            return self._status(
                JSONResponse({"error": {"message": f"Invalid URL (GET /v1/organization/usage/{kind})"}}, 404)
            )
        q = request.query_params
        width = HOUR if q.get("bucket_width") == "1h" else DAY
        end = int(q.get("end_time") or time.time())
        starts, nxt = self._window(int(q["start_time"]), end, width, int(q.get("limit", 7)), q.get("page"))
        data = [
            {
                "object": "bucket",
                "start_time": ts,
                "end_time": ts + width,
                "results": self._openai_results(kind, ts),
            }
            for ts in starts
        ]
        return self._page(gate, {"object": "page", "data": data, "has_more": nxt is not None, "next_page": nxt})

    async def openai_costs(self, request: Request) -> Response:
        gate = await self._preamble(request, "openai")
        if gate is not None and gate.status_code != 299:
            return gate
        q = request.query_params
        end = int(q.get("end_time") or time.time())
        starts, nxt = self._window(int(q["start_time"]), end, DAY, int(q.get("limit", 7)), q.get("page"))
        data = []
        for ts in starts:
            if self.month is not None:
                served = self.month.openai_costs.get(ts, [])
                data.append({"object": "bucket", "start_time": ts, "end_time": ts + DAY, "results": served})
                continue
            results = []
            for g in range(self.groups):
                cents = self.value("costs", ts, g, 1, 100_000)
                value: object = f"{cents / 100:.2f}" if g % 2 else cents / 100  # number or string (§1.7.2)
                results.append(
                    {
                        "object": "organization.costs.result",
                        "amount": {"value": value, "currency": "usd"},
                        "line_item": f"{OPENAI_MODELS[g % len(OPENAI_MODELS)]}, {'input' if g % 2 else 'output'} #{g}",
                        "project_id": f"proj_{g % 7}",
                        "organization_id": "org-fake",
                        "quantity": None,
                        "quantity_unit": None,
                    }
                )
            data.append({"object": "bucket", "start_time": ts, "end_time": ts + DAY, "results": results})
        return self._page(gate, {"object": "page", "data": data, "has_more": nxt is not None, "next_page": nxt or ""})

    # -- Anthropic --------------------------------------------------------------------------

    async def anthropic_messages(self, request: Request) -> Response:
        gate = await self._preamble(request, "anthropic")
        if gate is not None and gate.status_code != 299:
            return gate
        q = request.query_params
        width = HOUR if q.get("bucket_width") == "1h" else DAY
        end = _parse_iso(q["ending_at"]) if q.get("ending_at") else int(time.time()) // width * width
        starts, nxt = self._window(_parse_iso(q["starting_at"]), end, width, int(q.get("limit", 7)), q.get("page"))
        v = self.value
        data = []
        for ts in starts:
            if self.month is not None:
                served = self.month.anthropic_messages.get(ts, []) if width == HOUR else []
                data.append({"starting_at": _iso(ts), "ending_at": _iso(ts + width), "results": served})
                continue
            results = [
                {
                    "model": ANTHROPIC_MODELS[g % len(ANTHROPIC_MODELS)],
                    "workspace_id": f"wrkspc_{g % 4}" if g % 4 else None,
                    "api_key_id": f"apikey_{g}",
                    "service_tier": "batch" if g % 6 == 0 else "standard",
                    "context_window": "0-200k",
                    "uncached_input_tokens": v("messages", ts, g, 1, 40_000),
                    "cache_read_input_tokens": v("messages", ts, g, 2, 20_000),
                    "cache_creation": {
                        "ephemeral_5m_input_tokens": v("messages", ts, g, 3, 5000),
                        "ephemeral_1h_input_tokens": v("messages", ts, g, 4, 2000),
                    },
                    "output_tokens": v("messages", ts, g, 5, 8000),
                    "server_tool_use": {"web_search_requests": v("messages", ts, g, 6, 3)},
                }
                for g in range(self.groups)
            ]
            data.append({"starting_at": _iso(ts), "ending_at": _iso(ts + width), "results": results})
        return self._page(gate, {"data": data, "has_more": nxt is not None, "next_page": nxt})

    async def anthropic_costs(self, request: Request) -> Response:
        gate = await self._preamble(request, "anthropic")
        if gate is not None and gate.status_code != 299:
            return gate
        q = request.query_params
        end = _parse_iso(q["ending_at"]) if q.get("ending_at") else int(time.time()) // DAY * DAY
        starts, nxt = self._window(_parse_iso(q["starting_at"]), end, DAY, int(q.get("limit", 7)), q.get("page"))
        data = []
        for ts in starts:
            if self.month is not None:
                results = self.month.anthropic_costs.get(ts, [])
                data.append({"starting_at": _iso(ts), "ending_at": _iso(ts + DAY), "results": results})
                continue
            results = []
            for g in range(self.groups):
                model = ANTHROPIC_MODELS[g % len(ANTHROPIC_MODELS)]
                cents = self.value("cost_report", ts, g, 1, 10_000_000)
                results.append(
                    {
                        "amount": f"{cents // 1000}.{cents % 1000:03d}",  # cents, decimal string (§2.5)
                        "currency": "USD",
                        "cost_type": "tokens",
                        "description": f"{model} Usage - Input Tokens #{g}",
                        "model": model,
                        "service_tier": "standard",
                        "token_type": "uncached_input_tokens",
                        "context_window": "0-200k",
                        "workspace_id": f"wrkspc_{g % 4}" if g % 4 else None,
                    }
                )
            data.append({"starting_at": _iso(ts), "ending_at": _iso(ts + DAY), "results": results})
        return self._page(gate, {"data": data, "has_more": nxt is not None, "next_page": nxt})

    async def anthropic_claude_code(self, request: Request) -> Response:
        gate = await self._preamble(request, "anthropic")
        if gate is not None and gate.status_code != 299:
            return gate
        q = request.query_params
        day = int(datetime.strptime(q["starting_at"], "%Y-%m-%d").replace(tzinfo=UTC).timestamp())
        actors = max(1, self.groups // 5)
        limit = int(q.get("limit", 20))
        offset = _uncursor(q["page"]) if q.get("page") else 0
        if self.month is not None:
            served = self.month.claude_code.get(day, [])
            more = offset + limit < len(served)
            body = {"data": served[offset : offset + limit], "has_more": more}
            return self._page(gate, {**body, "next_page": _cursor(offset + limit) if more else None})
        items = []
        for a in range(offset, min(offset + limit, actors)):
            v = self.value
            items.append(
                {
                    "actor": {"type": "user_actor", "email_address": f"dev{a}@example.com"},
                    "core_metrics": {
                        "num_sessions": 1 + v("cc", day, a, 1, 9),
                        "commits_by_claude_code": v("cc", day, a, 2, 5),
                    },
                    "customer_type": "api",
                    "date": _iso(day),
                    "terminal_type": "vscode",
                    "model_breakdown": [
                        {
                            "estimated_cost": {"amount": v("cc", day, a, 3, 500), "currency": "USD"},
                            "model": ANTHROPIC_MODELS[a % len(ANTHROPIC_MODELS)],
                            "tokens": {
                                "cache_creation": v("cc", day, a, 4, 999),
                                "cache_read": v("cc", day, a, 5, 999),
                                "input": v("cc", day, a, 6, 9999),
                                "output": v("cc", day, a, 7, 999),
                            },
                        }
                    ],
                    "organization_id": "12345678-1234-5678-1234-567812345678",
                }
            )
        more = offset + limit < actors
        return self._page(
            gate, {"data": items, "has_more": more, "next_page": _cursor(offset + limit) if more else None}
        )


class ServerThread:
    """Runs a :class:`FakeAdminAPI` under uvicorn on 127.0.0.1 in a background thread."""

    def __init__(self, api: FakeAdminAPI, port: int = 0) -> None:
        self.api = api
        config = uvicorn.Config(api.app, host=HOST, port=port, log_level="warning", lifespan="off", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ServerThread:
        """Start and wait until it listens."""
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake admin API did not start")
            time.sleep(0.01)
        return self

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``: the base URL for both providers."""
        return f"http://{HOST}:{self.port}/v1"

    def stop(self) -> None:
        """Stop the server and join its thread."""
        self.server.should_exit = True
        # A client that keeps its connection alive (azure-identity's does) would otherwise hold
        # uvicorn's graceful shutdown until the join times out: the test is over, close them.
        self.server.force_exit = True
        self.thread.join(timeout=10)


def main() -> None:
    """Serve until killed; prints the base URL on the first line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--groups", type=int, default=50)
    args = parser.parse_args()
    srv = ServerThread(FakeAdminAPI(groups=args.groups), port=args.port).start()
    print(srv.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":
    main()
