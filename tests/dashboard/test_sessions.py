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
