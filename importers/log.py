"""The ``import_files`` log: one row per CSV billing export imported (or refused, or removed).

Rows are written by ``importers.service.import_file`` in the same transaction as the usage rows of
the file (code-anchors §11.10): a file is recorded as ``imported`` exactly when its rows are in.
:func:`remove_import` deletes the rows a file wrote (in one transaction with its log row turning
``removed``), which is how another billed source comes to count for the days the file billed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Index, String, Text, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel

from collector.core.sqltypes import UTCDateTime
from collector.core.store import delete_by_source_ref

#: ``status`` values: the file's rows are in, the file was refused and nothing was written, or
#: its rows were deleted afterwards.
IMPORTED = "imported"
FAILED = "failed"
REMOVED = "removed"
#: Separates the billing accounts of one file in ``account`` (a file may bill several).
ACCOUNT_SEPARATOR = ", "


class ImportFile(SQLModel, table=True):
    """One imported (or refused) export: what, how big, which format, which period, who and when."""

    __tablename__ = "import_files"
    __table_args__ = (Index("ix_import_files_sha256", "sha256"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(String(512), nullable=False))
    sha256: str = Field(sa_column=Column(String(64), nullable=False))
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    importer: str = Field(sa_column=Column(String(64), nullable=False))
    rows: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    rows_read: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    period_start: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    period_end: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    account: str = Field(default="", sa_column=Column(String(255), nullable=False, server_default=""))
    imported_by: str = Field(default="", sa_column=Column(String(255), nullable=False, server_default=""))
    imported_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    status: str = Field(sa_column=Column(String(16), nullable=False))
    message: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))


IMPORT_FILES = ImportFile.__table__  # type: ignore[attr-defined]
_LISTED = ("id", "name", "importer", "status", "rows", "period_start", "period_end", "account", "imported_at")


def recent_imports(engine: Engine, limit: int = 50) -> list[dict[str, Any]]:
    """The newest log rows first (no message text: it can be long)."""
    cols = [IMPORT_FILES.c[name] for name in _LISTED]
    with engine.connect() as conn:
        rows = conn.execute(select(*cols).order_by(IMPORT_FILES.c.id.desc()).limit(limit)).all()
    return [dict(r._mapping) for r in rows]


def remove_import(engine: Engine, import_id: int) -> int | None:
    """Delete the usage rows an imported file wrote; None when no imported file has that id.

    Rows the file wrote that a later file rewrote carry the later file's reference and stay.
    """
    with engine.begin() as conn:
        found = conn.execute(
            select(IMPORT_FILES.c.id).where(IMPORT_FILES.c.id == import_id, IMPORT_FILES.c.status == IMPORTED)
        ).first()
        if found is None:
            return None
        deleted = delete_by_source_ref(conn, f"file:{import_id}")
        conn.execute(update(IMPORT_FILES).where(IMPORT_FILES.c.id == import_id).values(status=REMOVED, rows=0))
    return deleted


__all__ = [
    "ACCOUNT_SEPARATOR",
    "FAILED",
    "IMPORTED",
    "IMPORT_FILES",
    "REMOVED",
    "ImportFile",
    "recent_imports",
    "remove_import",
]
