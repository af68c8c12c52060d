"""Encryption at rest for provider admin keys (design.md, "Who uses it").

Keys are encrypted with Fernet through :class:`~cryptography.fernet.MultiFernet`, so the secret
can rotate: the newest secret encrypts, every listed secret still decrypts, and
:meth:`Vault.rotate` re-encrypts a token under the newest one.

Where the secrets come from:

* ``LLM_USAGE_SECRET_KEYS`` — comma-separated Fernet keys, newest first. Required when the
  database is shared (PostgreSQL): every collector replica must hold the same secrets.
* otherwise ``<data_dir>/secret.key`` — one key per line, newest first, created with mode 0600
  on first use by the embedded (SQLite) default. Back it up with the database: a database
  without its secret cannot decrypt its keys.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy.engine import make_url

from collector.core.private import private_dir
from collector.core.settings import Settings

SECRET_FILE = "secret.key"  # noqa: S105  (a file name, not a secret)


class VaultError(Exception):
    """The vault cannot be opened, or a stored key cannot be decrypted; never carries a secret."""


@dataclass(frozen=True)
class SecretSource:
    """Where the vault's secrets were read from (for messages; never the secrets themselves)."""

    kind: str  # "env" or "file"
    path: Path | None = None

    def describe(self) -> str:
        """Human text naming the source."""
        return "LLM_USAGE_SECRET_KEYS" if self.kind == "env" else f"the secret file {self.path}"


class Vault:
    """Encrypts and decrypts admin keys with a list of Fernet secrets (newest first)."""

    def __init__(self, secrets: list[str], source: SecretSource) -> None:
        if not secrets:
            raise VaultError("no secret configured: set LLM_USAGE_SECRET_KEYS")
        try:
            self._fernets = [Fernet(s.strip().encode()) for s in secrets]
        except (ValueError, TypeError):
            raise VaultError(
                f"{source.describe()} holds a malformed secret: each must be a Fernet key "
                "(32 url-safe base64 bytes, e.g. from `llm-usage secrets new`)"
            ) from None
        self._multi = MultiFernet(self._fernets)
        self.source = source

    @property
    def secret_count(self) -> int:
        """How many secrets can decrypt (1 + the retired ones still listed)."""
        return len(self._fernets)

    def encrypt(self, plaintext: str) -> str:
        """Encrypt under the newest secret; returns the Fernet token as text."""
        return self._multi.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        """Decrypt with any listed secret.

        Raises:
            VaultError: "cannot decrypt: wrong or missing secret", e.g. a database copied
                without its secret file.
        """
        try:
            return self._multi.decrypt(token.encode()).decode()
        except (InvalidToken, ValueError):
            raise VaultError(
                f"cannot decrypt: wrong or missing secret (tried {self.secret_count} secret(s) from "
                f"{self.source.describe()}; restore the secret this database was written with)"
            ) from None

    def rotate(self, token: str) -> str:
        """Re-encrypt a token under the newest secret (it must decrypt with one of them)."""
        try:
            return self._multi.rotate(token.encode()).decode()
        except (InvalidToken, ValueError):
            raise VaultError(
                f"cannot decrypt: wrong or missing secret (rotation needs the old secret listed in "
                f"{self.source.describe()} after the new one)"
            ) from None


def new_secret() -> str:
    """A fresh Fernet key."""
    return Fernet.generate_key().decode()


def _is_embedded(settings: Settings) -> bool:
    return make_url(settings.resolved_database_url()).get_backend_name() == "sqlite"


def secret_file(settings: Settings) -> Path:
    """Path of the generated secret file under the data folder."""
    return settings.data_dir / SECRET_FILE


def _read_file(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def write_secret_file(path: Path, secrets: list[str]) -> None:
    """Write secrets (newest first) to ``path`` with mode 0600, atomically replacing it."""
    private_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("# llm-usage secrets, newest first. Back this file up with the database.\n")
        fh.write("".join(f"{s}\n" for s in secrets))
    os.chmod(tmp, 0o600)  # in case the umask narrowed it further than intended (never wider)
    tmp.replace(path)


def load_vault(settings: Settings, *, create: bool = True) -> Vault:
    """Open the vault from ``LLM_USAGE_SECRET_KEYS`` or the data folder's secret file.

    Args:
        settings: the product settings.
        create: on the embedded default, generate the secret file when it does not exist.

    Raises:
        VaultError: no secret and none may be generated (a shared database without
            ``LLM_USAGE_SECRET_KEYS``), or a malformed secret.
    """
    if settings.secret_keys is not None and settings.secret_keys.get_secret_value().strip():
        secrets = [s for s in settings.secret_keys.get_secret_value().split(",") if s.strip()]
        return Vault(secrets, SecretSource("env"))
    path = secret_file(settings)
    if path.exists():
        return Vault(_read_file(path), SecretSource("file", path))
    if not create or not _is_embedded(settings):
        raise VaultError(
            "no secret configured: set LLM_USAGE_SECRET_KEYS (the same value on every collector "
            "sharing this database; generate one with `llm-usage secrets new`)"
        )
    write_secret_file(path, [new_secret()])
    return Vault(_read_file(path), SecretSource("file", path))


__all__ = ["SECRET_FILE", "Vault", "VaultError", "load_vault", "new_secret", "secret_file", "write_secret_file"]
