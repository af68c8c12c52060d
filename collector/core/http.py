"""All HTTP behaviour in one place (code-anchors §11.3, design.md "Sync engine").

:func:`make_client` builds the one kind of ``httpx.Client`` providers use: explicit timeouts, a
user agent naming the product, and no secrets in anything it raises. :func:`send` wraps a
request in the retry policy: 429, 5xx and timeouts are retried with capped exponential backoff
and jitter, honouring ``Retry-After``; 400/401/403/404 fail at once with the provider's message.
Providers never sleep, retry or catch ``httpx`` errors themselves.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from collector import __version__
from collector.core.settings import Settings

USER_AGENT = f"llm-usage-collector/{__version__} (+https://github.com/llm-usage-collector)"
SECRET_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "x-goog-api-key", "proxy-authorization"})
#: Send small writes at once (see :func:`make_async_client`).
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
T = TypeVar("T")
_KEY_PATTERN = re.compile(r"(sk-[A-Za-z0-9_\-]{4})[A-Za-z0-9_\-]{8,}")


class APIError(Exception):
    """A provider answered with an error; the message is the provider's, secrets redacted."""

    def __init__(self, message: str, *, status: int | None = None, url: str = "") -> None:
        super().__init__(redact(message))
        self.status = status
        self.url = redact(url)


class RetriableAPIError(APIError):
    """429, 5xx, timeouts, dropped connections, truncated bodies: worth another try."""

    def __init__(self, message: str, *, status: int | None = None, url: str = "", retry_after: float | None = None):
        super().__init__(message, status=status, url=url)
        self.retry_after = retry_after


class FatalAPIError(APIError):
    """400/401/403/404 and other client errors: retrying cannot help."""

    @property
    def is_auth(self) -> bool:
        """True for 401/403: the key was revoked or lacks the admin scope."""
        return self.status in (401, 403)


def secret_variants(secret: str) -> list[str]:
    """The spellings of a known key a provider may echo: whole, and without its prefix(es).

    ``sk-admin-AbC…`` is also matched as ``admin-AbC…`` and ``AbC…`` (a provider quoting the
    key's body), down to a 12-character remainder so short words are never masked.
    """
    secret = secret.strip()
    if len(secret) < 12:
        return [secret] if secret else []
    out = [secret]
    for i, ch in enumerate(secret[:24]):
        if ch in "-_" and len(secret) - i - 1 >= 12:
            out.append(secret[i + 1 :])
    return out


def redact(text: str, *secrets: str) -> str:
    """Mask anything key-shaped (``sk-...``) in a message, and every known secret in any case.

    Args:
        text: a message that may quote a key (a provider's error, an exception).
        *secrets: plaintext keys known where the message is made (the connection's admin key):
            each is masked wherever it appears, upper- or lower-cased, with or without its
            prefix (:func:`secret_variants`), not only when it looks like ``sk-…``.
    """
    for secret in secrets:
        for variant in sorted(secret_variants(secret), key=len, reverse=True):
            text = re.sub(re.escape(variant), "…", text, flags=re.IGNORECASE)
    return _KEY_PATTERN.sub(r"\1…", text)


def mask_url(url: str) -> str:
    """A URL to show: user name and password replaced by ``***``, query string dropped."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "(invalid URL)"
    if parsed.userinfo:
        parsed = parsed.copy_with(username="***", password=None)
    return str(parsed.copy_with(query=None, fragment=None))


class InsecureURLError(ValueError):
    """A base URL that would send an admin key in clear text (or carries credentials itself)."""


_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(url: str) -> str:
    """Return ``url`` if an admin key may be sent to it: ``https``, or ``http`` to a loopback host.

    Raises:
        InsecureURLError: another scheme, plain ``http`` to a network host, user:password in
            the URL, a query or fragment, or no host.
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise InsecureURLError(f"not a URL: {exc}") from None
    if parsed.scheme not in ("https", "http") or not parsed.host:
        raise InsecureURLError("the base URL must be https://host/… (http only for localhost)")
    if parsed.scheme == "http" and not is_loopback(parsed.host):
        raise InsecureURLError(
            f"refusing plain http to {parsed.host}: the admin key would cross the network unencrypted; use https "
            "(http is accepted only for loopback addresses such as 127.0.0.1)"
        )
    if parsed.userinfo:
        raise InsecureURLError("the base URL must not contain a user name or password")
    if parsed.query or parsed.fragment:
        raise InsecureURLError("the base URL must not contain a query string or fragment")
    return url


def mask_key(key: str) -> str:
    """The hint shown for a stored key: prefix and last three characters (``sk-admin…7Qx``)."""
    if len(key) <= 12:
        return "…" + key[-3:]
    prefix = key[: key.index("-", 3) if key.startswith("sk-") and "-" in key[3:12] else 8]
    return f"{prefix}…{key[-3:]}"


def make_client(
    settings: Settings,
    *,
    base_url: str = "",
    headers: Mapping[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """The product's HTTP client: timeouts, user agent, optional injected transport for tests."""
    merged = {"User-Agent": USER_AGENT, **(headers or {})}
    return httpx.Client(
        base_url=base_url,
        headers=merged,
        timeout=httpx.Timeout(settings.http_timeout_seconds, connect=10.0),
        transport=transport,
        follow_redirects=False,
    )


def make_async_client(
    settings: Settings,
    *,
    base_url: str = "",
    transport: httpx.AsyncBaseTransport | None = None,
    max_connections: int = 512,
) -> httpx.AsyncClient:
    """The async twin of :func:`make_client`, with a keep-alive pool (used by the proxy).

    Sockets get ``TCP_NODELAY``: httpx writes a request's headers and body separately, and with
    Nagle's algorithm the body waits for the server's delayed ACK (~40 ms on Linux loopback).
    """
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    if transport is None:
        transport = httpx.AsyncHTTPTransport(limits=limits, socket_options=NODELAY)
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(settings.http_timeout_seconds, connect=10.0),
        transport=transport,
        limits=limits,
        follow_redirects=False,
    )


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return _ms_ratelimit_retry_after(response.headers)
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _ms_ratelimit_retry_after(headers: httpx.Headers) -> float | None:
    """Azure Cost Management's throttling waits (provider-apis.md §5.1, [UNCONFIRMED] names).

    A 429 from Cost Management says how long to wait per quota in headers such as
    ``x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after`` (seconds) instead of, or beside,
    ``Retry-After``; the longest of them is the wait that satisfies every quota.
    """
    waits = []
    for name, value in headers.items():
        if name.lower().startswith("x-ms-ratelimit-") and name.lower().endswith("retry-after"):
            try:
                waits.append(max(0.0, float(value)))
            except ValueError:
                continue
    return max(waits) if waits else None


#: Longest provider error text kept (in ``sync_runs``, ``last_error``, ``status``, the dashboard).
MAX_ERROR_TEXT = 300
_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL)
_SPACE = re.compile(r"\s+")


def trim_error(text: str, limit: int = MAX_ERROR_TEXT) -> str:
    """One line of at most ``limit`` characters; an HTML page (a proxy's or CDN's) becomes its text."""
    if "<" in text and re.search(r"<(!doctype|html|head|body|title|div|p|h1)\b", text, re.IGNORECASE):
        title = re.search(r"<title[^>]*>(.*?)</title\s*>", text, re.IGNORECASE | re.DOTALL)
        text = "HTML page: " + (title.group(1) if title else _TAG.sub(" ", text))
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_message(response: httpx.Response) -> str:
    """The provider's own error text: ``error.message`` when JSON, else the body's start, trimmed."""
    try:
        body = response.json()
    except ValueError:
        return trim_error(response.text) or response.reason_phrase
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return trim_error(str(err["message"]))
        if isinstance(err, str):
            return trim_error(err)
    return trim_error(response.text)


def request_secrets(request: httpx.Request) -> tuple[str, ...]:
    """The credentials a request carried (its secret headers), to mask in whatever it caused."""
    out = []
    for name in SECRET_HEADERS:
        value = request.headers.get(name)
        if value:
            out.append(value[7:] if value[:7].lower() == "bearer " else value)
    return tuple(out)


def check(response: httpx.Response) -> httpx.Response:
    """Raise the classified error for a failed response; return it unchanged otherwise."""
    status = response.status_code
    if status < 400:
        return response
    # A provider may echo the key it was sent (upper-cased, without its prefix ...): mask it exactly.
    message = redact(
        f"HTTP {status} from {response.request.url.host}: {error_message(response)}", *request_secrets(response.request)
    )
    if status == 429 or status >= 500:
        raise RetriableAPIError(
            message, status=status, url=str(response.request.url), retry_after=_retry_after(response)
        )
    raise FatalAPIError(message, status=status, url=str(response.request.url))


def _wait(settings: Settings) -> Any:
    backoff = wait_exponential_jitter(multiplier=0.5, max=settings.http_max_backoff_seconds, jitter=0.5)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetriableAPIError) and exc.retry_after is not None:
            return min(exc.retry_after, settings.http_max_backoff_seconds)
        return float(backoff(state))

    return wait


def send(
    client: httpx.Client,
    method: str,
    url: str,
    settings: Settings,
    *,
    sleep: Any = None,
    parse_float: Callable[[str], Any] | None = None,
    **kwargs: Any,
) -> Any:
    """Send a request under the retry policy and return its parsed JSON body.

    Args:
        client: from :func:`make_client`.
        method: HTTP method.
        url: path or URL.
        settings: supplies attempts and backoff caps.
        sleep: replaces ``time.sleep`` (tests pass a recorder).
        parse_float: JSON float parser; ``decimal.Decimal`` keeps money exact (design rule 3).
        **kwargs: passed to ``client.request`` (``params``, ``json`` ...).

    Returns:
        The decoded JSON body.

    Raises:
        FatalAPIError: on a client error, at once.
        RetriableAPIError: when every attempt failed.
    """
    return _retrying(settings, sleep)(_send_once, client, method, url, kwargs, parse_float)


def _retrying(settings: Settings, sleep: Any = None) -> Retrying:
    return Retrying(
        retry=retry_if_exception_type(RetriableAPIError),
        stop=stop_after_attempt(settings.http_max_attempts),
        wait=_wait(settings),
        reraise=True,
        **({"sleep": sleep} if sleep is not None else {}),
    )


def call(fn: Callable[[], T], settings: Settings, *, sleep: Any = None) -> T:
    """Run ``fn`` under the same retry policy as :func:`send`.

    For the official cloud SDKs (boto3, Google's clients), whose own retries are turned off so
    that every provider retries the same way: ``fn`` makes one call and raises
    :class:`RetriableAPIError` for what is worth another try (the SDK error mapped by the
    provider), :class:`FatalAPIError` for what is not.
    """
    return _retrying(settings, sleep)(fn)


def _send_once(
    client: httpx.Client,
    method: str,
    url: str,
    kwargs: dict[str, Any],
    parse_float: Callable[[str], Any] | None = None,
) -> Any:
    try:
        response = client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise RetriableAPIError(f"timeout talking to {redact(str(url))}: {type(exc).__name__}") from None
    except httpx.TransportError as exc:
        raise RetriableAPIError(f"connection error talking to {redact(str(url))}: {type(exc).__name__}") from None
    check(response)
    try:
        if parse_float is not None:
            return json.loads(response.content, parse_float=parse_float)
        return response.json()
    except ValueError:
        raise RetriableAPIError(
            f"truncated or invalid JSON from {response.request.url.host} (HTTP {response.status_code})",
            status=response.status_code,
        ) from None
