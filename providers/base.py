"""The provider contract (code-anchors §11.1-§11.2): endpoints, fetch by pages, pure parsers.

A provider module declares its credential (one admin key, or for cloud billing several parts:
:class:`ConnField`), its admin-key rules, its endpoints (path, bucket width, page size,
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

from collector.core.http import FatalAPIError, check_base_url, make_client, mask_key
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
class ConnField:
    """One part of a multi-part credential or one setting of a connection, as the CLI and page ask.

    Attributes:
        name: JSON key in the stored credential, or the option's name (CLI flag ``--set name=...``).
        label: what the prompt and the form call it.
        secret: typed hidden, never accepted on a command line, never shown again.
        vault: stored encrypted with the credential (False: a plain setting of the connection,
            such as a scope or table name, shown in lists).
        required: must be given.
        help: one sentence for the prompt and the form.
        multiline: a document (a service-account JSON), asked as a text area or a file.
    """

    name: str
    label: str
    secret: bool = False
    vault: bool = True
    required: bool = True
    help: str = ""
    multiline: bool = False


#: Option values are short identifiers (scopes, table ids, ARNs, names): bounded and printable.
MAX_OPTION_LENGTH = 512


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
    #: Parts of a multi-part credential (``vault=True``) and the connection's plain settings;
    #: without vault parts the credential is one key.
    fields: ClassVar[tuple[ConnField, ...]] = ()
    #: Other names ``connections add`` accepts for this provider (``aws`` for ``aws_bedrock``).
    aliases: ClassVar[tuple[str, ...]] = ()

    def __init__(self, client: httpx.Client, settings: Settings, options: Mapping[str, str] | None = None) -> None:
        self.client = client
        self.settings = settings
        self.options: dict[str, str] = dict(options or {})

    # -- keys -------------------------------------------------------------------------------

    @classmethod
    @abstractmethod
    def auth_headers(cls, key: str) -> dict[str, str]:
        """Headers that authenticate ``key`` (plus any fixed headers the API requires)."""

    @classmethod
    def check_key(cls, key: str) -> None:
        """Refuse a key that cannot read usage, saying what kind of key is needed and where.

        A multi-part credential (:attr:`fields`) is the JSON object :meth:`pack_credential`
        made; each provider checks the parts' shapes in :meth:`check_credential`.

        Raises:
            KeyFormatError: with guidance; the message never includes the key.
        """
        if cls.vault_fields():
            cls.check_credential(cls.credential(key))
            return
        if not key or any(c.isspace() for c in key):
            raise KeyFormatError("the key is empty or contains whitespace")
        if not key.startswith(cls.admin_key_prefixes):
            raise KeyFormatError(cls.key_help)

    # -- multi-part credentials and settings -------------------------------------------------

    @classmethod
    def vault_fields(cls) -> tuple[ConnField, ...]:
        """The parts stored encrypted (the credential)."""
        return tuple(f for f in cls.fields if f.vault)

    @classmethod
    def option_fields(cls) -> tuple[ConnField, ...]:
        """The plain settings of a connection (scope, table, region ...)."""
        return tuple(f for f in cls.fields if not f.vault)

    @classmethod
    def pack_credential(cls, values: Mapping[str, str]) -> str:
        """The text the vault encrypts: the key itself, or a JSON object of the credential's parts.

        Raises:
            KeyFormatError: a required part is missing or an unknown part was given.
        """
        if not cls.vault_fields():
            return str(values.get("key", "")).strip()
        known = {f.name for f in cls.vault_fields()}
        unknown = sorted(set(values) - known)
        if unknown:
            raise KeyFormatError(f"{cls.title} credentials have no part named {', '.join(unknown)}")
        packed = {f.name: str(values.get(f.name) or "").strip() for f in cls.vault_fields()}
        missing = [f.label for f in cls.vault_fields() if f.required and not packed[f.name]]
        if missing:
            raise KeyFormatError(f"{cls.title} credentials need: {', '.join(missing)}")
        return json.dumps({k: v for k, v in packed.items() if v}, sort_keys=True)

    @classmethod
    def credential(cls, key: str) -> dict[str, str]:
        """The parts of a stored multi-part credential.

        Raises:
            KeyFormatError: not the JSON object :meth:`pack_credential` writes (never echoed).
        """
        try:
            parts = json.loads(key)
        except ValueError:
            raise KeyFormatError(f"{cls.title} credentials must be a JSON object of their parts") from None
        if not isinstance(parts, dict) or not all(isinstance(v, str) for v in parts.values()):
            raise KeyFormatError(f"{cls.title} credentials must be a JSON object of text parts")
        return parts

    @classmethod
    def check_credential(cls, parts: Mapping[str, str]) -> None:
        """Check a multi-part credential's parts (providers with :attr:`fields` override it)."""
        missing = [f.label for f in cls.vault_fields() if f.required and not parts.get(f.name)]
        if missing:
            raise KeyFormatError(f"{cls.title} credentials need: {', '.join(missing)}")

    @classmethod
    def check_options(cls, options: Mapping[str, str]) -> dict[str, str]:
        """Validate a connection's plain settings (hostile input: bounded, printable, known names).

        Returns:
            The settings to store, stripped, without empty values.

        Raises:
            KeyFormatError: an unknown or malformed setting, or a required one missing.
        """
        known = {f.name: f for f in cls.option_fields()}
        out: dict[str, str] = {}
        for name, raw in options.items():
            if name not in known:
                names = ", ".join(sorted(known)) or "none"
                raise KeyFormatError(f"{cls.title} connections have no setting {name[:40]!r} (settings: {names})")
            value = str(raw).strip()
            if len(value) > MAX_OPTION_LENGTH or any(not ch.isprintable() for ch in value):
                raise KeyFormatError(f"setting {name}: at most {MAX_OPTION_LENGTH} printable characters")
            if value:
                out[name] = value
        missing = [f.name for f in known.values() if f.required and not out.get(f.name)]
        if missing:
            raise KeyFormatError(f"{cls.title} connections need the setting(s): {', '.join(missing)}")
        return out

    @classmethod
    def key_hint(cls, key: str) -> str:
        """What lists show for a stored credential: never enough to use it."""
        return mask_key(key)

    @classmethod
    def secrets_in(cls, key: str) -> tuple[str, ...]:
        """The secret strings inside a stored credential, for exact redaction and leak tests."""
        if not cls.vault_fields():
            return (key,)
        parts = cls.credential(key)
        return tuple(parts[f.name] for f in cls.vault_fields() if f.secret and parts.get(f.name))

    # -- HTTP -------------------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        settings: Settings,
        key: str,
        *,
        base_url: str = "",
        transport: httpx.BaseTransport | None = None,
        options: Mapping[str, str] | None = None,
    ) -> Provider:
        """A provider instance with its own client from :func:`collector.core.http.make_client`.

        Raises:
            collector.core.http.InsecureURLError: the base URL is not https (nor loopback http).
        """
        url = check_base_url(base_url or str(getattr(settings, cls.base_url_setting)))
        client = make_client(
            settings, base_url=url.rstrip("/") + "/", headers=cls.auth_headers(key), transport=transport
        )
        return cls(client, settings, options)

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

    def min_interval(self, endpoint: Endpoint) -> timedelta | None:
        """Scheduled syncs fetch ``endpoint`` at most this often (None: every sync).

        For APIs whose every call is charged (Cost Explorer, provider-apis.md §6.1).
        """
        return None

    def account_facts(self) -> dict[str, str]:
        """Levels the provider reports about the account (prepaid balance, invoice preview).

        Shown beside the connection, never stored as usage: a balance is not spend, and summing
        it over days would mean nothing (design rule 7). Read after a successful sync.
        """
        return {}


def check_url(url: str, what: str) -> str:
    """``url`` if a credential may be sent to it: https, or plain http to a loopback address only.

    Raises:
        KeyFormatError: another scheme, http to a network host, credentials or a query in the URL.
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise KeyFormatError(f"{what}: not a URL") from None
    loopback = parsed.host in ("localhost", "::1") or parsed.host.startswith("127.")
    if parsed.scheme not in ("https", "http") or not parsed.host or (parsed.scheme == "http" and not loopback):
        raise KeyFormatError(f"{what}: must be https://host/... (plain http only to a loopback address)")
    if parsed.userinfo or parsed.query or parsed.fragment:
        raise KeyFormatError(f"{what}: must not carry a user, password, query or fragment")
    return url


def auth_failure(message: str) -> FatalAPIError:
    """A refused credential, as the sync engine expects it (pauses the connection at once)."""
    return FatalAPIError(message, status=401)


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
    "ConnField",
    "Context",
    "Endpoint",
    "KeyFormatError",
    "Page",
    "Parser",
    "Provider",
    "ProviderError",
    "auth_failure",
    "check_url",
    "details",
    "to_decimal",
    "to_int",
    "variant",
]
