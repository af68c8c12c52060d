"""Monitor tokens (``X-Monitor-Token``) and API-key fingerprints: attribution without secrets.

A monitor token says which team and project a call belongs to. Only its SHA-256 is stored: the
tokens are 192-bit random strings, so a fast unsalted hash is enough (the same choice GitHub and
LiteLLM make for API tokens) and lets the proxy look one up with a dict access per request.
The proxy keeps an in-memory map of active hashes, reloaded every
``proxy_token_refresh_seconds``, so a revocation takes effect within that time and a database
outage never touches the request path (the last map stays in use).

An unknown or revoked token never blocks traffic (the sidecar does not alter calls): the call is
forwarded and recorded without a team or project.

The caller's API key is reduced to ``HMAC-SHA256(salt, key)``: stable per key, so spend can be
grouped by key, and not reversible or checkable against a guessed key without the salt
(code-anchors §11.9). The salt comes from settings or is generated once into
``<data_dir>/proxy-salt`` with mode 0600.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from collector.core.private import private_dir
from collector.core.settings import Settings
from collector.proxy.models import MONITOR_TOKENS

TOKEN_PREFIX = "mt_"  # noqa: S105  (a prefix, not a secret)
FINGERPRINT_PREFIX = "fp_"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What a valid monitor token attributes a call to."""

    id: int
    team: str
    project: str
    #: Requests / tokens per minute through the proxy; 0 = no limit.
    rpm_limit: int = 0
    tpm_limit: int = 0


def hash_token(token: str) -> str:
    """Hex SHA-256 of a monitor token (what the database stores)."""
    return hashlib.sha256(token.strip().encode()).hexdigest()


def create_token(engine: Engine, *, team: str, project: str = "", label: str = "") -> tuple[int, str]:
    """Mint a token for ``team``/``project``; returns ``(id, token)``. The token is shown only once."""
    if not team.strip():
        raise ValueError("a monitor token needs a team (--team)")
    token = TOKEN_PREFIX + secrets.token_urlsafe(24)
    with engine.begin() as conn:
        row = conn.execute(
            insert(MONITOR_TOKENS)
            .values(
                token_hash=hash_token(token),
                hint=f"{token[:7]}…{token[-3:]}",
                team=team.strip(),
                project=project.strip(),
                label=label.strip(),
                created_at=datetime.now(UTC),
            )
            .returning(MONITOR_TOKENS.c.id)
        ).one()
    return int(row[0]), token


def list_tokens(engine: Engine) -> list[dict[str, object]]:
    """Every token's id, hint, team, project, label, limits, creation and revocation time (never the token)."""
    cols = MONITOR_TOKENS.c
    stmt = select(
        cols.id,
        cols.hint,
        cols.team,
        cols.project,
        cols.label,
        cols.rpm_limit,
        cols.tpm_limit,
        cols.created_at,
        cols.revoked_at,
    )
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt.order_by(cols.id))]


def revoke_token(engine: Engine, token_id: int) -> bool:
    """Revoke a token by id; False when no active token has that id."""
    cols = MONITOR_TOKENS.c
    with engine.begin() as conn:
        result = conn.execute(
            update(MONITOR_TOKENS)
            .where(cols.id == token_id, cols.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
    return bool(result.rowcount)


def load_active(engine: Engine) -> dict[str, TokenInfo]:
    """``{token_hash: TokenInfo}`` of every token not revoked (the proxy's lookup map)."""
    cols = MONITOR_TOKENS.c
    stmt = select(cols.token_hash, cols.id, cols.team, cols.project, cols.rpm_limit, cols.tpm_limit).where(
        cols.revoked_at.is_(None)
    )
    with engine.connect() as conn:
        return {r[0]: TokenInfo(int(r[1]), r[2], r[3], int(r[4] or 0), int(r[5] or 0)) for r in conn.execute(stmt)}


def set_limits(engine: Engine, token_id: int, *, rpm: int | None = None, tpm: int | None = None) -> bool:
    """Set a token's requests/minute and/or tokens/minute (0 = no limit); False for an unknown id."""
    values = {k: v for k, v in (("rpm_limit", rpm), ("tpm_limit", tpm)) if v is not None}
    if any(v < 0 for v in values.values()):
        raise ValueError("limits are 0 (none) or a positive number per minute")
    if not values:
        return True
    with engine.begin() as conn:
        result = conn.execute(update(MONITOR_TOKENS).where(MONITOR_TOKENS.c.id == token_id).values(**values))
    return bool(result.rowcount)


def load_salt(settings: Settings) -> bytes:
    """The fingerprint salt: from settings, else read or created (mode 0600) in the data folder."""
    if settings.proxy_fingerprint_salt is not None:
        return settings.proxy_fingerprint_salt.get_secret_value().encode()
    path = Path(settings.data_dir) / "proxy-salt"
    if not path.exists():
        private_dir(path.parent)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another replica created it first
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


class Fingerprinter:
    """Salted, non-reversible fingerprints of API keys (about a microsecond each, no memo of keys)."""

    def __init__(self, salt: bytes) -> None:
        self._base = hmac.new(salt, digestmod=hashlib.sha256)  # keyed once; copies are cheap

    def __call__(self, key: bytes) -> str:
        """``fp_`` + 20 hex characters of HMAC-SHA256(salt, key); '' for no key."""
        if not key:
            return ""
        mac = self._base.copy()
        mac.update(key)
        return FINGERPRINT_PREFIX + mac.hexdigest()[:20]
