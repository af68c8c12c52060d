"""Limits on password sign-ins: per client, for everyone together, and on concurrent argon2 work.

Why not per account: a lock per account lets anyone keep ``admin`` locked forever by failing on
purpose, and its answer ("this account is locked") tells a stranger which names exist. So the
slow-down follows the *client* (its address as the dashboard sees it): after
:data:`FREE_FAILURES` failures a client waits a doubling delay (2 s, 4 s ... up to 15 minutes)
before it may try again, whatever names it tries. A global limit bounds guessing spread over many
addresses (``LLM_USAGE_SIGNIN_FAILURES_PER_MINUTE`` failures a minute for the whole dashboard),
and a semaphore (``LLM_USAGE_SIGNIN_MAX_CONCURRENT_VERIFICATIONS``) caps concurrent argon2
verifications (each takes 64 MiB and most of a core): a flood of sign-ins queues briefly, then
gets "busy", instead of exhausting memory and CPU.

The answers never depend on the name: a throttled client is told to wait before any account is
looked up or any hash verified.

The state is in memory, per dashboard process (one Streamlit server; several replicas each keep
their own, which multiplies the global limit by the number of replicas).
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from collector.core.settings import get_settings

#: Failed sign-ins a client may make before its slow-down starts.
FREE_FAILURES = 3
#: Longest wait imposed on one client (15 minutes).
MAX_DELAY_SECONDS = 900
#: Failed sign-ins per minute the whole dashboard accepts before every client must wait.
GLOBAL_FAILURES_PER_MINUTE = 30
#: argon2 verifications running at once (each is memory-hard: 64 MiB with RFC 9106 parameters).
MAX_CONCURRENT_VERIFICATIONS = 2
#: How long a sign-in waits for a verification slot before answering "busy".
VERIFY_WAIT_SECONDS = 5.0
#: Clients remembered at most (the oldest idle ones are forgotten first).
MAX_CLIENTS = 10_000


class Busy(Exception):
    """Every verification slot stayed taken for :data:`VERIFY_WAIT_SECONDS`."""


def client_delay(failures: int) -> int:
    """Seconds a client waits after its ``failures``-th consecutive failure."""
    if failures < FREE_FAILURES:
        return 0
    return int(min(2 ** (failures - FREE_FAILURES + 1), MAX_DELAY_SECONDS))


@dataclass
class _Client:
    failures: int = 0
    until: float = 0.0


@dataclass
class SignInThrottle:
    """The limits, with an injectable clock for tests."""

    clock: Callable[[], float] = time.monotonic
    global_per_minute: int = GLOBAL_FAILURES_PER_MINUTE
    max_verifications: int = MAX_CONCURRENT_VERIFICATIONS
    verify_wait: float = VERIFY_WAIT_SECONDS
    _clients: dict[str, _Client] = field(default_factory=dict)
    _recent: deque[float] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _slots: threading.BoundedSemaphore | None = None

    def __post_init__(self) -> None:
        self._slots = threading.BoundedSemaphore(self.max_verifications)

    def wait_seconds(self, client: str) -> int:
        """Seconds ``client`` must wait before it may try (0: it may try now)."""
        now = self.clock()
        with self._lock:
            self._forget_old(now)
            entry = self._clients.get(client)
            own = entry.until - now if entry is not None else 0.0
            everyone = 0.0
            if len(self._recent) >= self.global_per_minute:
                everyone = self._recent[0] + 60 - now
        wait = max(own, everyone)
        return int(wait + 0.999) if wait > 0 else 0

    def failed(self, client: str) -> int:
        """Count a failure; returns the seconds the client must now wait."""
        now = self.clock()
        with self._lock:
            entry = self._clients.pop(client, None) or _Client()
            entry.failures += 1
            delay = client_delay(entry.failures)
            entry.until = now + delay
            self._clients[client] = entry  # re-inserted: the dict stays ordered by last use
            while len(self._clients) > MAX_CLIENTS:
                self._clients.pop(next(iter(self._clients)))
            self._recent.append(now)
        return delay

    def succeeded(self, client: str) -> None:
        """A correct sign-in clears the client's failures."""
        with self._lock:
            self._clients.pop(client, None)

    @contextlib.contextmanager
    def verification(self) -> Iterator[None]:
        """Hold one of the argon2 slots; raise :class:`Busy` after waiting :attr:`verify_wait`."""
        assert self._slots is not None
        if not self._slots.acquire(timeout=self.verify_wait):
            raise Busy
        try:
            yield
        finally:
            self._slots.release()

    def _forget_old(self, now: float) -> None:
        while self._recent and self._recent[0] <= now - 60:
            self._recent.popleft()


@functools.cache
def default_throttle() -> SignInThrottle:
    """The dashboard process's limits, from ``LLM_USAGE_SIGNIN_*`` settings (created once)."""
    settings = get_settings()
    return SignInThrottle(
        global_per_minute=settings.signin_failures_per_minute,
        max_verifications=settings.signin_max_concurrent_verifications,
    )


__all__ = [
    "FREE_FAILURES",
    "GLOBAL_FAILURES_PER_MINUTE",
    "MAX_CONCURRENT_VERIFICATIONS",
    "MAX_DELAY_SECONDS",
    "Busy",
    "SignInThrottle",
    "client_delay",
    "default_throttle",
]
