"""Figures computed once per data change and kept in the database, for every process to read.

The Budgets page's figures (budget statuses, forecasts, the anomaly scan, the month's
chargeback) sum weeks of the daily rollup and take seconds at tens of millions of rows, yet they
change only when usage is written. ``data_version`` (:mod:`collector.core.store`) counts those
writes, so a figure computed at one version stays right until the next. Keeping it only in one
process's memory (``st.cache_data``) leaves every fresh dashboard process (a restart, a second
replica, an upgrade) to pay the seconds again on its first visitor; keeping it in the ``figures``
table lets the first computation serve them all.

Why JSON and not pickle: the payload is read back by the dashboard, and unpickling runs code
chosen by whoever can write the table. The codec below rebuilds only the plain types and the
dataclasses the caller names (``types``); anything else is an error, never an import.

A row is keyed by the figure's name and a digest of its arguments (their JSON, so the key is
the same in every process, unlike Python's salted ``hash``). Rows of older versions are
deleted whenever a newer one is written, so the table holds at most one generation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from collector.core.schema import Figure
from collector.core.store import short_wait

log = logging.getLogger(__name__)

T = TypeVar("T")
FIGURES = Figure.__table__  # type: ignore[attr-defined]


class CodecError(ValueError):
    """A value the figure codec does not write, or a payload naming a type it was not given."""


def _name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def encode(value: Any) -> Any:
    """``value`` as JSON-ready data, with tags for the types JSON lacks."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return {"$f": repr(value)}  # keeps nan and inf, which json.dumps writes as non-JSON
    if isinstance(value, Decimal):
        return {"$d": str(value)}
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise CodecError("naive datetimes are not kept (every time here is UTC-aware)")
        return {"$t": value.astimezone(UTC).isoformat()}
    if isinstance(value, date):
        return {"$D": value.isoformat()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"$c": _name(type(value)), "f": fields}
    if isinstance(value, tuple) and hasattr(type(value), "_fields"):  # a NamedTuple keeps its type
        return {"$n": _name(type(value)), "v": [encode(v) for v in value]}
    if isinstance(value, tuple):
        return {"$u": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, frozenset | set):
        return {"$s": sorted((encode(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))}
    if isinstance(value, dict):
        return {"$m": [[encode(k), encode(v)] for k, v in value.items()]}
    raise CodecError(f"cannot keep a {type(value).__name__} in a figure")


def decode(data: Any, types: dict[str, type]) -> Any:
    """The value :func:`encode` wrote; dataclasses only from ``types`` (``module:qualname`` -> class)."""
    if data is None or isinstance(data, bool | int | str):
        return data
    if isinstance(data, list):
        return [decode(v, types) for v in data]
    if not isinstance(data, dict) or len(data) not in (1, 2):
        raise CodecError("not a figure payload")
    if "$c" in data or "$n" in data:
        named = str(data.get("$c", data.get("$n")))
        cls = types.get(named)
        if cls is None:
            raise CodecError(f"a figure names a type it may not build: {str(named)[:80]!r}")
        if "$n" in data:
            return cls(*(decode(v, types) for v in data["v"]))
        return _build(cls, {k: decode(v, types) for k, v in data["f"].items()})
    (tag, raw), *_ = data.items()
    if tag == "$d":
        return Decimal(raw)
    if tag == "$t":
        return datetime.fromisoformat(raw)
    if tag == "$D":
        return date.fromisoformat(raw)
    if tag == "$f":
        return float(raw)
    if tag == "$u":
        return tuple(decode(v, types) for v in raw)
    if tag == "$s":
        return frozenset(decode(v, types) for v in raw)
    if tag == "$m":
        return {decode(k, types): decode(v, types) for k, v in raw}
    raise CodecError(f"unknown figure tag {tag[:10]!r}")


def _build(cls: type, values: dict[str, Any]) -> Any:
    """An instance of the dataclass ``cls`` with exactly the fields it was written with.

    Fields left out of ``__init__`` are set afterwards, as ``dataclasses.replace`` would refuse them.
    """
    init = {f.name for f in dataclasses.fields(cls) if f.init}
    obj = cls(**{k: v for k, v in values.items() if k in init})
    for key, val in values.items():
        if key not in init:
            object.__setattr__(obj, key, val)
    return obj


def type_map(classes: Iterable[type]) -> dict[str, type]:
    """The ``types`` argument of :func:`decode` and :func:`cached` for these dataclasses."""
    return {_name(cls): cls for cls in classes}


def digest(args: Any) -> str:
    """A key for ``args`` that is the same in every process (SHA-256 of their canonical JSON)."""
    text = json.dumps(encode(args), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def cached(
    engine: Engine,
    name: str,
    args: Any,
    version: int,
    compute: Callable[[], T],
    *,
    types: dict[str, type],
) -> T:
    """The figure ``name`` for ``args`` at data ``version``: read if kept, else computed and kept.

    A payload that no longer decodes (a class changed between releases) is computed again. A
    database that refuses the write (read-only, busy) costs only the keeping: the computed
    figure is returned either way.
    """
    key = digest(args)
    with engine.connect() as conn:
        row = conn.execute(
            select(FIGURES.c.version, FIGURES.c.payload).where(FIGURES.c.name == name, FIGURES.c.key == key)
        ).first()
    if row is not None and row.version == version:
        try:
            return decode(json.loads(row.payload), types)  # type: ignore[no-any-return]
        except (CodecError, TypeError, ValueError, KeyError):
            log.warning("a kept %s figure no longer reads; computing it again", name)
    value = compute()
    try:
        _keep(engine, name, key, version, json.dumps(encode(value), separators=(",", ":")))
    except CodecError:
        log.warning("the %s figure holds a type the codec does not keep; not kept", name)
    except DBAPIError as exc:
        log.warning("keeping the %s figure failed (%s); it is computed again next time", name, type(exc).__name__)
    return value


def _keep(engine: Engine, name: str, key: str, version: int, payload: str) -> None:
    """Upsert one figure and drop every row of an older version (at most one generation stays)."""
    values = {"version": version, "payload": payload, "computed_at": datetime.now(UTC)}
    where = (FIGURES.c.name == name, FIGURES.c.key == key)
    # Behind another writer's long transaction (an import), skip keeping rather than wait for it.
    with engine.connect() as conn, short_wait(conn, 50), conn.begin():
        conn.execute(delete(FIGURES).where(FIGURES.c.version < version))
        if conn.execute(update(FIGURES).where(*where).values(**values)).rowcount:
            return
        try:
            with conn.begin_nested():
                conn.execute(insert(FIGURES).values(name=name, key=key, **values))
        except IntegrityError:  # another process kept the same figure first
            conn.execute(update(FIGURES).where(*where).values(**values))


def clear(engine: Engine) -> int:
    """Forget every kept figure (``llm-usage db`` maintenance and tests); returns how many."""
    with engine.begin() as conn:
        return int(conn.execute(delete(FIGURES)).rowcount or 0)


__all__ = ["FIGURES", "CodecError", "cached", "clear", "decode", "digest", "encode", "type_map"]
