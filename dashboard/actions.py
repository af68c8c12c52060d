"""What the admin and import pages *do*: thin calls into the features that own the data.

Connections and syncs (:mod:`collector.sync.connections`, :mod:`collector.sync.engine`), CSV import
(:mod:`importers.service`) and proxy monitor tokens (:mod:`collector.proxy.tokens`) are called
with the dashboard's engine, the product settings and the key vault, exactly as the
``llm-usage`` commands call them. Each function returns one line for the page to show; every
line and every error passes through :func:`collector.core.http.redact`, so a provider message that
quotes a key never reaches the browser.
"""

from __future__ import annotations

import io

from collector.app import HOOKS
from collector.core.http import redact
from collector.core.settings import get_settings
from collector.proxy import tokens
from collector.sync import connections
from collector.sync.engine import sync_connection
from collector.sync.vault import Vault, load_vault
from dashboard import queries
from importers.service import ImportResult, import_file


def safe_message(exc: BaseException) -> str:
    """An exception as one line with anything key-shaped masked."""
    return redact(f"{type(exc).__name__}: {exc}")


def _vault() -> Vault:
    # Same source as the CLI: LLM_USAGE_SECRET_KEYS, else the data folder's secret file.
    return load_vault(get_settings())


def add_connection(provider: str, label: str, key: str, base_url: str = "", *, test: bool = True) -> str:
    """Test and store an admin key (encrypted); returns what was added, by its hint only."""
    conn = connections.add_connection(
        queries.engine(),
        get_settings(),
        _vault(),
        provider=provider,
        label=label,
        key=key,
        base_url=base_url,
        test=test,
    )
    return f"Added {conn.provider} connection {conn.label!r} (key {conn.key_hint}, account {conn.account})."


def test_connection(connection_id: int) -> tuple[bool, str]:
    """Re-test a stored key with one authenticated call: ``(ok, message)``."""
    result = connections.retest_connection(queries.engine(), get_settings(), _vault(), connection_id)
    if result.ok:
        account = f" (account {result.account})" if result.account else ""
        return True, f"connection {connection_id}: the key works{account}"
    return False, redact(f"connection {connection_id}: {result.message}")


def sync_now(connection_id: int) -> tuple[bool, str]:
    """Run one sync of a connection now (as ``llm-usage connections sync ID``): ``(ok, message)``."""
    summary = sync_connection(queries.engine(), get_settings(), connection_id, vault=_vault(), hooks=HOOKS)
    if summary.skipped:
        return False, f"connection {connection_id}: skipped ({summary.skipped})"
    failed = [f"{e.endpoint}: {e.error or e.status}" for e in summary.endpoints if e.status != "ok"]
    if summary.error or failed:
        return False, redact(f"connection {connection_id}: " + "; ".join(filter(None, [summary.error, *failed])))
    return True, f"connection {connection_id}: {len(summary.endpoints)} endpoint(s), {summary.rows:,} rows stored"


def set_active(connection_id: int, active: bool) -> None:
    """Enable or disable a connection (the scheduler drops a disabled one's job)."""
    connections.set_active(queries.engine(), connection_id, active)


def replace_key(connection_id: int, key: str) -> str:
    """Test and store a new key for a connection; returns its new hint."""
    conn = connections.replace_key(queries.engine(), get_settings(), _vault(), connection_id, key)
    return f"connection {connection_id}: key replaced (now {conn.key_hint})"


def remove_connection(connection_id: int) -> None:
    """Delete a connection and its high-water marks (usage rows and the run log stay)."""
    connections.remove_connection(queries.engine(), connection_id)


def import_upload(data: bytes, name: str, *, dry_run: bool, who: str) -> ImportResult:
    """Dry-run or import one uploaded file through :func:`importers.service.import_file`.

    Each call gets its own file object: the importer closes the one it reads, and the same
    upload is read twice (the dry run, then the import after the confirm).
    """
    return import_file(
        io.BytesIO(data),
        dry_run=dry_run,
        engine=queries.engine(),
        settings=get_settings(),
        who=who,
        name=name,
        hooks=HOOKS,
    )


def create_token(team: str, project: str, label: str = "") -> tuple[int, str]:
    """Mint a monitor token; the token itself is returned once and never stored."""
    return tokens.create_token(queries.engine(), team=team, project=project, label=label)


def revoke_token(token_id: int) -> bool:
    """Revoke a monitor token; False when it was already revoked."""
    return tokens.revoke_token(queries.engine(), token_id)
