"""``llm-usage users ...``: dashboard accounts, and the first admin created by ``llm-usage run``.

Passwords never come from argv (shell history, ``ps``): a hidden prompt with confirmation, one
line on stdin (``--password-stdin``), or a generated one printed once (``--generate``).
"""

from __future__ import annotations

import sys

import typer

from collector.auth.users import (
    ROLES,
    UserError,
    add_user,
    ensure_first_admin,
    generate_password,
    list_users,
    remove_user,
    set_password,
    set_role,
    set_sso,
)
from collector.cli.common import database, echo_json, list_format
from collector.core.settings import Settings
from collector.db.migrate import open_database

users_app = typer.Typer(help="Dashboard accounts (roles: viewer, finance, admin).", no_args_is_help=True)

_ROLE_HELP = f"One of {', '.join(ROLES)}: viewer sees spend, finance also imports, admin manages everything."


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


def _read_password(*, password_stdin: bool, generate: bool) -> tuple[str, bool]:
    """The new password and whether it was generated (and so must be shown)."""
    if password_stdin and generate:
        raise UserError("use either --password-stdin or --generate, not both")
    if generate:
        return generate_password(), True
    if password_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise UserError("no password on stdin")
        return line, False
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True), False


@users_app.command("add")
def users_add(
    name: str = typer.Argument(..., help="Account name (an e-mail address for OpenID Connect sign-in)."),
    role: str = typer.Option("viewer", "--role", "-r", help=_ROLE_HELP),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from one stdin line."),
    generate: bool = typer.Option(False, "--generate", help="Generate a password and print it once."),
    no_password: bool = typer.Option(
        False, "--no-password", help="No password: the account signs in only through OpenID Connect."
    ),
    sso: bool = typer.Option(
        False, "--sso", help="Also allow OpenID Connect sign-in (by verified e-mail) for a password account."
    ),
) -> None:
    """Create a dashboard account."""
    engine = database()
    try:
        password: str | None = None
        shown = False
        if not no_password:
            password, shown = _read_password(password_stdin=password_stdin, generate=generate)
        account = add_user(engine, name, role, password, sso=True if no_password or sso else None, must_change=shown)
    except UserError as exc:
        raise _fail(exc) from None
    typer.echo(f"added {account.name} ({account.role})")
    if shown:
        typer.echo(f"password (shown only now): {password}")


@users_app.command("list")
def users_list(
    fmt: str = typer.Option("table", "--format", metavar="FORMAT", help="table | json."),
) -> None:
    """List accounts with role, last sign-in and lock state (never a password hash)."""
    fmt = list_format(fmt)
    engine = database()
    accounts = list_users(engine)
    if fmt == "json":
        echo_json(
            {"name": a.name, "role": a.role, "sign_in": "password" if a.has_password else "sso",
             "last_sign_in_at": a.last_sign_in_at, "failed_attempts": a.failed_attempts}
            for a in accounts
        )  # fmt: skip
        return
    if not accounts:
        typer.echo("no users yet: `llm-usage users add NAME --role admin` (or `llm-usage run` creates one)")
        return
    width = max(len(a.name) for a in accounts)
    typer.echo(f"{'name':<{width}}  {'role':<7}  {'sign-in':<8}  {'last sign-in':<17}  failures")
    for a in accounts:
        last = a.last_sign_in_at.strftime("%Y-%m-%d %H:%MZ") if a.last_sign_in_at else "never"
        method = "+".join(m for m, on in (("password", a.has_password), ("sso", a.sso)) if on)
        typer.echo(f"{a.name:<{width}}  {a.role:<7}  {method:<8}  {last:<17}  {a.failed_attempts}")


@users_app.command("remove")
def users_remove(
    name: str = typer.Argument(...),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete an account (the last admin cannot be removed)."""
    engine = database()
    if not yes:
        typer.confirm(f"Remove user {name}?", abort=True)
    try:
        remove_user(engine, name)
    except UserError as exc:
        raise _fail(exc) from None
    typer.echo(f"removed {name.strip().lower()}")


@users_app.command("set-password")
def users_set_password(
    name: str = typer.Argument(...),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from one stdin line."),
    generate: bool = typer.Option(False, "--generate", help="Generate a password and print it once."),
) -> None:
    """Set a new password (also lifts a sign-in lock and signs the account out of the dashboard).

    A generated password must be changed at the next dashboard sign-in: it was printed here.
    """
    engine = database()
    try:
        password, shown = _read_password(password_stdin=password_stdin, generate=generate)
        set_password(engine, name, password, must_change=shown)
    except UserError as exc:
        raise _fail(exc) from None
    typer.echo(f"password changed for {name.strip().lower()}")
    if shown:
        typer.echo(f"password (shown only now): {password}")


@users_app.command("set-sso")
def users_set_sso(
    name: str = typer.Argument(...),
    allow: bool = typer.Option(..., "--allow/--deny", help="Allow or forbid OpenID Connect sign-in."),
) -> None:
    """Allow or forbid single sign-on for an account (only accounts marked for it are reachable by SSO)."""
    engine = database()
    try:
        set_sso(engine, name, allow)
    except UserError as exc:
        raise _fail(exc) from None
    typer.echo(f"{name.strip().lower()}: SSO {'allowed' if allow else 'not allowed'}")


@users_app.command("set-role")
def users_set_role(
    name: str = typer.Argument(...),
    role: str = typer.Argument(..., help=_ROLE_HELP),
) -> None:
    """Change an account's role (the last admin cannot be demoted)."""
    engine = database()
    try:
        set_role(engine, name, role)
    except UserError as exc:
        raise _fail(exc) from None
    typer.echo(f"{name.strip().lower()} is now {role}")


def first_admin_hook(settings: Settings) -> None:
    """``llm-usage run`` hook: with no accounts yet, create ``admin`` and print its password once."""
    engine = open_database(settings)
    password = ensure_first_admin(engine)
    if password is None:
        return
    bar = "=" * 72
    typer.echo(
        f"{bar}\nNo dashboard users yet: created the admin account.\n"
        f"  user:     admin\n  password: {password}\n"
        "This password is shown only now (and may be kept in this console's logs): the dashboard asks\n"
        f"for a new one at the first sign-in. Add people with `llm-usage users add NAME --role viewer`.\n{bar}"
    )
