"""Accounts, argon2 hashing, roles, the sign-in slow-down and the `llm-usage users` commands."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from collector.app import RUN_HOOKS, app
from collector.auth.throttle import FREE_FAILURES, SignInThrottle, client_delay
from collector.auth.users import (
    USERS,
    UserError,
    add_user,
    authenticate,
    count_users,
    ensure_first_admin,
    get_user,
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


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failed_sign_ins_slow_the_client_down_not_the_account(sqlite_engine):
    """A stranger failing on purpose cannot lock the real person out of their account."""
    engine = sqlite_engine
    add_user(engine, "dave", "viewer", PW)
    clock = Clock()
    guard = SignInThrottle(clock=clock)
    t0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    for i in range(FREE_FAILURES - 1):
        result = authenticate(engine, "dave", "wrong password!", client="10.0.0.66", now=t0, throttle=guard)
        assert not result.ok and result.retry_after == 0, i
    result = authenticate(engine, "dave", "wrong password!", client="10.0.0.66", now=t0, throttle=guard)
    assert result.retry_after == client_delay(FREE_FAILURES) == 2
    # The attacking client waits, even with the right password ...
    clock.now += 1
    held = authenticate(engine, "dave", PW, client="10.0.0.66", now=t0, throttle=guard)
    assert not held.ok and "try again in 1 s" in held.message
    # ... while dave, from his own address, signs in at once.
    mine = authenticate(engine, "dave", PW, client="10.0.0.7", now=t0 + timedelta(seconds=1), throttle=guard)
    assert mine.ok and mine.account is not None and mine.account.failed_attempts == 0
    assert mine.account.last_sign_in_at == t0 + timedelta(seconds=1)
    # The next failure of the attacker doubles its wait; a success from it clears it.
    clock.now += 2
    assert authenticate(engine, "dave", "nope nope nope", client="10.0.0.66", throttle=guard).retry_after == 4
    clock.now += 5
    assert authenticate(engine, "dave", PW, client="10.0.0.66", throttle=guard).ok
    assert guard.wait_seconds("10.0.0.66") == 0
    assert client_delay(100) == 900


def test_a_global_limit_bounds_guessing_spread_over_many_addresses(sqlite_engine):
    add_user(sqlite_engine, "gina", "viewer", PW)
    clock = Clock()
    guard = SignInThrottle(clock=clock, global_per_minute=5)
    for i in range(5):
        assert not authenticate(sqlite_engine, "gina", f"guess number {i}", client=f"10.1.0.{i}", throttle=guard).ok
    blocked = authenticate(sqlite_engine, "gina", PW, client="10.9.9.9", throttle=guard)
    assert not blocked.ok and blocked.retry_after == 60
    clock.now += 60
    assert authenticate(sqlite_engine, "gina", PW, client="10.9.9.9", throttle=guard).ok


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


def test_unknown_sso_only_and_known_names_cost_the_same_and_answer_the_same(sqlite_engine, monkeypatch):
    """One argon2 verification and the same statements for every failed attempt, whatever the name."""
    from sqlalchemy import event

    from collector.auth import users as users_module

    add_user(sqlite_engine, "hank", "viewer", PW)
    add_user(sqlite_engine, "ivy@example.com", "viewer", None)  # SSO only
    verifications: list[str] = []
    real_verify = users_module._verify

    def counting(hash_, password):
        verifications.append(hash_)
        return real_verify(hash_, password)

    monkeypatch.setattr(users_module, "_verify", counting)
    statements: list[str] = []
    event.listen(sqlite_engine, "before_cursor_execute", lambda *a: statements.append(a[2].split()[0]))
    answers, shapes = {}, {}
    for name in ("nobody", "hank", "ivy@example.com", "Not A Valid Name!"):
        verifications.clear()
        statements.clear()
        guard = SignInThrottle()
        answers[name] = authenticate(sqlite_engine, name, "not the password", client="c", throttle=guard).message
        shapes[name] = (len(verifications), tuple(statements))
    assert len(set(answers.values())) == 1, answers
    assert len(set(shapes.values())) == 1 and next(iter(shapes.values()))[0] == 1, shapes


def test_concurrent_verifications_are_capped(sqlite_engine, monkeypatch):
    import threading

    from collector.auth import users as users_module

    add_user(sqlite_engine, "jack", "viewer", PW)
    guard = SignInThrottle(max_verifications=2, verify_wait=30)
    state = {"running": 0, "peak": 0}
    changed = threading.Condition()
    release = threading.Event()
    real_verify = users_module._verify

    def held(hash_, password):
        with changed:
            state["running"] += 1
            state["peak"] = max(state["peak"], state["running"])
            changed.notify_all()
        release.wait(30)
        with changed:
            state["running"] -= 1
        return real_verify(hash_, password)

    monkeypatch.setattr(users_module, "_verify", held)
    results = []
    threads = [
        threading.Thread(
            target=lambda i=i: results.append(authenticate(sqlite_engine, "jack", PW, client=f"c{i}", throttle=guard))
        )
        for i in range(8)
    ]
    for t in threads:
        t.start()
    with changed:
        assert changed.wait_for(lambda: state["running"] == 2, timeout=30)
    assert guard._slots is not None and not guard._slots.acquire(blocking=False)  # both slots taken
    release.set()
    for t in threads:
        t.join(60)
    assert state["peak"] == 2 and len(results) == 8 and all(r.ok for r in results)
    # With every slot held, a sign-in answers "busy" instead of queuing without end.
    busy = SignInThrottle(max_verifications=1, verify_wait=0.05)
    with busy.verification():
        refused = authenticate(sqlite_engine, "jack", PW, client="c", throttle=busy)
    assert not refused.ok and "busy" in refused.message


def test_sso_reaches_only_accounts_marked_for_it(sqlite_engine):
    from collector.auth.users import record_sso_sign_in, set_sso

    add_user(sqlite_engine, "admin@example.com", "admin", PW)  # a password account named like an e-mail
    add_user(sqlite_engine, "kim@example.com", "viewer", None)  # SSO only: marked by default
    assert record_sso_sign_in(sqlite_engine, "admin@example.com") is None
    assert record_sso_sign_in(sqlite_engine, "Kim@Example.com").name == "kim@example.com"
    set_sso(sqlite_engine, "admin@example.com", True)
    assert record_sso_sign_in(sqlite_engine, "admin@example.com").role == "admin"
    with pytest.raises(UserError, match="no password"):
        set_sso(sqlite_engine, "kim@example.com", False)
    with pytest.raises(UserError, match="SSO"):
        add_user(sqlite_engine, "lee", "viewer", None, sso=False)


def test_migration_marks_existing_password_less_accounts_for_sso(tmp_path):
    from alembic import command
    from sqlalchemy import text

    from collector.db.engine import make_engine
    from collector.db.migrate import alembic_config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0007")
        conn.execute(
            text(
                "INSERT INTO users (name, password_hash, role, failed_attempts, created_at) VALUES "
                "('admin', '$argon2id$x', 'admin', 0, 0), ('sso@example.com', '', 'viewer', 0, 0)"
            )
        )
    engine.dispose()
    migrated = open_database(url=url)
    with migrated.connect() as conn:
        marks = dict(conn.execute(text("SELECT name, sso FROM users")).all())
    assert {k: bool(v) for k, v in marks.items()} == {"admin": False, "sso@example.com": True}
