"""Committing sealed journal segments from a child process, off the serving process's interpreter.

The writer thread shares the GIL and the cores with the event loop. Pricing, building parameters
and binding them to the driver cost about 20 µs of interpreter time per event, so at a few
thousand calls a second the writer holds the interpreter for tens of milliseconds every round,
and the calls that arrive meanwhile wait for it: that was most of the sidecar's p99 at one
client (README, "Proxy sidecar").

So the serving process keeps only what must stay there (appending to the journal, sealing a
segment, counting, the budget caps' hook, the periodic jobs) and hands each sealed segment's
*path* to one child process, started with ``spawn`` (forking a process that runs an event loop and
threads is unsafe) at a lower CPU priority, so that the kernel runs requests first when both want
a core. The child reads the segment from disk, inserts its events with the same statement and the
same set-aside rule for refused events as the thread does (:func:`collector.proxy.recorder.store_batches`),
and answers with counts. The segment is deleted by the serving process only after that answer, so
a child that dies mid-commit loses nothing: the segment is committed again by the next child, and
event ids with ``ON CONFLICT (id) DO NOTHING`` keep it from counting twice.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from collector.db.engine import make_engine
from collector.proxy.spool import read_segment

log = logging.getLogger(__name__)

#: Niceness added to the child: the request path wins a contended core, the writer catches up later.
CHILD_NICENESS = 10


class CommitFailed(RuntimeError):
    """The child could not commit a segment; ``reason`` names the error's type, nothing more.

    Exceptions cross the process boundary by pickling, and a driver's exception may neither
    pickle nor be safe to log (its message can carry a connection URL), so only the type's name
    comes back.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Committed:
    """A segment's outcome: rows newly inserted, and events refused by the database and set aside."""

    new: int
    rejected: int


def writer_engine(url: str) -> Engine:
    """The engine a writer uses: SQLite without a pool (each batch reopens the file), others pooled.

    A batch every half second costs nothing to reopen, and a replaced or repaired database file is
    picked up at once instead of through a stale pooled handle.
    """
    return make_engine(url, poolclass=NullPool) if url.startswith("sqlite") else make_engine(url)


# -- the child process -------------------------------------------------------------------------

_CHILD_ENGINE: Engine | None = None


def _child_start(url: str) -> None:
    """Runs once in the child: lower its priority and create (not connect) its engine."""
    global _CHILD_ENGINE
    with contextlib.suppress(OSError):
        os.nice(CHILD_NICENESS)
    _CHILD_ENGINE = writer_engine(url)


def _child_commit(path: str, batch_size: int) -> Committed:
    """Insert one sealed segment's events (in the child); the segment itself is left to the parent."""
    # recorder imports this module (for WriterProcess), so its helpers are imported at call time.
    from collector.proxy.recorder import rejected_path, store_batches

    assert _CHILD_ENGINE is not None
    segment = Path(path)
    events = read_segment(segment)
    batches = iter(lambda: list(islice(events, batch_size)), [])
    try:
        new, rejected = store_batches(_CHILD_ENGINE, batches, rejected_path(segment))
    except Exception as exc:  # noqa: BLE001  (see CommitFailed: only the type's name crosses back)
        raise CommitFailed(type(exc).__name__) from None
    return Committed(new, rejected)


# -- the serving process -----------------------------------------------------------------------


class WriterProcess:
    """One child process that commits sealed segments; started on first use, restarted after a crash.

    Args:
        url: the database URL (passed to the child through its pipe, never on a command line).
        batch_size: events per insert.
    """

    def __init__(self, url: str, batch_size: int) -> None:
        self.url = url
        self.batch_size = batch_size
        self._pool: ProcessPoolExecutor | None = None

    def commit(self, path: Path) -> Committed:
        """Commit ``path``'s events in the child and wait for its answer (the GIL is free meanwhile).

        Raises:
            CommitFailed: the database refused the segment as a whole (unreachable, locked), or
                the child died; the segment stays on disk for the next try.
        """
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_child_start,
                initargs=(self.url,),
            )
        try:
            return self._pool.submit(_child_commit, str(path), self.batch_size).result()
        except BrokenProcessPool:
            self._discard()
            raise CommitFailed("writer process died") from None

    def pid(self) -> int | None:
        """The child's process id, once it runs (for tests and diagnostics)."""
        processes = getattr(self._pool, "_processes", None) or {}
        return next(iter(processes), None)

    def close(self) -> None:
        """Stop the child once its current segment, if any, is committed."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _discard(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


__all__ = ["CommitFailed", "Committed", "WriterProcess", "writer_engine"]
