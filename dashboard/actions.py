"""Everything the dashboard *writes*: thin calls into the features that own the data.

Connections and syncs (:mod:`collector.sync.connections`, :mod:`collector.sync.engine`), CSV import
(:mod:`importers.service`), proxy monitor tokens (:mod:`collector.proxy.tokens`), budgets, team
rules and exchange rates (:mod:`collector.finance`) and dashboard accounts
(:mod:`collector.auth.users`) are called with the dashboard's engine, the product settings and the
key vault, exactly as the ``llm-usage`` commands call them. Pages never hold the engine: every
write goes through a function here, and each one clears the read caches of
:mod:`dashboard.queries` once it has written, so the next run shows the change.

Connection functions return one line for the page to show; every such line and every error passes
through :func:`collector.core.http.redact`, so a provider message that quotes a key never reaches
the browser.
"""

from __future__ import annotations

import functools
import hashlib
import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from collector.app import HOOKS
from collector.auth import sessions, users
from collector.core.http import redact
from collector.core.settings import get_settings
from collector.finance import budgets, caps, chargeback, fx
from collector.proxy import tokens
from collector.proxy.rollup import rollup_now
from collector.query import billing
from collector.sync import connections
from collector.sync.engine import sync_connection
from collector.sync.vault import Vault, load_vault
from dashboard import queries
from importers.service import ImportResult, import_file
from providers import get_provider

P = ParamSpec("P")
R = TypeVar("R")


def _writes(fn: Callable[P, R]) -> Callable[P, R]:
    """Clear the dashboard's read caches after ``fn`` ran (also when it failed half-way)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        finally:
            _forget_previews()
            queries.clear_caches()

    return wrapper


def safe_message(exc: BaseException) -> str:
    """An exception as one line with anything key-shaped masked."""
    return redact(f"{type(exc).__name__}: {exc}")


def _vault() -> Vault:
    # Same source as the CLI: LLM_USAGE_SECRET_KEYS, else the data folder's secret file.
    return load_vault(get_settings())


@_writes
def add_connection(
    provider: str,
    label: str,
    key: str,
    base_url: str = "",
    *,
    test: bool = True,
    parts: Mapping[str, str] | None = None,
    options: Mapping[str, str] | None = None,
) -> str:
    """Test and store an admin key or a cloud credential (encrypted); returns what was added, by its hint only.

    ``parts`` are a multi-part credential's parts as typed (packed here, never kept), ``options``
    the connection's plain settings; empty values are left out.
    """
    cls = get_provider(provider)
    if cls.vault_fields():
        key = cls.pack_credential({k: v for k, v in (parts or {}).items() if v.strip()})
    conn = connections.add_connection(
        queries.engine(),
        get_settings(),
        _vault(),
        provider=provider,
        label=label,
        key=key,
        base_url=base_url,
        test=test,
        options={k: v for k, v in (options or {}).items() if v.strip()},
    )
    return f"Added {conn.provider} connection {conn.label!r} (key {conn.key_hint}, account {conn.account})."


@_writes
def test_connection(connection_id: int) -> tuple[bool, str]:
    """Re-test a stored key with one authenticated call: ``(ok, message)``."""
    result = connections.retest_connection(queries.engine(), get_settings(), _vault(), connection_id)
    if result.ok:
        account = f" (account {result.account})" if result.account else ""
        return True, f"connection {connection_id}: the key works{account}"
    return False, redact(f"connection {connection_id}: {result.message}")


@_writes
def sync_now(connection_id: int) -> tuple[bool, str]:
    """Run one sync of a connection now (as ``llm-usage connections sync ID``): ``(ok, message)``."""
    summary = sync_connection(queries.engine(), get_settings(), connection_id, vault=_vault(), hooks=HOOKS)
    if summary.skipped:  # another process is syncing it right now: not a failure
        return True, f"connection {connection_id}: {summary.note}"
    failed = [f"{e.endpoint}: {e.error or e.status}" for e in summary.endpoints if e.status != "ok"]
    if summary.error or failed:
        return False, redact(f"connection {connection_id}: " + "; ".join(filter(None, [summary.error, *failed])))
    stored = f"connection {connection_id}: {len(summary.endpoints)} endpoint(s), {summary.rows:,} rows stored"
    return True, "\n".join([stored, *(f"billed twice: {o.describe()}" for o in summary.overlaps)])


@_writes
def set_active(connection_id: int, active: bool) -> None:
    """Enable or disable a connection (the scheduler drops a disabled one's job)."""
    connections.set_active(queries.engine(), connection_id, active)


@_writes
def replace_key(connection_id: int, key: str) -> str:
    """Test and store a new key for a connection; returns its new hint."""
    conn = connections.replace_key(queries.engine(), get_settings(), _vault(), connection_id, key)
    return f"connection {connection_id}: key replaced (now {conn.key_hint})"


@_writes
def remove_connection(connection_id: int) -> None:
    """Delete a connection and its high-water marks (usage rows and the run log stay)."""
    connections.remove_connection(queries.engine(), connection_id)


#: Dry runs kept per (database, bytes, name): the Import page reruns on every click, and a dry
#: run of a large export costs seconds of CPU; a hostile client must not make every rerun pay it.
_PREVIEWS: OrderedDict[tuple[str, str, str], ImportResult] = OrderedDict()
_PREVIEW_LIMIT = 32
_PREVIEW_LOCK = threading.Lock()


def _forget_previews() -> None:
    """Every write may change a dry run's answer (a duplicate, which billed source counts)."""
    with _PREVIEW_LOCK:
        _PREVIEWS.clear()


def preview_upload(data: bytes, name: str, *, who: str) -> ImportResult:
    """The dry run of one upload, computed once per distinct bytes (SHA-256) and name, then reused.

    Any write through this module (a real import, a billing preference ...) forgets every kept
    dry run: the next one must see the file as a duplicate, or another source counting.
    """
    key = (str(queries.engine().url), hashlib.sha256(data).hexdigest(), name)
    with _PREVIEW_LOCK:
        if (hit := _PREVIEWS.get(key)) is not None:
            _PREVIEWS.move_to_end(key)
            return hit
    result = import_upload(data, name, dry_run=True, who=who)
    with _PREVIEW_LOCK:
        _PREVIEWS[key] = result
        while len(_PREVIEWS) > _PREVIEW_LIMIT:
            _PREVIEWS.popitem(last=False)
    return result


def import_upload(data: bytes, name: str, *, dry_run: bool, who: str) -> ImportResult:
    """Dry-run or import one uploaded file through :func:`importers.service.import_file`.

    Each call gets its own file object: the importer closes the one it reads, and the same
    upload is read twice (the dry run, then the import after the confirm). Only a real import
    clears the read caches (and the kept dry runs of :func:`preview_upload`).
    """
    try:
        return import_file(
            io.BytesIO(data),
            dry_run=dry_run,
            engine=queries.engine(),
            settings=get_settings(),
            who=who,
            name=name,
            hooks=HOOKS,
        )
    finally:
        if not dry_run:
            _forget_previews()
            queries.clear_caches()


@_writes
def prefer_billing_source(provider: str, account: str, source: str, who: str) -> None:
    """Make one billed source (``csv:aws_cur``) count for a provider account (design rule 5)."""
    billing.set_preference(queries.engine(), provider, account, billing.BillingSource.parse(source), who=who)


@_writes
def clear_billing_preference(provider: str, account: str) -> bool:
    """Back to the default precedence for a provider account."""
    return billing.clear_preference(queries.engine(), provider, account)


@_writes
def create_token(team: str, project: str, label: str = "") -> tuple[int, str]:
    """Mint a monitor token; the token itself is returned once and never stored."""
    return tokens.create_token(queries.engine(), team=team, project=project, label=label)


@_writes
def revoke_token(token_id: int) -> bool:
    """Revoke a monitor token; False when it was already revoked."""
    return tokens.revoke_token(queries.engine(), token_id)


# -- budgets, team rules and exchange rates -------------------------------------------------------


@_writes
def rollup_proxy() -> list[str]:
    """Roll up the proxy's and the OTLP receiver's events now (``llm-usage proxy rollup``)."""
    return rollup_now(queries.engine(), get_settings(), HOOKS)


@_writes
def create_budget(**values: Any) -> int:
    """Add a budget (validated by :func:`collector.finance.budgets.create_budget`); returns its id.

    Raises:
        BudgetError: bad input, named.
    """
    return budgets.create_budget(queries.engine(), **values)


@_writes
def update_budget(budget_id: int, **changes: Any) -> budgets.Budget:
    """Change a budget's amount, thresholds, forecast alert or active flag.

    Raises:
        BudgetError: bad input, named.
    """
    return budgets.update_budget(queries.engine(), budget_id, **changes)


@_writes
def set_budget_enforce(budget_id: int, enforce: bool) -> budgets.Budget:
    """Turn a budget's proxy cap on or off (``llm-usage budgets enforce``).

    Raises:
        BudgetError: unknown id, or a scope the proxy cannot enforce (account budgets).
    """
    return caps.set_enforce(queries.engine(), budget_id, enforce)


@_writes
def lift_budget(budget_id: int) -> datetime:
    """Let calls through an enforced budget until its period ends (``llm-usage budgets lift``).

    Raises:
        BudgetError: unknown id, a budget not enforced, or no current period.
    """
    return caps.lift(queries.engine(), budget_id, queries.as_of())


@_writes
def delete_budget(budget_id: int) -> None:
    """Delete a budget (its sent alerts stay in the alert log)."""
    budgets.delete_budget(queries.engine(), budget_id)


def _rule(row: Mapping[str, Any]) -> chargeback.Rule | None:
    values = {c: str(row.get(c) or "").strip() for c in chargeback.RULE_COLUMNS}
    return chargeback.Rule(**values) if any(values.values()) else None


@_writes
def save_team_rules(rows: Iterable[Mapping[str, Any]], created_by: str) -> int:
    """Save the edited rule table as a new version (blank rows dropped); returns the version.

    Raises:
        ChargebackError: a row that is not a valid rule (nothing is saved).
    """
    rules = [r for r in map(_rule, rows) if r is not None]
    return chargeback.save_rules(queries.engine(), rules, created_by=created_by)


@_writes
def import_fx_rates(data: bytes, name: str) -> tuple[int, int]:
    """Import an uploaded rates CSV (``date,base,quote,rate``) whole; returns ``(new, replaced)``.

    Raises:
        FxError: a file that is not UTF-8 text or has a bad line (nothing is written).
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise fx.FxError(f"{name} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return fx.import_rates_csv(queries.engine(), text, name)


# -- dashboard accounts and sign-in ---------------------------------------------------------------


@_writes
def add_user(name: str, role: str, password: str | None) -> users.Account:
    """Create an account (``password=None``: SSO only) whose generated password must be changed first.

    Raises:
        UserError: a bad name, role or password, or a duplicate.
    """
    return users.add_user(queries.engine(), name, role, password, must_change=True)


@_writes
def set_role(name: str, role: str) -> None:
    """Change an account's role (the last admin cannot be demoted)."""
    users.set_role(queries.engine(), name, role)


@_writes
def set_password(name: str, password: str) -> None:
    """An admin's reset: replace the password (to be changed at next sign-in) and end its sessions."""
    users.set_password(queries.engine(), name, password, must_change=True)


@_writes
def change_own_password(name: str, current: str, new: str, keep_session: int | None) -> None:
    """The signed-in user's own change; their other sessions end, ``keep_session`` stays.

    Raises:
        UserError: wrong current password, the same one again, or a too short new one.
    """
    users.change_own_password(queries.engine(), name, current, new, keep_session=keep_session)


@_writes
def remove_user(name: str) -> None:
    """Delete an account (the last admin cannot be removed)."""
    users.remove_user(queries.engine(), name)


def sign_in(name: str, password: str, client: str = "local") -> users.SignIn:
    """Check a password sign-in under the per-client and global limits; stamps the last sign-in."""
    return users.authenticate(queries.engine(), name, password, client=client)


def record_sso_sign_in(name: str) -> users.Account | None:
    """The local account of an OpenID Connect identity, stamping its sign-in time (None: no account)."""
    return users.record_sso_sign_in(queries.engine(), name)


def session_lifetimes() -> sessions.Lifetimes:
    """Idle and absolute lifetimes of a dashboard sign-in, from the settings."""
    settings = get_settings()
    return sessions.Lifetimes(
        idle=timedelta(hours=settings.dashboard_session_idle_hours),
        absolute=timedelta(days=settings.dashboard_session_max_days),
    )


def start_session(name: str) -> sessions.Started:
    """Open the sign-in session of ``name``; the ticket goes to the browser to fetch its cookie."""
    return sessions.start(queries.engine(), name, session_lifetimes())


def redeem_ticket(ticket: str) -> str | None:
    """The cookie token for a fresh sign-in's one-time ticket; None for a used, stale or unknown one."""
    return sessions.redeem(queries.engine(), ticket)


def session_by_token(token: str) -> tuple[int, str] | None:
    """(session id, account name) of a cookie's live session; None (and ended) when expired or unknown."""
    return sessions.by_token(queries.engine(), token, session_lifetimes())


def session_alive(session_id: int) -> str | None:
    """The account name of a tab's session while it lives (records the activity for the idle limit)."""
    return sessions.by_id(queries.engine(), session_id, session_lifetimes())


def end_session(session_id: int | None, token: str | None) -> None:
    """Sign-out: end the tab's session and the one the cookie names (every tab sharing it follows)."""
    sessions.end(queries.engine(), session_id=session_id, token=token)
