"""The ``import_files`` table: one row per CSV billing export imported (or refused).

It lives in ``collector`` (not ``importers``) because ``collector/models.py`` imports every table
module and the core must not depend on the importers package. Rows are written by
``importers.service.import_file`` in the same transaction as the usage rows of the file
(code-anchors §11.10): a file is recorded as ``imported`` exactly when its rows are in.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, String, Text
from sqlmodel import Field, SQLModel

from collector.core.sqltypes import UTCDateTime

#: ``status`` values: the file's rows are in, or the file was refused and nothing was written.
IMPORTED = "imported"
FAILED = "failed"
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

__all__ = ["ACCOUNT_SEPARATOR", "FAILED", "IMPORTED", "IMPORT_FILES", "ImportFile"]
