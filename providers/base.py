"""The provider contract (code-anchors §11.1-§11.2): endpoints, fetch by pages, pure parsers.

A provider module declares its admin-key rules, its endpoints (path, bucket width, page size,
which lookback applies, parser) and how to walk one endpoint's pages for a window. Parsers are
pure functions of a payload: no HTTP, no clock, no database. The sync engine
(:mod:`collector.sync.engine`) owns windows, state and storage; providers own only the wire format.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import httpx

from collector.core.http import make_client
from collector.core.schema import UsageRecord
from collector.core.settings import Settings
from collector.core.windows import Window

SOURCE = "api"
#: Encoders for ``details``, built once (``json.dumps`` with options builds one per call); the one
#: with ``default=str`` (for Decimals) is ~3x slower, so it is only the fallback.
_DETAILS_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
_DETAILS_FALLBACK = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


class ProviderError(Exception):
    """A provider-side problem that is not an HTTP status (bad payload, looping cursor)."""


class KeyFormatError(ValueError):
    """The key given cannot read usage (wrong kind of key); the message says how to get one."""


@dataclass(frozen=True, slots=True)
class Context:
    """What a parser needs besides the payload: where the rows are filed and where they came from."""

    account: str
    source_ref: str


Parser = Callable[[Mapping[str, Any], Context], list[UsageRecord]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One API endpoint the sync polls.

    Attributes:
        name: the ``kind`` of its rows and the key of its high-water mark.
        path: URL path under the provider's base URL.
        width: bucket width requested.
        max_buckets: the API's page-size cap for that width (the ``limit`` sent).
        lookback: ``"usage"`` or ``"cost"``: which configured re-fetch window applies.
        parse: pure payload -> records function.
        group_by: dimensions requested.
        delay: how long after a bucket ends the provider has published it; by default an hour for
            usage (Anthropic documents "typically within 5 minutes", provider-apis.md §2.8.1;
            OpenAI documents nothing, §1.7.8) and a day for daily cost buckets.
    """

    name: str
    path: str
    width: timedelta
    max_buckets: int
    lookback: str
    parse: Parser
    group_by: tuple[str, ...] = ()
    delay: timedelta | None = None

    @property
    def expected_lag(self) -> timedelta:
        """How old the newest complete bucket may be on a healthy connection: its width plus the delay."""
        delay = self.delay if self.delay is not None else timedelta(days=1 if self.lookback == "cost" else 0, hours=1)
        return self.width + delay


@dataclass(frozen=True, slots=True)
class Page:
    """One response page and how far it completes the window.

    ``through``: every bucket that starts before it is fully contained in the pages so far
    (None when this page proves nothing, e.g. an empty one).
    """

    payload: Mapping[str, Any]
    through: datetime | None


class Provider(ABC):
    """Base class: one subclass per provider, one file per subclass, one registry line."""

    name: ClassVar[str]
    title: ClassVar[str]
    #: Prefixes of keys that can read usage; anything else is refused with :attr:`key_help`.
    admin_key_prefixes: ClassVar[tuple[str, ...]]
    key_help: ClassVar[str]
    #: Settings field holding the default base URL.
    base_url_setting: ClassVar[str]
    endpoints: ClassVar[tuple[Endpoint, ...]]

    def __init__(self, client: httpx.Client, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    # -- keys -------------------------------------------------------------------------------

    @classmethod
    @abstractmethod
    def auth_headers(cls, key: str) -> dict[str, str]:
        """Headers that authenticate ``key`` (plus any fixed headers the API requires)."""

    @classmethod
    def check_key(cls, key: str) -> None:
        """Refuse a key that cannot read usage, saying what kind of key is needed and where.

        Raises:
            KeyFormatError: with guidance; the message never includes the key.
        """
        if not key or any(c.isspace() for c in key):
            raise KeyFormatError("the key is empty or contains whitespace")
        if not key.startswith(cls.admin_key_prefixes):
            raise KeyFormatError(cls.key_help)

    # -- HTTP -------------------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        settings: Settings,
        key: str,
        *,
        base_url: str = "",
        transport: httpx.BaseTransport | None = None,
    ) -> Provider:
        """A provider instance with its own client from :func:`collector.core.http.make_client`."""
        url = base_url or str(getattr(settings, cls.base_url_setting))
        client = make_client(
            settings, base_url=url.rstrip("/") + "/", headers=cls.auth_headers(key), transport=transport
        )
        return cls(client, settings)

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()

    def lookback(self, endpoint: Endpoint) -> timedelta:
        """The configured re-fetch window for an endpoint."""
        if endpoint.lookback == "cost":
            return timedelta(days=self.settings.cost_lookback_days)
        return timedelta(hours=self.settings.usage_lookback_hours)

    def endpoint(self, name: str) -> Endpoint:
        """Look an endpoint up by name."""
        for ep in self.endpoints:
            if ep.name == name:
                return ep
        raise KeyError(f"{self.name} has no endpoint {name!r}; have {[e.name for e in self.endpoints]}")

    @abstractmethod
    def probe(self) -> str:
        """One cheap authenticated call; returns the account id the API reveals, or ``''``.

        Raises:
            collector.core.http.FatalAPIError: the key was refused (401/403) or the call is invalid.
        """

    @abstractmethod
    def pages(self, endpoint: Endpoint, window: Window) -> Iterator[Page]:
        """Walk one endpoint's pages for an aligned window, oldest first."""


# -- helpers for pure parsers -------------------------------------------------------------------


def to_decimal(value: Any, what: str) -> Decimal:
    """Money or quantity from JSON: Decimal, int, numeric string (even ``1.29e-05``), never float math.

    Raises:
        ProviderError: the value is not a number.
    """
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise ProviderError(f"{what}: expected a number, got {value!r}")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # Only when a caller parsed JSON without parse_float=Decimal: repr is the shortest
        # decimal that reads back as this float, i.e. what the JSON text said.
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            dec = Decimal(value.strip())
        except InvalidOperation:
            raise ProviderError(f"{what}: not a number: {value[:40]!r}") from None
        if dec.is_finite():
            return dec
    raise ProviderError(f"{what}: expected a number, got {value!r}")


def to_int(value: Any, what: str) -> int:
    """A count from JSON (``null`` = 0)."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ProviderError(f"{what}: expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    dec = to_decimal(value, what)
    if dec != dec.to_integral_value():
        raise ProviderError(f"{what}: expected an integer, got {value!r}")
    return int(dec)


def variant(result: Mapping[str, Any], names: tuple[str, ...]) -> str:
    """Extra group-by values as ``k=v;k=v`` (only those present), so rows never collide."""
    return ";".join(f"{n}={result[n]}" for n in names if result.get(n) not in (None, ""))


def details(result: Mapping[str, Any], known: frozenset[str]) -> str:
    """Provider leftovers (unknown or unmapped fields that are set) as compact JSON, or ``''``."""
    rest = {k: v for k, v in result.items() if k not in known and v not in (None, 0, "", {}, [])}
    if not rest:
        return ""
    try:
        return _DETAILS_ENCODER.encode(rest)
    except TypeError:
        return _DETAILS_FALLBACK.encode(rest)


__all__ = [
    "SOURCE",
    "Context",
    "Endpoint",
    "KeyFormatError",
    "Page",
    "Parser",
    "Provider",
    "ProviderError",
    "details",
    "to_decimal",
    "to_int",
    "variant",
]
