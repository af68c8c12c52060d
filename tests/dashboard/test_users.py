"""Accounts, argon2 hashing, roles, the sign-in slow-down and the `llm-usage users` commands."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from collector.app import RUN_HOOKS, app
from collector.auth.users import (
    FREE_ATTEMPTS,
    USERS,
    UserError,
    add_user,
    authenticate,
    count_users,
    ensure_first_admin,
    get_user,
    lock_delay,
    remove_user,
    role_allows,
    set_password,
    set_role,
)
from collector.core.settings import get_settings
from collector.db.migrate import open_database
from tests.conftest import create_database

PW = "correct horse battery"


def test_password_is_stored_as_argon2id_never_plain(engine):
    add_user(engine, "Alice@Example.com", "finance", PW)
    with engine.connect() as conn:
        stored = conn.execute(select(USERS.c.name, USERS.c.password_hash)).one()
    assert stored.name == "alice@example.com"
    assert stored.password_hash.startswith("$argon2id$")
    assert PW not in stored.password_hash
    assert authenticate(engine, "ALICE@example.com", PW).ok


def test_add_rejects_bad_input_and_duplicates(engine):
    add_user(engine, "bob", "viewer", PW)
    with pytest.raises(UserError, match="already exists"):
        add_user(engine, "Bob", "admin", PW)
    with pytest.raises(UserError, match="unknown role"):
        add_user(engine, "carol", "owner", PW)
    with pytest.raises(UserError, match="too short"):
        add_user(engine, "carol", "viewer", "short")
    with pytest.raises(UserError, match="invalid user name"):
        add_user(engine, "bad name", "viewer", PW)
    assert count_users(engine) == 1


def test_roles_include_the_ones_below():
    assert role_allows("admin", "finance") and role_allows("admin", "viewer")
    assert role_allows("finance", "viewer") and role_allows("finance", "finance")
    assert not role_allows("finance", "admin")
    assert not role_allows("viewer", "finance")
    assert not role_allows(None, "viewer")
    assert not role_allows("root", "viewer")


def test_failed_sign_ins_are_slowed_down_per_user(sqlite_engine):
    engine = sqlite_engine
    add_user(engine, "dave", "viewer", PW)
    add_user(engine, "erin", "viewer", PW)
    t0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    for i in range(FREE_ATTEMPTS - 1):
        result = authenticate(engine, "dave", "wrong password!", now=t0)
        assert not result.ok and result.retry_after == 0, i
    result = authenticate(engine, "dave", "wrong password!", now=t0)
    assert result.retry_after == lock_delay(FREE_ATTEMPTS) == 2
    # Locked: even the right password is refused until the delay has passed.
    locked = authenticate(engine, "dave", PW, now=t0 + timedelta(seconds=1))
    assert not locked.ok and "try again in 1 s" in locked.message
    # Another account is not affected.
    assert authenticate(engine, "erin", PW, now=t0).ok
    # The next failure doubles the delay.
    later = t0 + timedelta(seconds=3)
    assert authenticate(engine, "dave", "nope nope nope", now=later).retry_after == 4
    ok = authenticate(engine, "dave", PW, now=later + timedelta(seconds=5))
    assert ok.ok and ok.account is not None and ok.account.failed_attempts == 0
    assert ok.account.last_sign_in_at == later + timedelta(seconds=5)
    assert lock_delay(100) == 900


def test_unknown_name_and_wrong_password_get_the_same_answer(sqlite_engine):
    add_user(sqlite_engine, "frank", "viewer", PW)
    unknown = authenticate(sqlite_engine, "nobody", PW)
    wrong = authenticate(sqlite_engine, "frank", "not the password")
    assert not unknown.ok and not wrong.ok
    assert unknown.message == wrong.message


def test_last_admin_cannot_be_removed_or_demoted(engine):
    add_user(engine, "root", "admin", PW)
    with pytest.raises(UserError, match="last admin"):
        remove_user(engine, "root")
    with pytest.raises(UserError, match="last admin"):
        set_role(engine, "root", "viewer")
    add_user(engine, "second", "admin", PW)
    set_role(engine, "root", "viewer")
    remove_user(engine, "root")
    assert get_user(engine, "root") is None
    with pytest.raises(UserError, match="no user called"):
        set_password(engine, "root", PW)


def test_first_admin_gets_a_generated_password_once(sqlite_engine):
    first = ensure_first_admin(sqlite_engine)
    second = ensure_first_admin(sqlite_engine)
    assert first and len(first) >= 20 and second is None
    assert authenticate(sqlite_engine, "admin", first).ok
    # Not a fixed default: another installation gets another password.
    other = open_database(url=f"sqlite:///{get_settings().data_dir / 'other.db'}")
    assert ensure_first_admin(other) not in (None, first)


def test_run_hook_prints_the_password_once(capsys):
    from collector.cli.users import first_admin_hook

    assert first_admin_hook in RUN_HOOKS
    first_admin_hook(get_settings())
    out = capsys.readouterr().out
    password = out.split("password: ")[1].split()[0]
    assert authenticate(open_database(get_settings()), "admin", password).ok
    first_admin_hook(get_settings())
    assert capsys.readouterr().out == ""


def test_cli_add_list_set_password_remove():
    create_database()
    runner = CliRunner()
    res = runner.invoke(app, ["users", "add", "gina", "--role", "finance"], input=f"{PW}\n{PW}\n")
    assert res.exit_code == 0, res.output
    assert PW not in res.output
    res = runner.invoke(app, ["users", "add", "hank", "--role", "admin", "--generate"])
    generated = res.output.split("password (shown only now): ")[1].strip()
    res = runner.invoke(app, ["users", "add", "ivy@example.com", "--no-password"])
    assert res.exit_code == 0
    res = runner.invoke(app, ["users", "list"])
    assert "gina" in res.output and "finance" in res.output and "sso" in res.output
    assert "$argon2" not in res.output
    engine = open_database(get_settings())
    assert authenticate(engine, "hank", generated).ok
    assert not authenticate(engine, "ivy@example.com", "").ok  # SSO-only: no password sign-in
    res = runner.invoke(app, ["users", "set-password", "gina", "--password-stdin"], input="a brand new secret\n")
    assert res.exit_code == 0
    assert authenticate(engine, "gina", "a brand new secret").ok
    res = runner.invoke(app, ["users", "add", "jo", "--role", "boss", "--generate"])
    assert res.exit_code == 2 and "unknown role" in res.output
    res = runner.invoke(app, ["users", "remove", "gina", "--yes"])
    assert res.exit_code == 0 and get_user(engine, "gina") is None
    res = runner.invoke(app, ["users", "remove", "hank", "--yes"])
    assert res.exit_code == 2 and "last admin" in res.output


def test_production_parameters_follow_rfc_9106(monkeypatch):
    from collector.auth import users
    from tests.dashboard.conftest import PRODUCTION_HASHER

    monkeypatch.setattr(users, "_HASHER", PRODUCTION_HASHER)  # not the quick one the other tests use
    assert users.hash_password(PW).startswith("$argon2id$v=19$m=65536,t=3,p=4$")
