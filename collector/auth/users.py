"""Dashboard accounts: names, roles and argon2 password hashes; password and single sign-on checks.

The dashboard signs people in against this table; ``llm-usage users ...`` manages it.
Three roles, each including the one before: a *viewer* sees spend, *finance* also imports CSV
billing exports, an *admin* also manages connections, users and proxy tokens.

Passwords are hashed with argon2id (``argon2-cffi``'s :class:`~argon2.PasswordHasher` defaults,
which follow RFC 9106's recommendations). Guessing is slowed down per client and for everyone
together, and concurrent verifications are capped (:mod:`collector.auth.throttle`); an account is
never locked by name, so nobody can keep ``admin`` locked out, and every failed attempt, whatever
the name, gets the same answer after the same work (one argon2 verification, one update).

Single sign-on reaches only accounts marked for it (``sso``), by a verified e-mail address.
"""

from __future__ import annotations

import functools
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Boolean, Column, Index, Integer, String, Table, delete, false, func, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

from collector.auth import sessions
from collector.auth.throttle import Busy, SignInThrottle, default_throttle
from collector.core.sqltypes import UTCDateTime

#: Roles from least to most privileged; each role may do everything the ones before it may.
ROLES: tuple[str, ...] = ("viewer", "finance", "admin")
MIN_PASSWORD_LENGTH = 12
WRONG = "Wrong user name or password."
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._@+-]{0,254}$")
_HASHER = PasswordHasher()


class UserError(ValueError):
    """A user-management request that cannot be carried out; the message says why."""


class User(SQLModel, table=True):
    """The ``users`` table: one dashboard account."""

    __tablename__ = "users"
    __table_args__ = (Index("ux_users_name", "name", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(String(255), nullable=False))
    #: argon2id PHC string; ``''`` for an account that signs in only through OpenID Connect.
    password_hash: str = Field(default="", sa_column=Column(String(255), nullable=False, server_default=""))
    role: str = Field(sa_column=Column(String(16), nullable=False))
    #: Consecutive failed password sign-ins (shown to admins; it never locks the account).
    failed_attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    #: Unused since sign-in throttling follows clients, not accounts; kept for old databases.
    locked_until: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    #: May sign in through OpenID Connect (by its verified e-mail address).
    sso: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    last_sign_in_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    #: The password was generated or reset by someone else: its owner must pick a new one first.
    must_change_password: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))


USERS: Table = User.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Account:
    """A user as the dashboard and CLI see it (never the hash)."""

    name: str
    role: str
    has_password: bool
    sso: bool
    failed_attempts: int
    locked_until: datetime | None
    created_at: datetime
    last_sign_in_at: datetime | None
    must_change_password: bool = False


@dataclass(frozen=True)
class SignIn:
    """The outcome of one sign-in attempt."""

    ok: bool
    account: Account | None = None
    message: str = ""
    retry_after: int = 0


def normalise_name(name: str) -> str:
    """Lower-case, trimmed account name; raises :class:`UserError` when it is not usable."""
    clean = name.strip().lower()
    if not _NAME_RE.match(clean):
        raise UserError(
            f"invalid user name {name!r}: use letters, digits and . _ @ + - (an e-mail address works), "
            "starting with a letter or digit"
        )
    return clean


def check_role(role: str) -> str:
    """Return ``role`` if it is one of :data:`ROLES`, else raise :class:`UserError`."""
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    return role


def role_allows(role: str | None, needed: str) -> bool:
    """True when ``role`` includes the rights of ``needed`` (admin > finance > viewer)."""
    if role not in ROLES:
        return False
    return ROLES.index(role) >= ROLES.index(check_role(needed))


def check_password_strength(password: str) -> None:
    """Refuse passwords too short to resist guessing (length is what matters, NIST SP 800-63B)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password too short: use at least {MIN_PASSWORD_LENGTH} characters")


def generate_password() -> str:
    """A random password for a new account (about 144 bits), shown once to whoever creates it."""
    return secrets.token_urlsafe(18)


def hash_password(password: str) -> str:
    """argon2id hash (PHC string with its own salt and parameters)."""
    return _HASHER.hash(password)


def _account(row: object) -> Account:
    m = row._mapping  # type: ignore[attr-defined]
    return Account(
        name=m["name"],
        role=m["role"],
        has_password=bool(m["password_hash"]),
        sso=bool(m["sso"]),
        failed_attempts=m["failed_attempts"],
        locked_until=m["locked_until"],
        created_at=m["created_at"],
        last_sign_in_at=m["last_sign_in_at"],
        must_change_password=bool(m["must_change_password"]),
    )


def count_users(engine: Engine) -> int:
    """Number of accounts."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(USERS)).scalar_one())


def list_users(engine: Engine) -> list[Account]:
    """Every account, by name."""
    with engine.connect() as conn:
        return [_account(r) for r in conn.execute(select(USERS).order_by(USERS.c.name))]


def get_user(engine: Engine, name: str) -> Account | None:
    """The account called ``name`` (case-insensitive), or None."""
    try:
        clean = normalise_name(name)
    except UserError:
        return None
    with engine.connect() as conn:
        row = conn.execute(select(USERS).where(USERS.c.name == clean)).first()
    return _account(row) if row is not None else None


def add_user(
    engine: Engine,
    name: str,
    role: str,
    password: str | None,
    *,
    sso: bool | None = None,
    must_change: bool = False,
    now: datetime | None = None,
) -> Account:
    """Create an account; ``password=None`` makes one that signs in only through OpenID Connect.

    Args:
        engine: the database.
        name: account name (the e-mail address single sign-on matches).
        role: one of :data:`ROLES`.
        password: the password, or None for an SSO-only account.
        sso: may sign in through OpenID Connect; default: only when there is no password.
        must_change: the password was generated for the user, who must replace it at first sign-in.
        now: creation time (tests).

    Raises:
        UserError: invalid name or role, weak password, no way to sign in, or the name is taken.
    """
    clean = normalise_name(name)
    check_role(role)
    if password is not None:
        check_password_strength(password)
    sso = password is None if sso is None else sso
    if password is None and not sso:
        raise UserError("an account without a password must be allowed to sign in through SSO")
    values = {
        "name": clean,
        "role": role,
        "sso": sso,
        "password_hash": hash_password(password) if password is not None else "",
        "failed_attempts": 0,
        "must_change_password": must_change and password is not None,
        "created_at": now or datetime.now(UTC),
    }
    try:
        with engine.begin() as conn:
            conn.execute(USERS.insert().values(**values))
    except IntegrityError as exc:
        raise UserError(f"user {clean!r} already exists") from exc
    account = get_user(engine, clean)
    assert account is not None
    return account


def _admins_other_than(conn: Connection, name: str) -> int:
    stmt = select(func.count()).select_from(USERS).where(USERS.c.role == "admin", USERS.c.name != name)
    return int(conn.execute(stmt).scalar_one())


def _require(conn: Connection, name: str) -> dict:
    row = conn.execute(select(USERS).where(USERS.c.name == name)).first()
    if row is None:
        raise UserError(f"no user called {name!r} (see `llm-usage users list`)")
    return dict(row._mapping)


def remove_user(engine: Engine, name: str) -> None:
    """Delete an account; the last admin cannot be removed (nobody could manage users then)."""
    clean = normalise_name(name)
    with engine.begin() as conn:
        row = _require(conn, clean)
        if row["role"] == "admin" and _admins_other_than(conn, clean) == 0:
            raise UserError(f"{clean!r} is the last admin: add another admin before removing it")
        conn.execute(delete(USERS).where(USERS.c.name == clean))
        sessions.end_all(conn, clean)


def set_role(engine: Engine, name: str, role: str) -> None:
    """Change an account's role; the last admin cannot be demoted."""
    clean = normalise_name(name)
    check_role(role)
    with engine.begin() as conn:
        row = _require(conn, clean)
        if row["role"] == "admin" and role != "admin" and _admins_other_than(conn, clean) == 0:
            raise UserError(f"{clean!r} is the last admin: add another admin before changing its role")
        conn.execute(update(USERS).where(USERS.c.name == clean).values(role=role))
        if role != row["role"]:
            sessions.end_all(conn, clean)


def set_password(engine: Engine, name: str, password: str, *, must_change: bool = False) -> None:
    """Replace an account's password, lift any sign-in lock and end the account's dashboard sessions.

    ``must_change`` marks a password someone else chose or saw (an admin's reset, a generated
    one): its owner must replace it at their next sign-in. Every open session ends, so a
    password changed because it leaked also signs out whoever used it.
    """
    clean = normalise_name(name)
    check_password_strength(password)
    hashed = hash_password(password)
    with engine.begin() as conn:
        _require(conn, clean)
        conn.execute(
            update(USERS)
            .where(USERS.c.name == clean)
            .values(password_hash=hashed, failed_attempts=0, locked_until=None, must_change_password=must_change)
        )
        sessions.end_all(conn, clean)


def change_own_password(engine: Engine, name: str, current: str, new: str, *, keep_session: int | None = None) -> None:
    """A signed-in user replaces their own password (which clears ``must_change_password``).

    The current password is asked again so an unattended signed-in browser cannot take the
    account over. Every other session of the account ends; ``keep_session`` (the caller's own)
    stays signed in.

    Raises:
        UserError: wrong current password, the same password again, or a too short one.
    """
    clean = normalise_name(name)
    check_password_strength(new)
    if new == current:
        raise UserError("choose a password different from the current one")
    with engine.connect() as conn:
        stored = _require(conn, clean)["password_hash"]
    if not stored or not _verify(stored, current):
        raise UserError("the current password is wrong")
    hashed = hash_password(new)
    with engine.begin() as conn:
        conn.execute(
            update(USERS)
            .where(USERS.c.name == clean)
            .values(password_hash=hashed, failed_attempts=0, locked_until=None, must_change_password=False)
        )
        sessions.end_all(conn, clean, keep=keep_session)


def set_sso(engine: Engine, name: str, sso: bool) -> None:
    """Allow or forbid single sign-on for an account (an account without a password keeps it)."""
    clean = normalise_name(name)
    with engine.begin() as conn:
        row = _require(conn, clean)
        if not sso and not row["password_hash"]:
            raise UserError(f"{clean!r} has no password: set one before turning SSO off")
        conn.execute(update(USERS).where(USERS.c.name == clean).values(sso=sso))


@functools.cache
def _dummy_hash(params: tuple[int, int, int]) -> str:
    """A hash to verify against when the name is unknown, so a wrong name costs as long as a wrong password."""
    return _HASHER.hash(secrets.token_urlsafe(16))


def _verify_dummy(password: str) -> None:
    _verify(_dummy_hash((_HASHER.time_cost, _HASHER.memory_cost, _HASHER.parallelism)), password)


def _verify(stored: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def authenticate(
    engine: Engine,
    name: str,
    password: str,
    *,
    client: str = "",
    now: datetime | None = None,
    throttle: SignInThrottle | None = None,
) -> SignIn:
    """Check a name and password under the sign-in limits of :mod:`collector.auth.throttle`.

    Args:
        engine: the database.
        name: the name typed.
        password: the password typed.
        client: who is asking (the browser's address as the dashboard sees it); limits apply per client.
        now: the time stamped on a successful sign-in (tests).
        throttle: the limits (default: the process's :func:`collector.auth.throttle.default_throttle`).

    A throttled client is answered before any account is looked up. Otherwise every attempt costs
    one argon2 verification (against a dummy hash for unknown names and SSO-only accounts) and
    one update, and every failure gets the same message, so the form reveals neither which names
    exist nor which are being attacked.
    """
    throttle = throttle or default_throttle()
    wait = throttle.wait_seconds(client)
    if wait:
        return SignIn(ok=False, message=f"Too many failed sign-ins: try again in {wait} s.", retry_after=wait)
    try:
        with throttle.verification():
            account = _check_password(engine, name, password, now or datetime.now(UTC))
    except Busy:
        return SignIn(ok=False, message="Sign-in is busy: try again in a few seconds.", retry_after=5)
    if account is None:
        delay = throttle.failed(client)
        message = WRONG + (f" Too many failures: wait {delay} s before trying again." if delay else "")
        return SignIn(ok=False, message=message, retry_after=delay)
    throttle.succeeded(client)
    return SignIn(ok=True, account=account)


def _check_password(engine: Engine, name: str, password: str, now: datetime) -> Account | None:
    """The account if ``password`` is its password; None otherwise, after the same work either way."""
    try:
        clean = normalise_name(name)
    except UserError:
        clean = ""
    with engine.begin() as conn:
        row = conn.execute(select(USERS).where(USERS.c.name == clean)).first()
        stored = row._mapping["password_hash"] if row is not None else ""
        if not stored:
            _verify_dummy(password)
        if not stored or not _verify(stored, password):
            # Also for unknown names (no row matches): the same statement, the same cost.
            conn.execute(update(USERS).where(USERS.c.name == clean).values(failed_attempts=USERS.c.failed_attempts + 1))
            return None
        values: dict = {"failed_attempts": 0, "locked_until": None, "last_sign_in_at": now}
        if _HASHER.check_needs_rehash(stored):
            values["password_hash"] = hash_password(password)
        conn.execute(update(USERS).where(USERS.c.name == clean).values(**values))
        return _account(conn.execute(select(USERS).where(USERS.c.name == clean)).one())


def record_sso_sign_in(engine: Engine, email: str, *, now: datetime | None = None) -> Account | None:
    """The local account of someone signed in through OpenID Connect, stamping the sign-in time.

    ``email`` must be an address the identity provider verified (the caller checks
    ``email_verified``). Only an account named after it *and marked for SSO* is returned: a
    password account such as ``admin`` is never reachable through an identity provider. Roles
    always come from this table; an identity without such an account gets no access (an admin
    adds it with ``llm-usage users add EMAIL --no-password``).
    """
    try:
        clean = normalise_name(email)
    except UserError:
        return None
    with engine.begin() as conn:
        where = (USERS.c.name == clean) & USERS.c.sso.is_(True)
        row = conn.execute(select(USERS).where(where)).first()
        if row is None:
            return None
        conn.execute(update(USERS).where(where).values(last_sign_in_at=now or datetime.now(UTC)))
        return _account(conn.execute(select(USERS).where(where)).one())


def ensure_first_admin(engine: Engine, name: str = "admin") -> str | None:
    """On a database with no accounts, create admin ``name`` with a generated password to change at first sign-in.

    Returns:
        The generated password (to show once), or None when accounts already existed. Never a
        fixed default: every installation gets its own random first password.
    """
    if count_users(engine):
        return None
    password = generate_password()
    try:
        add_user(engine, name, "admin", password, must_change=True)
    except UserError:
        return None  # another process created it between our count and insert
    return password
