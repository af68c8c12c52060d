"""Notifications through apprise, each alert sent once per key (threshold and period).

`apprise <https://github.com/caronc/apprise>`_ turns one URL per channel into a message:
``slack://T000/B000/XXXX``, ``mailtos://user:pass@example.com``, ``workflows://...`` (Microsoft
Teams through a Power Automate workflow), ``json://host/path`` or ``form://host/path`` (generic
webhooks). The URLs come from the
``LLM_USAGE_ALERT_URLS`` setting; they often carry tokens, so they are a secret, never printed,
and only their scheme appears in messages (:func:`describe_urls`).

*Once* is kept by the ``alert_events`` table: :func:`deliver_once` first claims the alert's key
(a unique row in status ``sending``; a second evaluator racing for the same key fails the insert
and stays quiet), then sends, then records ``sent`` or ``failed``. A failed alert is claimed
again by the next evaluation; a sent one never is.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from sqlalchemy import Column, Index, Integer, String, Table, Text, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

from collector.core.settings import Settings
from collector.core.sqltypes import UTCDateTime

log = logging.getLogger(__name__)

#: ``status`` values of ``alert_events``.
SENDING, SENT, FAILED, NO_CHANNEL = "sending", "sent", "failed", "no-channel"
#: A lower threshold crossed in the same jump as a higher one: recorded, never sent on its own.
SUPERSEDED = "superseded"


class AlertEvent(SQLModel, table=True):
    """``alert_events``: an alert that was (or is being) sent; ``alert_key`` is unique."""

    __tablename__ = "alert_events"
    __table_args__ = (Index("ux_alert_events_key", "alert_key", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    #: ``budget:<id>:<period start>:<threshold>``, ``forecast:...`` or ``anomaly:...``.
    alert_key: str = Field(sa_column=Column(String(255), nullable=False))
    #: ``threshold``, ``forecast``, ``anomaly`` or ``test``.
    kind: str = Field(sa_column=Column(String(16), nullable=False))
    budget_id: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    period_start: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    threshold: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    #: ``sending``, ``sent`` or ``failed`` (a failed alert is retried at the next evaluation).
    status: str = Field(sa_column=Column(String(16), nullable=False))
    title: str = Field(default="", sa_column=Column(String(255), nullable=False, server_default=""))
    body: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    link: str = Field(default="", sa_column=Column(String(1024), nullable=False, server_default=""))
    error: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))


ALERT_EVENTS: Table = AlertEvent.__table__  # type: ignore[attr-defined]


class AlertError(RuntimeError):
    """Notification set-up or delivery failed; the message never contains a URL's secret part."""


@dataclass(frozen=True)
class Alert:
    """One alert: ``key`` makes it unique (``budget:3:2026-11-01:80``)."""

    key: str
    kind: str
    title: str
    body: str
    link: str = ""
    budget_id: int | None = None
    period_start: datetime | None = None
    threshold: int = 0

    def text(self) -> str:
        """The message body with the dashboard link appended."""
        return f"{self.body}\n\n{self.link}" if self.link else self.body


def parse_urls(settings: Settings) -> list[str]:
    """The configured apprise URLs (spaces, commas or new lines between them)."""
    if settings.alert_urls is None:
        return []
    return [u for u in re.split(r"[\s,]+", settings.alert_urls.get_secret_value()) if u]


def describe_urls(urls: Sequence[str]) -> str:
    """``slack, json`` style list of the channels, without hosts, tokens or passwords."""
    return ", ".join(u.split("://", 1)[0] if "://" in u else "?" for u in urls) or "none"


def dashboard_link(settings: Settings, page: str, **params: object) -> str:
    """An absolute link to a dashboard page with query parameters (for alert messages)."""
    base = settings.dashboard_base_url.rstrip("/")
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return f"{base}/{page}" + (f"?{query}" if query else "")


def send(urls: Sequence[str], title: str, body: str) -> None:
    """Send one message to every URL.

    Raises:
        AlertError: an URL apprise does not understand, or a channel refused the message.
    """
    import apprise  # imported here: it loads ~100 plugins, which every CLI start would pay for

    notifier = apprise.Apprise()
    for i, url in enumerate(urls, 1):
        if not notifier.add(url):
            scheme = url.split("://", 1)[0] if "://" in url else "?"
            raise AlertError(f"alert URL #{i} ({scheme}://…) is not a valid apprise URL")
    if not notifier.notify(title=title, body=body):
        raise AlertError(f"at least one channel did not accept the message ({describe_urls(urls)})")


def deliver_once(engine: Engine, alert: Alert, urls: Sequence[str], now: datetime | None = None) -> bool:
    """Send ``alert`` unless its key was already sent; returns True when it was sent now.

    Without configured URLs the alert is recorded (status ``no-channel``) so the dashboard shows
    it, and it is not sent later.
    """
    now = now or datetime.now(UTC)
    t = ALERT_EVENTS
    row = {
        "alert_key": alert.key,
        "kind": alert.kind,
        "budget_id": alert.budget_id,
        "period_start": alert.period_start,
        "threshold": alert.threshold,
        "status": SENDING if urls else NO_CHANNEL,
        "title": alert.title[:255],
        "body": alert.body,
        "link": alert.link[:1024],
        "error": "",
        "created_at": now,
        "sent_at": None,
    }
    with engine.connect() as conn:
        existing = conn.execute(select(t.c.status).where(t.c.alert_key == alert.key)).scalar_one_or_none()
    if existing is None:
        try:
            with engine.begin() as conn:
                conn.execute(insert(t).values(**row))
        except IntegrityError:  # another evaluator claimed it first
            return False
    elif existing == FAILED and urls:
        with engine.begin() as conn:
            claimed = conn.execute(
                update(t).where(t.c.alert_key == alert.key, t.c.status == FAILED).values(status=SENDING, error="")
            ).rowcount
        if claimed != 1:
            return False
    else:
        return False
    if not urls:
        log.info("alert %s recorded; no alert URLs configured", alert.key)
        return False
    try:
        send(urls, alert.title, alert.text())
    except AlertError as exc:
        log.warning("alert %s not delivered: %s", alert.key, exc)
        with engine.begin() as conn:
            conn.execute(update(t).where(t.c.alert_key == alert.key).values(status=FAILED, error=str(exc)))
        return False
    with engine.begin() as conn:
        conn.execute(update(t).where(t.c.alert_key == alert.key).values(status=SENT, sent_at=datetime.now(UTC)))
    return True


def claimed(engine: Engine, keys: Sequence[str]) -> set[str]:
    """The keys among ``keys`` already dealt with (sent, being sent, recorded or covered); a failed one is due again."""
    if not keys:
        return set()
    t = ALERT_EVENTS
    stmt = select(t.c.alert_key).where(t.c.alert_key.in_(list(keys)), t.c.status != FAILED)
    with engine.connect() as conn:
        return set(conn.execute(stmt).scalars())


def supersede(engine: Engine, alert: Alert, by: Alert, now: datetime | None = None) -> None:
    """Record ``alert`` as covered by ``by`` (one message for one jump), so it is never sent later."""
    row = {
        "alert_key": alert.key,
        "kind": alert.kind,
        "budget_id": alert.budget_id,
        "period_start": alert.period_start,
        "threshold": alert.threshold,
        "status": SUPERSEDED,
        "title": alert.title[:255],
        "body": f"covered by: {by.title}",
        "link": alert.link[:1024],
        "error": "",
        "created_at": now or datetime.now(UTC),
        "sent_at": None,
    }
    try:
        with engine.begin() as conn:
            conn.execute(insert(ALERT_EVENTS).values(**row))
    except IntegrityError:  # another evaluator recorded it first
        pass


def send_test(settings: Settings) -> str:
    """Send a test message to every configured channel; returns the channel list.

    Raises:
        AlertError: no URLs configured, or a channel failed.
    """
    urls = parse_urls(settings)
    if not urls:
        raise AlertError("no alert URLs configured: set LLM_USAGE_ALERT_URLS (apprise URLs, space-separated)")
    link = dashboard_link(settings, "budgets")
    send(urls, "llm-usage test alert", f"This is a test message from llm-usage. Budgets and alerts: {link}")
    return describe_urls(urls)


@dataclass(frozen=True)
class AlertRecord:
    """A row of ``alert_events`` as the CLI and dashboard list it."""

    key: str
    kind: str
    status: str
    title: str
    link: str
    created_at: datetime
    sent_at: datetime | None
    error: str


def recent_alerts(engine: Engine, limit: int = 50) -> list[AlertRecord]:
    """The newest alerts first."""
    t = ALERT_EVENTS
    with engine.connect() as conn:
        rows = conn.execute(select(t).order_by(t.c.created_at.desc(), t.c.id.desc()).limit(limit)).mappings().all()
    return [
        AlertRecord(
            r["alert_key"], r["kind"], r["status"], r["title"], r["link"], r["created_at"], r["sent_at"], r["error"]
        )
        for r in rows
    ]
