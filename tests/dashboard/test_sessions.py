"""Server-side dashboard sessions: tickets, cookie tokens, idle and absolute expiry, and invalidation.

The clock is passed in (``now=``), so expiry is tested to the second without sleeping.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from collector.auth import sessions, users
from collector.auth.sessions import SESSIONS, TICKET_SECONDS, Lifetimes
from collector.auth.users import (
    UserError,
    add_user,
    change_own_password,
    ensure_first_admin,
    get_user,
    remove_user,
    set_password,
    set_role,
)
from tests.dashboard.conftest import QUICK_HASHER

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
LIFE = Lifetimes(idle=timedelta(hours=8), absolute=timedelta(days=7))
PW = "correct horse battery"


@pytest.fixture(autouse=True)
def quick_hashes(monkeypatch):
    monkeypatch.setattr(users, "_HASHER", QUICK_HASHER)


def _signed_in(engine, name: str = "ann", at: datetime = T0) -> tuple[int, str]:
    started = sessions.start(engine, name, now=at)
    token = sessions.redeem(engine, started.ticket, now=at)
    assert token is not None
    return started.id, token


def test_a_ticket_becomes_a_cookie_token_once_and_only_the_hashes_are_stored(engine):
    started = sessions.start(engine, "ann", now=T0)
    token = sessions.redeem(engine, started.ticket, now=T0 + timedelta(seconds=5))
    assert token and token != started.ticket
    assert sessions.redeem(engine, started.ticket, now=T0 + timedelta(seconds=6)) is None  # used
    assert sessions.by_token(engine, token, LIFE, now=T0 + timedelta(minutes=1)) == (started.id, "ann")
    with engine.connect() as conn:
        stored = " ".join(str(v) for v in conn.execute(select(SESSIONS)).one())
    assert token not in stored and started.ticket not in stored


def test_a_stale_or_unknown_ticket_gives_no_cookie(engine):
    started = sessions.start(engine, "ann", now=T0)
    assert sessions.redeem(engine, started.ticket, now=T0 + timedelta(seconds=TICKET_SECONDS + 1)) is None
    assert sessions.by_id(engine, started.id, LIFE, now=T0) is None  # the stale session was ended
    assert sessions.redeem(engine, "not-a-ticket", now=T0) is None


def test_a_tampered_or_forged_token_is_nobody(engine):
    _, token = _signed_in(engine)
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    for bad in (flipped, token + "x", "", "x" * 10_000, "ann"):
        assert sessions.by_token(engine, bad, LIFE, now=T0) is None
    assert sessions.by_token(engine, token, LIFE, now=T0) is not None


def test_idle_expiry_is_measured_from_the_last_activity(engine):
    session_id, token = _signed_in(engine)
    seven_h = T0 + timedelta(hours=7)
    assert sessions.by_token(engine, token, LIFE, now=seven_h) == (session_id, "ann")  # activity at 7 h
    assert sessions.by_id(engine, session_id, LIFE, now=seven_h + timedelta(hours=8)) == "ann"  # 8 h idle: still
    limit = seven_h + timedelta(hours=16, seconds=1)  # 8 h 1 s after the last recorded activity
    assert sessions.by_token(engine, token, LIFE, now=limit) is None
    assert sessions.by_token(engine, token, LIFE, now=T0) is None  # ended for good, not just out of range


def test_absolute_expiry_however_active(engine):
    session_id, token = _signed_in(engine)
    at = T0
    while at < T0 + timedelta(days=7) - timedelta(hours=4):
        at += timedelta(hours=4)
        assert sessions.by_id(engine, session_id, LIFE, now=at) == "ann"
    assert sessions.by_token(engine, token, LIFE, now=T0 + timedelta(days=7, seconds=1)) is None


def test_sign_out_ends_the_session_for_every_tab(engine):
    session_id, token = _signed_in(engine)
    other_id, other_token = _signed_in(engine)  # another browser of the same person
    sessions.end(engine, session_id=session_id)
    assert sessions.by_token(engine, token, LIFE, now=T0) is None
    assert sessions.by_id(engine, session_id, LIFE, now=T0) is None
    sessions.end(engine, token=other_token)
    assert sessions.by_id(engine, other_id, LIFE, now=T0) is None


def _live(engine, ids: list[int]) -> list[str | None]:
    return [sessions.by_id(engine, i, LIFE, now=T0) for i in ids]


def test_password_change_role_change_and_removal_end_the_accounts_sessions(engine):
    for name, role in (("ann", "viewer"), ("bob", "viewer"), ("root", "admin")):
        add_user(engine, name, role, PW)
    ann = [_signed_in(engine, "ann")[0] for _ in range(2)]
    bob = _signed_in(engine, "bob")[0]

    set_password(engine, "ann", PW + "!")
    assert _live(engine, ann) == [None, None] and _live(engine, [bob]) == ["bob"]

    ann = [_signed_in(engine, "ann")[0]]
    set_role(engine, "ann", "viewer")  # no change: sessions stay
    assert _live(engine, ann) == ["ann"]
    set_role(engine, "ann", "finance")
    assert _live(engine, ann) == [None]

    ann = [_signed_in(engine, "ann")[0]]
    remove_user(engine, "ann")
    assert _live(engine, ann) == [None] and _live(engine, [bob]) == ["bob"]


def test_changing_ones_own_password_keeps_this_session_and_ends_the_others(engine):
    add_user(engine, "ann", "viewer", PW, must_change=True)
    here, elsewhere = _signed_in(engine)[0], _signed_in(engine)[0]
    with pytest.raises(UserError, match="current password is wrong"):
        change_own_password(engine, "ann", "wrong password!", "a brand new password", keep_session=here)
    with pytest.raises(UserError, match="different"):
        change_own_password(engine, "ann", PW, PW, keep_session=here)
    assert _live(engine, [here, elsewhere]) == ["ann", "ann"]  # refused changes end nothing
    change_own_password(engine, "ann", PW, "a brand new password", keep_session=here)
    assert _live(engine, [here, elsewhere]) == ["ann", None]
    account = get_user(engine, "ann")
    assert account is not None and not account.must_change_password
    assert users.authenticate(engine, "ann", "a brand new password").ok


def test_generated_and_reset_passwords_must_be_changed(engine):
    password = ensure_first_admin(engine)
    assert password and get_user(engine, "admin").must_change_password  # type: ignore[union-attr]
    add_user(engine, "ann", "viewer", PW)
    assert not get_user(engine, "ann").must_change_password  # type: ignore[union-attr]
    set_password(engine, "ann", PW + "!", must_change=True)
    assert get_user(engine, "ann").must_change_password  # type: ignore[union-attr]


def _client():
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from dashboard import cookies

    return TestClient(Starlette(routes=cookies.ROUTES), base_url="http://dash.test")


def test_the_ticket_route_sets_an_httponly_lax_cookie_once(dashboard_db):
    from dashboard import actions, queries

    started = sessions.start(queries.engine(), "viewer")
    with _client() as client:
        response = client.get(f"/auth/session?ticket={started.ticket}", follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/"
        cookie = response.headers["set-cookie"]
        token = cookie.split(";")[0].split("=", 1)[1]
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=lax", "path=/", "max-age=604800"} <= flags and "secure" not in flags
        assert actions.session_by_token(token) == (started.id, "viewer")
        again = client.get(f"/auth/session?ticket={started.ticket}", follow_redirects=False)
        assert again.status_code == 303 and "set-cookie" not in again.headers  # one use only
        for bad in ("", "x" * 500, "forged"):
            assert "set-cookie" not in client.get(f"/auth/session?ticket={bad}", follow_redirects=False).headers


def test_the_cookie_is_secure_behind_tls_and_sign_out_expires_it(dashboard_db):
    from dashboard import queries

    started = sessions.start(queries.engine(), "viewer")
    with _client() as client:
        tls = client.get(
            f"/auth/session?ticket={started.ticket}", headers={"X-Forwarded-Proto": "https"}, follow_redirects=False
        )
        assert "secure" in tls.headers["set-cookie"].lower()
        out = client.get("/auth/sign-out", follow_redirects=False)
        assert out.status_code == 303
        assert 'llm_usage_session=""' in out.headers["set-cookie"] and "max-age=0" in out.headers["set-cookie"].lower()


def test_a_reset_password_shows_only_the_change_form_until_changed(dashboard_db):
    from dashboard import queries
    from tests.dashboard.conftest import PASSWORD, app, texts

    set_password(queries.engine(), "viewer", PASSWORD, must_change=True)
    at = app("viewer")
    assert not at.exception, at.exception
    assert "Choose a new password" in texts(at) and not at.metric
    fields = {t.label: t for t in at.text_input}
    assert set(fields) == {"Current password", "New password", "New password again"}
    fields["Current password"].input(PASSWORD)
    fields["New password"].input("my own new password")
    fields["New password again"].input("my own new passworD")
    next(b for b in at.button if b.label == "Change password").click().run()
    assert "The two new passwords differ." in [e.value for e in at.error]
    fields = {t.label: t for t in at.text_input}
    fields["New password again"].input("my own new password")
    next(b for b in at.button if b.label == "Change password").click().run()
    assert not at.exception, at.exception
    assert {m.label for m in at.metric} >= {"Month to date"}  # the Overview at last
    assert users.authenticate(queries.engine(), "viewer", "my own new password").ok


def test_a_tab_signed_in_by_the_form_is_signed_out_at_its_next_click_when_its_session_ends(dashboard_db):
    from dashboard import queries
    from tests.dashboard.conftest import PASSWORD, app

    at = app()
    at.text_input[0].input("viewer")
    at.text_input[1].input(PASSWORD)
    at.button[0].click().run()
    session_id = at.session_state["auth_session"]
    assert at.metric and sessions.by_id(queries.engine(), session_id, LIFE) == "viewer"
    set_role(queries.engine(), "viewer", "finance")  # ends every session of the account
    at.run()
    assert not at.metric and "auth_user" not in at.session_state
    assert [t.label for t in at.text_input] == ["User name", "Password"]


def test_a_new_sign_in_clears_away_sessions_nobody_came_back_to(engine):
    idle_id, _ = _signed_in(engine, at=T0)
    sessions.start(engine, "ann", LIFE, now=T0)  # its ticket is never redeemed
    live_id, _ = _signed_in(engine, at=T0 + timedelta(hours=5))
    sessions.start(engine, "bob", LIFE, now=T0 + timedelta(hours=8, minutes=30))
    with engine.connect() as conn:
        left = {(r.id, r.user_name) for r in conn.execute(select(SESSIONS.c.id, SESSIONS.c.user_name))}
    assert (idle_id, "ann") not in left and (live_id, "ann") in left and len(left) == 2
