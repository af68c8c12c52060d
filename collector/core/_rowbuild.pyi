"""Types of the store's C row builder (``_rowbuild.c``); see its docstrings."""

from collections.abc import Callable
from typing import Any

def rows(
    records: list[Any],
    type: type,
    fields: tuple[str, ...],
    key_fields: tuple[str, ...],
    key_cache: str,
    columns: tuple[list[Any], ...],
    constants: tuple[Any, ...],
    touched: set[Any] | None = None,
    slice_fields: tuple[str, ...] | None = None,
    day_seconds: int = 86400,
) -> list[tuple[Any, ...]]: ...
def blake2b_16(data: bytes) -> bytes: ...
def scaled(values: list[Any], scale: int, decimal: type, fallback: Callable[[Any], Any]) -> list[Any]: ...
def blake2b_16_column(offsets: Any, data: Any, start: int, n: int, wide: bool) -> list[bytes]: ...
def flatten(
    rows: list[tuple[Any, ...]],
    per: int,
    keep: tuple[int, ...] | None = None,
    lead: tuple[Any, ...] = (),
    blobs: tuple[int, ...] = (),
) -> list[list[Any]]: ...
def shared_columns(rows: list[tuple[Any, ...]]) -> tuple[int, ...]: ...
def group_sums(
    rows: list[Any],
    start_at: int,
    dims_at: tuple[int, ...],
    measures_at: tuple[int, ...],
    cost_index: int,
    day_seconds: int,
    day_of: dict[Any, int] | None = None,
    into: dict[tuple[int, tuple[Any, ...]], Any] | None = None,
) -> dict[tuple[int, tuple[Any, ...]], list[Any]]: ...
