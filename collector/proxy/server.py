"""How the sidecar is served: uvicorn with limits, and quiet library loggers.

Anyone who can reach the sidecar can open connections to it, so its server needs limits that
uvicorn does not have by default:

* **concurrency**: ``limit_concurrency`` (``proxy_max_connections``): past it, new requests get a
  503 at once instead of piling up;
* **idle keep-alive**: ``timeout_keep_alive`` (``proxy_idle_timeout_seconds``);
* **headers**: uvicorn waits for a request's headers forever, so a client can hold a connection
  by sending half a request line. :func:`header_timeout_protocol` adds a timer from the
  connection's (or the next request's) first byte to its last header line
  (``proxy_header_timeout_seconds``); it subclasses uvicorn's ``httptools`` protocol, which
  ``uvicorn.Config(http=...)`` accepts, and touches only the asyncio and httptools callbacks
  (``connection_made``, ``on_message_begin``, ``on_headers_complete``, ``connection_lost``);
* **bodies**: the forwarder times out a body that stops arriving (``proxy_body_timeout_seconds``)
  and streams big bodies instead of buffering them (:mod:`collector.proxy.forward`).

Logging: request lines and the HTTP client's INFO lines carry URLs with query strings (``?key=``
as Gemini and some SDKs send), so uvicorn's access log is off and the ``httpx``/``httpcore``
loggers are raised to WARNING (:func:`quiet_library_loggers`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from collector.core.settings import Settings

#: Libraries that log request URLs (with their query strings) at INFO or DEBUG.
CHATTY_LOGGERS = ("httpx", "httpcore", "hpack", "uvicorn.access")


def quiet_library_loggers() -> None:
    """Keep libraries that log full URLs at WARNING and above, whatever the root level is."""
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


class _HeaderTimeout(HttpToolsProtocol):
    """uvicorn's httptools protocol, dropping a connection whose request headers do not arrive in time."""

    header_timeout = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expire(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def header_timeout_protocol(seconds: float) -> type[asyncio.Protocol]:
    """The httptools protocol of uvicorn with a ``seconds`` limit on receiving each request's headers."""
    return type("HeaderTimeoutProtocol", (_HeaderTimeout,), {"header_timeout": seconds})


class WorkerHeaderTimeout(_HeaderTimeout):
    """The same protocol by import name, for worker processes (uvicorn pickles their options).

    A class made by :func:`header_timeout_protocol` cannot be pickled by name, so workers get
    ``"collector.proxy.server:WorkerHeaderTimeout"`` and set :attr:`header_timeout` from their
    settings when they build the app (before the first connection).
    """


def uvicorn_options(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """The sidecar's ``uvicorn.run`` / ``uvicorn.Config`` options, limits included (``overrides``: tests).

    With ``proxy_workers`` > 1 uvicorn binds the socket in a supervisor that spawns (and restarts)
    that many worker processes; each accepts from the shared socket.
    """
    workers = settings.proxy_workers
    http: Any = (
        f"{__name__}:WorkerHeaderTimeout"
        if workers > 1
        else header_timeout_protocol(settings.proxy_header_timeout_seconds)
    )
    options: dict[str, Any] = {
        "host": settings.proxy_host,
        "port": settings.proxy_port,
        "loop": "uvloop",
        "http": http,
        "workers": workers,
        # A spawned worker imports the whole application before it answers the supervisor's first
        # health check; on a busy machine that takes longer than uvicorn's 5 s.
        "timeout_worker_healthcheck": 60,
        "lifespan": "on",
        "access_log": False,  # request lines can carry key-like query parameters
        "server_header": False,  # the upstream's own headers pass through
        # Nothing here reads the client's address or scheme, so uvicorn's X-Forwarded-* middleware
        # would only add a coroutine and a header scan to every call.
        "proxy_headers": False,
        "date_header": False,
        "log_level": "info",
        "timeout_graceful_shutdown": 30,
        "limit_concurrency": settings.proxy_max_connections,
        "timeout_keep_alive": settings.proxy_idle_timeout_seconds,
    }
    options.update(overrides)
    return options


__all__ = [
    "CHATTY_LOGGERS",
    "WorkerHeaderTimeout",
    "header_timeout_protocol",
    "quiet_library_loggers",
    "uvicorn_options",
]
