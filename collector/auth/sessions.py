"""Dashboard sign-in sessions kept server-side, so a sign-in survives a refresh, a new tab or a mail link.

The browser holds one random 256-bit token in an HttpOnly cookie (set by :mod:`dashboard.server`);
this table holds only its SHA-256, the account name and two times. A session ends when it has been
idle longer than the idle lifetime or lived longer than the absolute one (settings
``LLM_USAGE_DASHBOARD_SESSION_IDLE_HOURS`` / ``..._MAX_DAYS``), on sign-out, and whenever the
account's password or role changes or the account is removed (:mod:`collector.auth.users` calls
:func:`end_all` in the same transaction).

Why a table and not a signed, self-contained cookie: a signed cookie cannot be revoked before it
expires (sign-out in one tab would leave a copied cookie valid), needs a signing key to manage and
rotate, and cannot measure idleness without re-issuing itself on every request. A random token
looked up by its hash needs no key: a tampered or forged cookie is simply a token nobody holds.

The token reaches the browser through a one-time *ticket*: the Streamlit sign-in form (which talks
over a WebSocket and cannot set cookies) creates the session with a ticket, sends the browser to
``/auth/session?ticket=...``, and that plain HTTP route swaps the ticket for the cookie. A ticket
works once and only for :data:`TICKET_SECONDS`.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Column, Index, String, Table, delete, select, update
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Field, SQLModel

from collector.core.sqltypes import UTCDateTime

#: How long the hand-off ticket of a fresh sign-in may wait for the browser to redeem it.
TICKET_SECONDS = 120
#: ``last_seen_at`` is written at most this often per session (not on every click).
TOUCH_SECONDS = 60


class DashboardSession(SQLModel, table=True):
    """The ``dashboard_sessions`` table: one signed-in browser (or one tab that has no cookie yet)."""

    __tablename__ = "dashboard_sessions"
    __table_args__ = (
        Index("ux_dashboard_sessions_token", "token_hash", unique=True),
        Index("ux_dashboard_sessions_ticket", "ticket_hash", unique=True),
        Index("ix_dashboard_sessions_user", "user_name"),
    )

    id: int | None = Field(default=None, primary_key=True)
    #: SHA-256 (hex) of the cookie's token; NULL until the ticket was redeemed.
    token_hash: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    #: SHA-256 (hex) of the one-time hand-off ticket; NULL once redeemed.
    ticket_hash: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    user_name: str = Field(sa_column=Column(String(255), nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    last_seen_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


SESSIONS: Table = DashboardSession.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Lifetimes:
    """How long a session may be idle, and how long it may live at all."""

    idle: timedelta = timedelta(hours=8)
    absolute: timedelta = timedelta(days=7)


@dataclass(frozen=True)
class Started:
    """A new session: its id (kept in the tab's server-side state) and the ticket to hand the browser."""

    id: int
    ticket: str


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def start(engine: Engine, name: str, lifetimes: Lifetimes | None = None, *, now: datetime | None = None) -> Started:
    """Open a session for account ``name`` after a successful sign-in; returns its one-time ticket.

    Sessions nobody came back to (expired, or a ticket never redeemed) are deleted here, so the
    table holds only live sessions plus those of the last lifetime.
    """
    ticket = secrets.token_urlsafe(32)
    at = _now(now)
    life = lifetimes or Lifetimes()
    with engine.begin() as conn:
        conn.execute(
            delete(SESSIONS).where(
                (SESSIONS.c.last_seen_at < at - life.idle)
                | (SESSIONS.c.created_at < at - life.absolute)
                | (SESSIONS.c.token_hash.is_(None) & (SESSIONS.c.created_at < at - timedelta(seconds=TICKET_SECONDS)))
            )
        )
        result = conn.execute(
            SESSIONS.insert().values(ticket_hash=_digest(ticket), user_name=name, created_at=at, last_seen_at=at)
        )
        (session_id,) = result.inserted_primary_key or (None,)
    assert session_id is not None
    return Started(id=int(session_id), ticket=ticket)


def redeem(engine: Engine, ticket: str, *, now: datetime | None = None) -> str | None:
    """Swap a fresh, unused ticket for the cookie's token; None for an unknown, used or stale ticket."""
    at = _now(now)
    token = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        row = conn.execute(select(SESSIONS).where(SESSIONS.c.ticket_hash == _digest(ticket))).first()
        if row is None:
            return None
        if at - row.created_at > timedelta(seconds=TICKET_SECONDS):
            conn.execute(delete(SESSIONS).where(SESSIONS.c.id == row.id))
            return None
        # The ticket_hash condition makes a concurrent second redemption update nothing.
        done = conn.execute(
            update(SESSIONS)
            .where(SESSIONS.c.id == row.id, SESSIONS.c.ticket_hash.is_not(None))
            .values(token_hash=_digest(token), ticket_hash=None, last_seen_at=at)
        )
    return token if done.rowcount == 1 else None


def _alive(conn: Connection, where: object, at: datetime, lifetimes: Lifetimes) -> tuple[int, str] | None:
    """The (id, account name) of the session matching ``where`` if within both lifetimes; ends it otherwise."""
    row = conn.execute(select(SESSIONS).where(where)).first()  # type: ignore[arg-type]
    if row is None:
        return None
    if at - row.last_seen_at > lifetimes.idle or at - row.created_at > lifetimes.absolute:
        conn.execute(delete(SESSIONS).where(SESSIONS.c.id == row.id))
        return None
    if at - row.last_seen_at >= timedelta(seconds=TOUCH_SECONDS):
        conn.execute(update(SESSIONS).where(SESSIONS.c.id == row.id).values(last_seen_at=at))
    return int(row.id), str(row.user_name)


def by_token(
    engine: Engine, token: str, lifetimes: Lifetimes, *, now: datetime | None = None
) -> tuple[int, str] | None:
    """The live session a cookie's token names, as (id, account name); None otherwise (it is ended if expired)."""
    if not token or len(token) > 256:
        return None
    with engine.begin() as conn:
        return _alive(conn, SESSIONS.c.token_hash == _digest(token), _now(now), lifetimes)


def by_id(engine: Engine, session_id: int, lifetimes: Lifetimes, *, now: datetime | None = None) -> str | None:
    """The account name of live session ``session_id`` (a tab's own session); None when it has ended."""
    with engine.begin() as conn:
        alive = _alive(conn, SESSIONS.c.id == session_id, _now(now), lifetimes)
    return alive[1] if alive else None


def end(engine: Engine, *, session_id: int | None = None, token: str | None = None) -> None:
    """Sign out: end the session with this id and/or the one this cookie token names."""
    with engine.begin() as conn:
        if session_id is not None:
            conn.execute(delete(SESSIONS).where(SESSIONS.c.id == session_id))
        if token:
            conn.execute(delete(SESSIONS).where(SESSIONS.c.token_hash == _digest(token)))


def end_all(conn: Connection, name: str, *, keep: int | None = None) -> None:
    """End every session of account ``name`` (password or role changed, account removed) but ``keep``."""
    where = SESSIONS.c.user_name == name
    if keep is not None:
        where = where & (SESSIONS.c.id != keep)
    conn.execute(delete(SESSIONS).where(where))
