"""Saying no, opt-in: per-token rate limits and budget caps, checked before a call is forwarded.

Nothing here is on by default. A monitor token gets limits with ``llm-usage proxy tokens limit``
(requests per minute, tokens per minute); a budget becomes a cap with ``llm-usage budgets
enforce``. A call without a monitor token is never refused by either.

Rate limits count in fixed one-minute windows (UTC minutes, so every replica agrees on the
window): requests when a call arrives, tokens (input + output, from the usage the upstream
reported) when it completes. The counters live in this process by default, so each replica
enforces its own share; with ``LLM_USAGE_REDIS_URL`` they live in Redis (one pipelined round
trip per limited call) and the limit holds across replicas. A completed call's tokens ride along
with the token's next check on that replica, or are sent in one batch within
:data:`FLUSH_SECONDS`, so counting them adds no round trip; another replica sees them that much
later (a token may overshoot its tokens/minute by about one call per replica). If Redis cannot be reached the proxy
fails open: the call is forwarded, the outage is logged once and every call let through unchecked
is counted (``llm_proxy_limit_store_fallbacks_total``); Redis is tried again after a second.
A refused call gets a 429 in its upstream's own error format with ``Retry-After`` (the seconds
left in the window), so the SDKs' retry logic works unchanged.

Budget caps are computed off the request path: :class:`BudgetGate` is refreshed by the
recorder's writer thread from the database (the application supplies the loader, which knows
budgets and the preferred spend basis), and every batch of events the writer commits adds its
estimated cost to the caps it falls in, so a cap refuses from the first call after the one that
crossed it was recorded. The request path only reads a tuple of the caps currently over.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Engine

from collector.proxy.metrics import ProxyMetrics
from collector.proxy.models import PROXY_REFUSALS
from collector.proxy.recorder import CostScope
from collector.proxy.tokens import TokenInfo

log = logging.getLogger(__name__)

WINDOW = 60
#: Seconds a rate-limit key outlives its window in Redis.
KEY_TTL = 2 * WINDOW
#: Seconds tokens of completed calls may wait to ride along with a check before they are sent alone.
FLUSH_SECONDS = 0.2
#: Refusals held in memory until the writer thread stores them (beyond it the oldest are dropped).
MAX_PENDING_REFUSALS = 10_000


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a call is refused: its status, kind, message and ``Retry-After`` seconds."""

    status: int
    kind: str  # rate_requests, rate_tokens or budget
    message: str
    retry_after: int
    budget_id: int | None = None
    budget_name: str = ""


class LocalCounters:
    """This process's counters for the current window (one replica's share of the traffic)."""

    def __init__(self) -> None:
        self.window = -1
        self.requests: dict[int, int] = {}
        self.tokens: dict[int, int] = {}

    def _roll(self, window: int) -> None:
        if window != self.window:
            self.window = window
            self.requests.clear()
            self.tokens.clear()

    def hit(self, token_id: int, window: int) -> tuple[int, int]:
        """Count a request; returns ``(requests, tokens)`` of the token in ``window`` so far."""
        self._roll(window)
        n = self.requests.get(token_id, 0) + 1
        self.requests[token_id] = n
        return n, self.tokens.get(token_id, 0)

    def add(self, token_id: int, window: int, tokens: int) -> None:
        """Count tokens a completed call used."""
        self._roll(window)
        self.tokens[token_id] = self.tokens.get(token_id, 0) + tokens


class RedisCounters:
    """Counters shared by every replica through Redis (``INCR`` is atomic, so limits are exact).

    Each check is one round trip of three pipelined commands on a connection of a small pool of
    ``redis.asyncio`` connections used directly: the client's ``pipeline()`` and pool machinery
    cost about 0.3 ms per call here, the bare connection about 0.07 ms (tests/bench/bench_proxy.py).
    A connection that fails or times out mid-exchange is closed, never reused.
    """

    #: Longest wait for Redis before the call is let through (fail open).
    TIMEOUT = 0.25

    def __init__(self, url: str, prefix: str) -> None:
        from redis.asyncio.connection import ConnectionPool

        # The URL is parsed by redis-py (password, database, TLS); connections are made from its kwargs.
        pool = ConnectionPool.from_url(url, socket_connect_timeout=self.TIMEOUT)
        self._make = lambda: pool.connection_class(**pool.connection_kwargs)
        self.idle: deque[Any] = deque()
        self.prefix = prefix

    def _keys(self, token_id: int, window: int) -> tuple[str, str]:
        base = f"{self.prefix}rl:{token_id}:{window}"
        return base + ":r", base + ":t"

    async def _exchange(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        conn = self.idle.pop() if self.idle else self._make()
        try:
            async with asyncio.timeout(self.TIMEOUT):
                if not conn.is_connected:
                    await conn.connect()
                await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
                replies = [await conn.read_response() for _ in commands]
        except BaseException:
            await conn.disconnect()
            raise
        self.idle.append(conn)
        return replies

    async def hit(self, token_id: int, window: int, add: int = 0) -> tuple[int, int]:
        """Count a request (and ``add`` tokens of earlier calls) in one round trip; ``(requests, tokens)``."""
        req, tok = self._keys(token_id, window)
        commands: list[tuple[Any, ...]] = [("INCR", req), ("EXPIRE", req, KEY_TTL)]
        if add:
            commands += [("INCRBY", tok, add), ("EXPIRE", tok, KEY_TTL)]
        replies = await self._exchange([*commands, ("GET", tok)])
        return int(replies[0]), int(replies[-1] or 0)

    async def add(self, counts: dict[tuple[int, int], int]) -> None:
        """Add tokens of completed calls, ``{(token_id, window): tokens}``, in one round trip."""
        commands: list[tuple[Any, ...]] = []
        for (token_id, window), tokens in counts.items():
            _, tok = self._keys(token_id, window)
            commands += [("INCRBY", tok, tokens), ("EXPIRE", tok, KEY_TTL)]
        if commands:
            await self._exchange(commands)

    async def aclose(self) -> None:
        while self.idle:
            await self.idle.pop().disconnect()


class Limiter:
    """Per-token requests/minute and tokens/minute, local or in Redis, failing open.

    Args:
        metrics: where fallbacks (calls let through because Redis was unreachable) are counted.
        redis_url: share counters through this Redis; None keeps them in this process.
        prefix: prefix of every Redis key.
        clock: seconds since the epoch (tests inject one; windows are UTC minutes).
        retry_seconds: how long after a Redis failure it is tried again.
    """

    def __init__(
        self,
        metrics: ProxyMetrics,
        *,
        redis_url: str | None = None,
        prefix: str = "llm-usage:",
        clock: Callable[[], float] = time.time,
        retry_seconds: float = 1.0,
    ) -> None:
        self.metrics = metrics
        self.clock = clock
        self.local = LocalCounters()
        self.redis = RedisCounters(redis_url, prefix) if redis_url else None
        self.retry_seconds = retry_seconds
        self.down_until = 0.0
        self.down = False
        self._tasks: set[asyncio.Task[None]] = set()
        #: Tokens of completed calls not yet in Redis, ``{(token_id, window): tokens}``: they ride
        #: along with the token's next check, or go in one batch :data:`FLUSH_SECONDS` later.
        self.pending: dict[tuple[int, int], int] = {}
        self._flush_armed = False

    async def check(self, info: TokenInfo) -> Refusal | None:
        """Count this call against the token's limits; a :class:`Refusal` when it is over one."""
        now = self.clock()
        window = int(now // WINDOW)
        counts = await self._hit(info.id, window)
        if counts is None:
            return None
        requests, tokens = counts
        retry = max(1, math.ceil((window + 1) * WINDOW - now))
        if info.rpm_limit and requests > info.rpm_limit:
            message = f"monitor token {info.id} is over its limit of {info.rpm_limit} requests per minute"
            return Refusal(429, "rate_requests", message, retry)
        if info.tpm_limit and tokens >= info.tpm_limit:
            message = f"monitor token {info.id} is over its limit of {info.tpm_limit} tokens per minute"
            return Refusal(429, "rate_tokens", message, retry)
        return None

    async def _hit(self, token_id: int, window: int) -> tuple[int, int] | None:
        if self.redis is None:
            return self.local.hit(token_id, window)
        if self.down and time.monotonic() < self.down_until:
            self.metrics.limit_fallbacks.inc()
            return None
        add = self.pending.pop((token_id, window), 0)
        try:
            counts = await self.redis.hit(token_id, window, add)
        except Exception as exc:  # noqa: BLE001  (the limit store failing must never block traffic)
            self._failed(exc)
            return None
        if self.down:
            self.down = False
            log.info("proxy limit store (Redis) reachable again; rate limits enforced")
        return counts

    def _failed(self, exc: BaseException) -> None:
        self.metrics.limit_fallbacks.inc()
        if not self.down:
            log.warning("proxy limit store (Redis) unreachable (%s); forwarding without limits", type(exc).__name__)
        self.down = True
        self.down_until = time.monotonic() + self.retry_seconds

    def used(self, info: TokenInfo, tokens: int) -> None:
        """Count the tokens a completed call used (Redis: in a task, never delaying the response)."""
        if not info.tpm_limit or tokens <= 0:
            return
        window = int(self.clock() // WINDOW)
        if self.redis is None:
            self.local.add(info.id, window, tokens)
            return
        key = (info.id, window)
        self.pending[key] = self.pending.get(key, 0) + tokens
        if not self._flush_armed:
            self._flush_armed = True
            asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._flush)

    def _flush(self) -> None:
        self._flush_armed = False
        if not self.pending:
            return
        counts, self.pending = self.pending, {}
        task = asyncio.get_running_loop().create_task(self._add(counts))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _add(self, counts: dict[tuple[int, int], int]) -> None:
        assert self.redis is not None
        if self.down and time.monotonic() < self.down_until:
            return  # Redis is down: these tokens are not counted (fail open)
        try:
            await self.redis.add(counts)
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)

    async def aclose(self) -> None:
        """Send the pending token counts, then close the Redis connections."""
        if self.pending and self.redis is not None:
            await self._add(self.pending)
            self.pending = {}
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.redis is not None:
            await self.redis.aclose()


@dataclass(frozen=True, slots=True)
class Cap:
    """An enforced budget as the proxy sees it: its scope, amount and spend at the last refresh.

    ``spent`` is in the budget's currency; ``per_usd`` converts the proxy's USD estimates into it.
    """

    budget_id: int
    name: str
    scope: str  # all, provider, project, api_key or team
    value: str
    amount: Decimal
    spent: Decimal
    currency: str = "USD"
    per_usd: Decimal = Decimal(1)

    def covers(self, info: TokenInfo, provider: str, key_fp: str) -> bool:
        """True when a call with this token (to this provider, with this key) is in the budget's scope."""
        scope = self.scope
        if scope == "all":
            return True
        if scope == "team":
            return info.team == self.value
        if scope == "project":
            return info.project == self.value
        if scope == "provider":
            return provider == self.value
        if scope == "api_key":
            return key_fp == self.value
        return False


CapLoader = Callable[[Engine], list[Cap]]


@dataclass
class BudgetGate:
    """The enforced budgets and which of them are over; refreshed and fed by the writer thread."""

    loader: CapLoader | None = None
    caps: list[Cap] = field(default_factory=list)
    #: Spend (budget currency) of events written since the last refresh, per budget id.
    extra: dict[int, Decimal] = field(default_factory=dict)
    #: The caps currently over their amount; the request path reads only this.
    over: tuple[Cap, ...] = ()

    def refresh(self, engine: Engine) -> None:
        """Reload the caps and their spend (a periodic job of the writer thread)."""
        if self.loader is None:
            return
        self.caps = self.loader(engine)
        self.extra = {}
        self._update()

    def spent(self, costs: Mapping[CostScope, Decimal]) -> None:
        """Add the estimated cost of newly stored events, summed per scope, to the caps they fall in.

        Called by the writer thread after each commit (:func:`collector.proxy.recorder.event_costs`).
        """
        if not self.caps:
            return
        for (token_id, team, project, provider, key_fp), cost in costs.items():
            info = TokenInfo(token_id, team, project)
            for cap in self.caps:
                if cap.covers(info, provider, key_fp):
                    self.extra[cap.budget_id] = self.extra.get(cap.budget_id, Decimal(0)) + cost * cap.per_usd
        self._update()

    def _update(self) -> None:
        self.over = tuple(c for c in self.caps if c.spent + self.extra.get(c.budget_id, Decimal(0)) >= c.amount)

    def check(self, info: TokenInfo, provider: str, key_fp: str) -> Refusal | None:
        """A 403 naming the first over-budget cap the call falls in, else None."""
        for cap in self.over:
            if cap.covers(info, provider, key_fp):
                message = (
                    f"budget '{cap.name}' (id {cap.budget_id}) has reached its {cap.amount:f} {cap.currency}; "
                    "calls in its scope are refused until the next period or until an admin lifts it"
                )
                return Refusal(403, "budget", message, _seconds_to_next_month(), cap.budget_id, cap.name)
        return None


def _seconds_to_next_month() -> int:
    now = datetime.now(UTC)
    nxt = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=UTC)
    return max(1, int((nxt - now).total_seconds()))


class RefusalLog:
    """Refusals waiting to be stored in ``proxy_refusals`` by the writer thread."""

    def __init__(self) -> None:
        self.pending: deque[dict[str, Any]] = deque(maxlen=MAX_PENDING_REFUSALS)

    def add(self, refusal: Refusal, upstream: str, info: TokenInfo) -> None:
        """Note a refusal (request path: one append)."""
        self.pending.append(
            {
                "ts": datetime.now(UTC),
                "kind": refusal.kind,
                "upstream": upstream,
                "token_id": info.id,
                "team": info.team,
                "project": info.project,
                "budget_id": refusal.budget_id,
                "budget_name": refusal.budget_name,
            }
        )

    def store(self, engine: Engine) -> None:
        """Insert the pending refusals (a periodic job of the writer thread)."""
        rows = [self.pending.popleft() for _ in range(len(self.pending))]
        if not rows:
            return
        try:
            with engine.begin() as conn:
                conn.execute(insert(PROXY_REFUSALS), rows)
        except Exception:
            self.pending.extendleft(reversed(rows))
            raise


def error_body(flavor: str, refusal: Refusal) -> bytes:
    """The refusal in the upstream's own error format, so its SDK reads it as its own.

    OpenAI: ``{"error": {"message", "type", "param", "code"}}``; Anthropic: ``{"type": "error",
    "error": {"type", "message"}}``; Google: ``{"error": {"code", "message", "status"}}``
    (``google.rpc.Status``).
    """
    message = f"proxy: {refusal.message}"
    if flavor == "anthropic":
        kind = "rate_limit_error" if refusal.status == 429 else "permission_error"
        return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()
    if flavor == "google":
        status = "RESOURCE_EXHAUSTED" if refusal.status == 429 else "PERMISSION_DENIED"
        return json.dumps({"error": {"code": refusal.status, "message": message, "status": status}}).encode()
    code = "rate_limit_exceeded" if refusal.status == 429 else "budget_exceeded"
    kind = {"rate_requests": "requests", "rate_tokens": "tokens"}.get(refusal.kind, "budget_exceeded")
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()
