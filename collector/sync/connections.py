"""Registered admin keys: add, test, list, disable, enable, replace the key, remove.

The plaintext key lives only in memory: it is checked (:meth:`Provider.check_key`), tested with
one cheap authenticated call, encrypted by the :class:`~collector.sync.vault.Vault` and stored with a
masked hint (``sk-admin…7Qx``). A cloud billing credential of several parts (an AWS key pair, an
Azure service principal, a Google service-account key) is one JSON object made by
:meth:`Provider.pack_credential` and goes through exactly the same path; the connection's plain
settings (scope, table, region) are validated by :meth:`Provider.check_options` and stored
beside it. The table models are in :mod:`collector.sync.tables`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy import delete, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from collector.core.http import APIError, FatalAPIError, InsecureURLError, check_base_url, redact
from collector.core.settings import Settings
from collector.sync.tables import Connection, SyncRun, SyncState
from collector.sync.vault import Vault
from providers import get_provider
from providers.base import Provider, ProviderError

log = logging.getLogger(__name__)
CONNECTIONS = Connection.__table__  # type: ignore[attr-defined]
SYNC_STATE = SyncState.__table__  # type: ignore[attr-defined]
SYNC_RUNS = SyncRun.__table__  # type: ignore[attr-defined]

STATUS_UNTESTED = "untested"
STATUS_OK = "ok"
STATUS_FAILING = "failing"
STATUS_AUTH_FAILED = "auth_failed"


class ConnectionsError(Exception):
    """A connection command failed; the message is for the user and holds no secret."""


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of one authenticated probe."""

    ok: bool
    account: str = ""
    message: str = ""
    auth_failed: bool = False


def now_utc() -> datetime:
    """The current UTC time (one place, so tests could freeze it)."""
    return datetime.now(UTC)


def probe_key(
    settings: Settings,
    provider: type[Provider],
    key: str,
    *,
    base_url: str = "",
    transport: httpx.BaseTransport | None = None,
    options: Mapping[str, str] | None = None,
) -> ProbeResult:
    """Test a key with the provider's cheapest authenticated call; never raises for API errors."""
    api = provider.connect(settings, key, base_url=base_url, transport=transport, options=options)
    try:
        account = api.probe()
    except FatalAPIError as exc:
        return ProbeResult(False, message=redact(str(exc), *provider.secrets_in(key)), auth_failed=exc.is_auth)
    except (APIError, ProviderError) as exc:
        return ProbeResult(False, message=redact(str(exc), *provider.secrets_in(key)))
    finally:
        api.close()
    return ProbeResult(True, account=account, message="ok")


def add_connection(
    engine: Engine,
    settings: Settings,
    vault: Vault,
    *,
    provider: str,
    label: str,
    key: str,
    base_url: str = "",
    test: bool = True,
    transport: httpx.BaseTransport | None = None,
    options: Mapping[str, str] | None = None,
) -> Connection:
    """Register an admin key (or a multi-part cloud credential): check it, test it, store it encrypted.

    ``options`` are the provider's plain settings (:meth:`Provider.option_fields`), e.g. an
    Azure ``scope`` or a BigQuery ``table``; ``account`` overrides the account rows are filed
    under (set it to the id your billing exports carry, so precedence can match them).

    Raises:
        ConnectionsError: unknown provider, wrong kind of key (with how to create an admin
            key), a failed test (with the provider's message), or a duplicate label.
        KeyFormatError: a malformed credential or setting.
    """
    cls = get_provider(provider)
    key = key.strip()
    cls.check_key(key)
    opts = cls.check_options(options or {})
    label = label.strip()
    if not label:
        raise ConnectionsError("a connection needs a --label")
    base_url = base_url.strip()
    if base_url:
        try:
            check_base_url(base_url)
        except InsecureURLError as exc:
            raise ConnectionsError(f"--base-url: {exc}") from None
    account, status, tested = "", STATUS_UNTESTED, None
    if test:
        result = probe_key(settings, cls, key, base_url=base_url, transport=transport, options=opts)
        if not result.ok:
            raise ConnectionsError(f"the key was not stored: test call failed: {result.message}")
        account, status, tested = result.account, STATUS_OK, now_utc()
    conn = Connection(
        provider=cls.name,
        label=label,
        key_encrypted=vault.encrypt(key),
        key_hint=cls.key_hint(key),
        base_url=base_url,
        options=json.dumps(opts, sort_keys=True) if opts else "",
        # Rows are filed under this account for good: the one set, else the org id the API
        # revealed, else the label.
        account=opts.get("account") or account or label,
        active=True,
        status=status,
        created_at=now_utc(),
        last_tested_at=tested,
    )
    with Session(engine) as session:
        session.add(conn)
        try:
            session.commit()
        except IntegrityError:
            raise ConnectionsError(f"a connection labelled {label!r} already exists") from None
        session.refresh(conn)
        session.expunge(conn)
    log.info("added %s connection %d (%s, key %s)", conn.provider, conn.id, conn.label, conn.key_hint)
    return conn


def get_connection(engine: Engine, connection_id: int) -> Connection:
    """Load one connection.

    Raises:
        ConnectionsError: no such id.
    """
    with Session(engine) as session:
        conn = session.get(Connection, connection_id)
        if conn is None:
            raise ConnectionsError(f"no connection with id {connection_id}")
        session.expunge(conn)
        return conn


def list_connections(engine: Engine, *, active_only: bool = False) -> list[Connection]:
    """All connections, oldest first."""
    stmt = select(Connection).order_by(CONNECTIONS.c.id)
    if active_only:
        stmt = stmt.where(CONNECTIONS.c.active.is_(True))
    with Session(engine) as session:
        rows = list(session.scalars(stmt))
        for row in rows:
            session.expunge(row)
        return rows


def _update(engine: Engine, connection_id: int, **values: object) -> None:
    with engine.begin() as db:
        result = db.execute(update(CONNECTIONS).where(CONNECTIONS.c.id == connection_id).values(**values))
        if result.rowcount == 0:
            raise ConnectionsError(f"no connection with id {connection_id}")


def set_active(engine: Engine, connection_id: int, active: bool) -> None:
    """Disable (the scheduler drops its job) or enable a connection."""
    _update(engine, connection_id, active=active)


def mark_status(engine: Engine, connection_id: int, status: str, error: str = "", **extra: object) -> None:
    """Record a connection's health; ``auth_failed`` pauses its scheduled job."""
    _update(engine, connection_id, status=status, last_error=redact(error)[:2000], **extra)


def retest_connection(
    engine: Engine,
    settings: Settings,
    vault: Vault,
    connection_id: int,
    *,
    transport: httpx.BaseTransport | None = None,
) -> ProbeResult:
    """Re-test a stored key; success clears a failure (and un-pauses the job)."""
    conn = get_connection(engine, connection_id)
    key = vault.decrypt(conn.key_encrypted)
    result = probe_key(
        settings,
        get_provider(conn.provider),
        key,
        base_url=conn.base_url,
        transport=transport,
        options=conn.option_values,
    )
    if result.ok:
        mark_status(engine, connection_id, STATUS_OK, last_tested_at=now_utc())
    else:
        status = STATUS_AUTH_FAILED if result.auth_failed else STATUS_FAILING
        mark_status(engine, connection_id, status, result.message, last_tested_at=now_utc())
    return result


def replace_key(
    engine: Engine,
    settings: Settings,
    vault: Vault,
    connection_id: int,
    key: str,
    *,
    test: bool = True,
    transport: httpx.BaseTransport | None = None,
) -> Connection:
    """Store a new key for a connection (same provider and account), testing it first."""
    conn = get_connection(engine, connection_id)
    cls = get_provider(conn.provider)
    key = key.strip()
    cls.check_key(key)
    status, tested = STATUS_UNTESTED, None
    if test:
        result = probe_key(settings, cls, key, base_url=conn.base_url, transport=transport, options=conn.option_values)
        if not result.ok:
            raise ConnectionsError(f"the key was not stored: test call failed: {result.message}")
        status, tested = STATUS_OK, now_utc()
    _update(
        engine,
        connection_id,
        key_encrypted=vault.encrypt(key),
        key_hint=cls.key_hint(key),
        status=status,
        last_error="",
        last_tested_at=tested,
    )
    return get_connection(engine, connection_id)


def record_facts(engine: Engine, connection_id: int, facts: Mapping[str, str]) -> None:
    """Store what the provider last said about the account that is not usage (a balance ...)."""
    values = {str(k)[:64]: str(v)[:256] for k, v in facts.items()}
    _update(engine, connection_id, facts=json.dumps(values, sort_keys=True) if values else "")


def remove_connection(engine: Engine, connection_id: int) -> None:
    """Delete a connection and its high-water marks; usage rows and the run log are kept."""
    get_connection(engine, connection_id)
    with engine.begin() as db:
        db.execute(delete(SYNC_STATE).where(SYNC_STATE.c.connection_id == connection_id))
        db.execute(delete(CONNECTIONS).where(CONNECTIONS.c.id == connection_id))


def rotate_secrets(engine: Engine, vault: Vault) -> int:
    """Re-encrypt every stored key under the vault's newest secret; returns how many.

    All in one transaction: either every key moves to the new secret or none does.
    """
    with engine.begin() as db:
        rows = db.execute(select(CONNECTIONS.c.id, CONNECTIONS.c.key_encrypted)).all()
        for row in rows:
            db.execute(
                update(CONNECTIONS)
                .where(CONNECTIONS.c.id == row.id)
                .values(key_encrypted=vault.rotate(row.key_encrypted))
            )
    return len(rows)


__all__ = [
    "STATUS_AUTH_FAILED",
    "STATUS_FAILING",
    "STATUS_OK",
    "STATUS_UNTESTED",
    "Connection",
    "ConnectionsError",
    "ProbeResult",
    "add_connection",
    "get_connection",
    "list_connections",
    "mark_status",
    "probe_key",
    "record_facts",
    "remove_connection",
    "replace_key",
    "retest_connection",
    "rotate_secrets",
    "set_active",
]
