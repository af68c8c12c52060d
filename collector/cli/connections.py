"""``llm-usage connections ...`` and ``llm-usage secrets ...``: thin commands over the library.

Keys are read from a hidden prompt or from stdin, never from argv (argv is visible to every user
of the machine in ``ps`` and lands in shell history). Output shows keys only masked.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from collector.cli.common import database, echo_json, hooks_of, list_format
from collector.core.http import redact
from collector.core.settings import get_settings
from collector.core.store import delete_by_source_ref
from collector.core.windows import DATE_FORMS, DateError, Window, day_range
from collector.sync.connections import (
    ConnectionsError,
    add_connection,
    get_connection,
    list_connections,
    remove_connection,
    replace_key,
    retest_connection,
    rotate_secrets,
    set_active,
)
from collector.sync.engine import sync_connection
from collector.sync.vault import VaultError, load_vault, new_secret, secret_file, write_secret_file
from providers import REGISTRY, UnknownProviderError, get_provider
from providers.base import KeyFormatError, Provider

connections_app = typer.Typer(help="Provider admin keys, registered once, and their API sync.", no_args_is_help=True)
secrets_app = typer.Typer(help="The secret that encrypts stored admin keys.", no_args_is_help=True)


def _fail(message: str, code: int = 1) -> typer.Exit:
    """One red ``error:`` line; exit 1 when the operation failed, 2 for a bad argument."""
    typer.secho(f"error: {redact(message)}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def _read_key(provider: str) -> str:
    """The key from a hidden prompt (terminal) or the first line of stdin (pipes, scripts)."""
    if sys.stdin.isatty():
        return str(typer.prompt(f"{provider} admin key (input hidden)", hide_input=True))
    line = sys.stdin.readline()
    if not line.strip():
        raise _fail("no key on stdin: pipe it in (e.g. `pass show openai-admin | llm-usage connections add ...`)")
    return line.strip()


def _settings_of(cls: type[Provider], pairs: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """``--set name=value`` pairs split into plain settings and non-secret credential parts."""
    options: dict[str, str] = {}
    parts: dict[str, str] = {}
    fields = {f.name: f for f in cls.fields}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in fields:
            known = ", ".join(f.name for f in cls.fields if not f.secret) or "none"
            raise _fail(f"--set {name[:40]}: {cls.title} has no such setting (settings: {known})")
        if fields[name].secret:
            raise _fail(f"--set {name}: secrets are never taken from the command line; pipe them in or use a prompt")
        (parts if fields[name].vault else options)[name] = value
    return options, parts


def _read_credential(cls: type[Provider], parts: dict[str, str], credential_file: Path | None) -> str:
    """A multi-part credential: a file, a JSON object on stdin, or one hidden prompt per part."""
    secret_fields = [f for f in cls.vault_fields() if f.secret]
    document = next((f for f in secret_fields if f.multiline), None)
    if credential_file is not None or not sys.stdin.isatty():
        try:
            text = credential_file.read_text() if credential_file is not None else sys.stdin.read()
        except OSError as exc:
            raise _fail(f"cannot read {credential_file}: {exc.strerror}") from None
        if document is not None:  # the file *is* the secret document (a service-account key)
            parts[document.name] = text.strip()
        else:
            try:
                given = json.loads(text)
            except ValueError:
                raise _fail(f"{cls.title} credentials on stdin must be a JSON object of their parts") from None
            if not isinstance(given, dict):
                raise _fail(f"{cls.title} credentials on stdin must be a JSON object of their parts")
            parts.update({str(k): str(v) for k, v in given.items()})
        return cls.pack_credential(parts)
    if document is not None:
        raise _fail(f"pass the {document.label} with --credential-file PATH (or on stdin)")
    for f in cls.vault_fields():
        if f.name in parts:
            continue
        prompt = f"{cls.title} {f.label}" + ("" if f.required else " (Enter to skip)")
        value = typer.prompt(prompt, hide_input=f.secret, default="" if not f.required else None, show_default=False)
        parts[f.name] = str(value)
    return cls.pack_credential(parts)


def _day(value: str | None, name: str) -> datetime | None:
    """A window bound from a day word (as everywhere) or an exact ISO 8601 time.

    ``--since`` takes the start of the day it names and ``--until`` its end, so the day is
    included; an ISO time (``2026-11-29T10:00:00Z``) is an exact, excluded end.
    """
    if value is None:
        return None
    if "T" in value or " " in value.strip():
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise _fail(f"{name}: cannot read {value!r}; accepted: {DATE_FORMS}, or an ISO time", 2) from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    try:
        start, end = day_range(value, now=datetime.now(UTC), argument=name)
    except DateError as exc:
        raise _fail(str(exc), 2) from None
    return start if name == "--since" else end


def _when(ts: datetime | None) -> str:
    return ts.strftime("%Y-%m-%d %H:%M") if ts else "-"


@connections_app.command("add")
def add(
    provider: str = typer.Argument(..., help=f"One of: {', '.join(REGISTRY)} (or aws, azure, gcp)."),
    label: str = typer.Option(..., "--label", help="A unique name for this key, e.g. prod."),
    base_url: str = typer.Option("", "--base-url", help="Override the provider's API base URL."),
    skip_test: bool = typer.Option(False, "--skip-test", help="Store the key without the test call."),
    set_: list[str] | None = typer.Option(  # noqa: B008
        None,
        "--set",
        metavar="NAME=VALUE",
        help="A setting of the connection (repeatable): scope, table, account, region, role_arn, tenant_id ...",
    ),
    credential_file: Path | None = typer.Option(  # noqa: B008
        None, "--credential-file", help="Read the credential from a file (a Google service-account key JSON)."
    ),
) -> None:
    """Register an admin key or cloud credential (hidden prompt, stdin or a file), after one test call."""
    settings = get_settings()
    try:
        cls = get_provider(provider)
        options, parts = _settings_of(cls, set_ or [])
        key = _read_credential(cls, parts, credential_file) if cls.vault_fields() else _read_key(cls.title)
        engine = database(settings)
        conn = add_connection(
            engine,
            settings,
            load_vault(settings),
            provider=cls.name,
            label=label,
            key=key,
            base_url=base_url,
            test=not skip_test,
            options=options,
        )
    except (ConnectionsError, KeyFormatError, UnknownProviderError, VaultError) as exc:
        raise _fail(str(exc)) from None
    tested = "tested ok" if not skip_test else "NOT tested (--skip-test)"
    typer.echo(f"added connection {conn.id}: {conn.provider} {conn.label!r} key {conn.key_hint}, {tested}")
    typer.echo(f"rows will be filed under account {conn.account!r}; the scheduler syncs it within the hour")


@connections_app.command("list")
def list_(
    fmt: str = typer.Option("table", "--format", metavar="FORMAT", help="table | json."),
) -> None:
    """List connections (keys masked)."""
    fmt = list_format(fmt)
    engine = database()
    rows = list_connections(engine)
    if fmt == "json":
        fields = ("id", "provider", "label", "key_hint", "account", "active", "status", "last_synced_at")
        echo_json({**{f: getattr(c, f) for f in fields}, "last_error": redact(c.last_error)} for c in rows)
        return
    if not rows:
        typer.echo("no connections; add one with `llm-usage connections add openai --label prod`")
        return
    typer.echo(
        f"{'id':>3}  {'provider':<10} {'label':<16} {'key':<18} {'account':<20} {'active':<6} "
        f"{'status':<11} {'last synced':<16} last error"
    )
    for c in rows:
        typer.echo(
            f"{c.id:>3}  {c.provider:<10} {c.label:<16} {c.key_hint:<18} {c.account:<20} "
            f"{'yes' if c.active else 'no':<6} {c.status:<11} {_when(c.last_synced_at):<16} {redact(c.last_error)[:80]}"
        )
        extra = {**c.option_values, **c.fact_values}
        if extra:
            typer.echo("     " + ", ".join(f"{k}={v}" for k, v in sorted(extra.items()))[:200])


@connections_app.command("test")
def test(connection_id: int = typer.Argument(..., metavar="ID")) -> None:
    """Re-test a stored key; success resumes a connection paused by an auth failure."""
    settings = get_settings()
    engine = database(settings)
    try:
        result = retest_connection(engine, settings, load_vault(settings, create=False), connection_id)
    except (ConnectionsError, VaultError) as exc:
        raise _fail(str(exc)) from None
    if not result.ok:
        raise _fail(f"connection {connection_id}: {result.message}")
    typer.echo(f"connection {connection_id}: ok")


@connections_app.command("set-key")
def set_key(
    connection_id: int = typer.Argument(..., metavar="ID"),
    skip_test: bool = typer.Option(False, "--skip-test", help="Store the key without the test call."),
    credential_file: Path | None = typer.Option(  # noqa: B008
        None, "--credential-file", help="Read the new credential from a file (a service-account key JSON)."
    ),
) -> None:
    """Replace a connection's key or credential (hidden prompt, stdin or a file); resumes a paused one."""
    settings = get_settings()
    engine = database(settings)
    try:
        conn = get_connection(engine, connection_id)
        cls = REGISTRY[conn.provider]
        key = _read_credential(cls, {}, credential_file) if cls.vault_fields() else _read_key(cls.title)
        conn = replace_key(engine, settings, load_vault(settings), connection_id, key, test=not skip_test)
    except (ConnectionsError, KeyFormatError, VaultError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"connection {connection_id}: key replaced ({conn.key_hint}), status {conn.status}")


def _toggle(connection_id: int, active: bool) -> None:
    engine = database()
    try:
        set_active(engine, connection_id, active)
    except ConnectionsError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"connection {connection_id} {'enabled' if active else 'disabled'}")


@connections_app.command("disable")
def disable(connection_id: int = typer.Argument(..., metavar="ID")) -> None:
    """Stop syncing a connection (its rows stay)."""
    _toggle(connection_id, False)


@connections_app.command("enable")
def enable(connection_id: int = typer.Argument(..., metavar="ID")) -> None:
    """Resume syncing a disabled connection."""
    _toggle(connection_id, True)


@connections_app.command("remove")
def remove(
    connection_id: int = typer.Argument(..., metavar="ID"),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    delete_data: bool = typer.Option(
        False, "--delete-data", help="Also delete the usage rows it collected (another billed source then counts)."
    ),
) -> None:
    """Delete a connection and its key; the usage rows it collected are kept unless --delete-data."""
    engine = database()
    try:
        conn = get_connection(engine, connection_id)
    except ConnectionsError as exc:
        raise _fail(str(exc)) from None
    rows = "and delete the usage rows it collected" if delete_data else "Collected usage rows are kept"
    if not yes and not typer.confirm(
        f"remove connection {conn.id} ({conn.provider} {conn.label!r}, key {conn.key_hint})? {rows}"
    ):
        raise typer.Exit(1)
    remove_connection(engine, connection_id)
    if not delete_data:
        typer.echo(f"connection {connection_id} removed; its usage rows are kept")
        return
    with engine.begin() as db:
        deleted = delete_by_source_ref(db, f"conn:{connection_id}/", prefix=True)
    typer.echo(f"connection {connection_id} removed with the {deleted:,} usage row(s) it collected")


class _Bars:
    """One progress bar per endpoint, advanced by the buckets each stored page completes."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.endpoint = ""
        self.done = 0

    def __call__(self, endpoint: str, window: Window, through: datetime | None, pages: int, rows: int) -> None:
        if endpoint != self.endpoint:
            self.close()
            total = max(1, int((window.end - window.start).total_seconds()))
            self.bar = typer.progressbar(length=total, label=f"{endpoint:<26}", file=sys.stderr)
            self.bar.__enter__()
            self.endpoint, self.done = endpoint, 0
        done = int((through - window.start).total_seconds()) if through else self.done
        if done > self.done:
            self.bar.update(done - self.done)
            self.done = done

    def close(self) -> None:
        """Finish the current bar."""
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@connections_app.command("sync")
def sync(
    ctx: typer.Context,
    connection_id: int = typer.Argument(..., metavar="ID"),
    since: str | None = typer.Option(
        None, "--since", help="Back-fill from this day (UTC): YYYY-MM-DD, YYYY-MM, 30d ..."
    ),
    until: str | None = typer.Option(
        None, "--until", help="Last day to fetch, included (as in `report`), or an exact ISO time; default now."
    ),
    endpoint: list[str] | None = typer.Option(None, "--endpoint", help="Only this endpoint (repeatable)."),  # noqa: B008
    refetch: bool = typer.Option(
        False,
        "--refetch",
        help="With --since: fetch the whole window again instead of resuming an interrupted back-fill.",
    ),
) -> None:
    """Sync one connection now (a back-fill with --since, resumed where an interrupted one got to)."""
    settings = get_settings()
    engine = database(settings)
    start, end = _day(since, "--since"), _day(until, "--until")
    bars = _Bars()

    try:
        summary = sync_connection(
            engine,
            settings,
            connection_id,
            since=start,
            until=end,
            endpoints=set(endpoint or ()) or None,
            progress=bars,
            hooks=hooks_of(ctx),
            refetch=refetch,
        )
    except ConnectionsError as exc:
        raise _fail(str(exc)) from None
    finally:
        bars.close()
    if summary.skipped:  # another process is syncing it: not a failure (exit 0), logged as skipped
        typer.echo(summary.note)
        return
    for e in summary.endpoints:
        line = f"{e.endpoint:<26} {e.window}  {e.pages:>4} page(s) {e.rows:>8} row(s)  {e.status}"
        typer.echo(line + (f": {redact(e.error)[:200]}" if e.error else ""))
    for overlap in summary.overlaps:
        typer.echo(f"overlap: {overlap.describe()}")
    if not summary.ok:
        raise _fail(summary.error or "sync failed")
    typer.echo(f"connection {connection_id}: {summary.rows} row(s) stored")


@secrets_app.command("new")
def new() -> None:
    """Add a fresh secret (newest first): to the secret file, or print one for LLM_USAGE_SECRET_KEYS."""
    settings = get_settings()
    secret = new_secret()
    if settings.secret_keys is not None and settings.secret_keys.get_secret_value().strip():
        typer.echo("Put this new secret FIRST in LLM_USAGE_SECRET_KEYS (keep the old ones after it), restart,")
        typer.echo("then run `llm-usage secrets rotate`:")
        typer.echo(secret)
        return
    try:
        vault = load_vault(settings)
    except VaultError as exc:
        raise _fail(str(exc)) from None
    path = secret_file(settings)
    old = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    write_secret_file(path, [secret, *old])
    typer.echo(f"added a new secret to {path} ({vault.secret_count + 1} in total, newest first, mode 0600)")
    typer.echo("now run `llm-usage secrets rotate` to re-encrypt the stored keys under it")


@secrets_app.command("rotate")
def rotate() -> None:
    """Re-encrypt every stored admin key under the newest secret."""
    settings = get_settings()
    engine = database(settings)
    try:
        count = rotate_secrets(engine, load_vault(settings, create=False))
    except VaultError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"re-encrypted {count} stored key(s) under the newest secret; older secrets can now be removed")
