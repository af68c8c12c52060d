"""Committing sealed journal segments from a child process, off the serving process's interpreter.

The writer thread shares the GIL and the cores with the event loop. Pricing, building parameters
and binding them to the driver cost about 20 µs of interpreter time per event, so at a few
thousand calls a second the writer holds the interpreter for tens of milliseconds every round,
and the calls that arrive meanwhile wait for it: that was most of the sidecar's p99 at one
client (README, "Proxy sidecar").

So the serving process keeps only what must stay there (appending to the journal, sealing a
segment, counting, the budget caps, the token and budget reloads) and hands each sealed segment's
*path* to one child process, ``python -m collector.proxy.committer``, which runs at the lowest CPU
priority (``SCHED_IDLE``) so that the kernel runs requests first when both want a core. The child
reads the segment from disk, inserts its events with the same statement and the same set-aside
rule for refused events as the thread does (:func:`collector.proxy.recorder.store_batches`), and
answers with counts and the events' estimated cost per scope, which is all the budget caps need:
the serving process neither keeps the events in memory nor reads them back. The periodic rollup
and purge, database work only, run there too.

The segment is deleted by the serving process only after the child's answer, so a child that dies
mid-commit loses nothing: the next child commits the segment again, and event ids with
``ON CONFLICT (id) DO NOTHING`` keep it from counting twice.

The protocol is one JSON line each way on the child's stdin and stdout. The first line carries
the database URL, so it is never on a command line (``ps``) or in the environment. The child is a
plain ``subprocess`` rather than ``multiprocessing``: nothing is pickled, and the sidecar's main
module (a console script, ``python -c``, an embedding program) is never re-imported.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import IO, Any

from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from collector.db.engine import make_engine
from collector.proxy.spool import read_segment

log = logging.getLogger(__name__)

#: Niceness of the child where ``SCHED_IDLE`` is not available (:func:`lower_priority`).
CHILD_NICENESS = 19
#: How long :meth:`WriterProcess.close` waits for the child's current work before killing it.
CLOSE_SECONDS = 30.0


class CommitFailed(RuntimeError):
    """The child could not do what it was asked; ``reason`` names the error's type, nothing more.

    A driver's message can carry a connection URL, so only the type's name crosses back.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Committed:
    """A segment's outcome: rows newly inserted, events refused and set aside, costs per scope.

    ``costs``: the estimated cost of the segment's events per
    :data:`collector.proxy.recorder.CostScope`, for the budget caps (empty unless asked for).
    """

    new: int
    rejected: int
    costs: dict[tuple[Any, ...], Decimal] = field(default_factory=dict)


def writer_engine(url: str) -> Engine:
    """The engine a writer uses: SQLite without a pool (each batch reopens the file), others pooled.

    A batch every half second costs nothing to reopen, and a replaced or repaired database file is
    picked up at once instead of through a stale pooled handle.
    """
    return make_engine(url, poolclass=NullPool) if url.startswith("sqlite") else make_engine(url)


# -- the child process -------------------------------------------------------------------------


def _commit(engine: Engine, path: str, batch_size: int, with_costs: bool) -> dict[str, Any]:
    # recorder imports this module (for WriterProcess), so its helpers are imported at call time.
    from collector.proxy.recorder import event_costs, rejected_path, store_batches

    segment = Path(path)
    events = read_segment(segment)
    batches = iter(lambda: list(islice(events, batch_size)), [])
    costs: dict[Any, Decimal] = {}
    on_batch = (lambda batch: event_costs(batch, costs)) if with_costs else None
    new, rejected = store_batches(engine, batches, rejected_path(segment), on_batch)
    # Decimals as text: JSON numbers would go through binary floating point.
    return {"new": new, "rejected": rejected, "costs": [[*scope, str(cost)] for scope, cost in costs.items()]}


def _rollup(engine: Engine, retention_days: int) -> dict[str, int]:
    from collector.proxy.rollup import rollup_and_purge

    rollup_and_purge(engine, retention_days)
    return {}


def _answer(engine: Engine, batch_size: int, request: dict[str, Any]) -> dict[str, Any]:
    """One request's answer; any failure becomes ``{"error": <type name>}`` (see CommitFailed)."""
    try:
        if "commit" in request:
            return _commit(engine, str(request["commit"]), batch_size, bool(request.get("costs")))
        if "rollup" in request:
            return _rollup(engine, int(request["rollup"]))
        return {"error": "UnknownRequest"}
    except Exception as exc:  # noqa: BLE001  (the serving process decides what a failure means)
        return {"error": type(exc).__name__}


def lower_priority() -> None:
    """Put this process below every ordinary one.

    ``SCHED_IDLE`` where Linux has it: a request-path process that wakes up preempts it at once,
    where a merely niced process could keep the core until its time slice ended (on a quiet
    2-core machine, 1 client: p99 1.9 ms against 2.9 ms niced, 1.5 ms with no writer at all; see
    the README). It still gets a small share of a busy CPU, so the journal drains even under
    load, only later. Elsewhere, the lowest niceness.
    """
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return
    with contextlib.suppress(OSError):
        os.nice(CHILD_NICENESS)


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """The child's loop: a config line, then one answer line per request line, until stdin closes."""
    lower_priority()
    config = json.loads(requests.readline() or b"{}")
    engine = writer_engine(config["url"])
    batch_size = int(config["batch_size"])
    for line in requests:
        answers.write(json.dumps(_answer(engine, batch_size, json.loads(line))).encode() + b"\n")
        answers.flush()
    engine.dispose()


# -- the serving process -----------------------------------------------------------------------


class WriterProcess:
    """One child process that commits sealed segments; started on first use, restarted after a crash.

    Only the recorder's writer thread calls :meth:`commit` and the offloaded jobs, one at a time;
    a lock still guards the pipe against :meth:`close` from another thread.

    Args:
        url: the database URL (sent on the child's stdin, never on a command line).
        batch_size: events per insert.
    """

    def __init__(self, url: str, batch_size: int) -> None:
        self.url = url
        self.batch_size = batch_size
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def commit(self, path: Path, *, costs: bool = False) -> Committed:
        """Commit ``path``'s events in the child and wait for its answer (the GIL is free meanwhile).

        ``costs``: also sum the events' estimated cost per scope (for the budget caps).

        Raises:
            CommitFailed: the database refused the segment as a whole (unreachable, locked), or
                the child died; the segment stays on disk for the next try.
        """
        answer = self._call({"commit": str(path), "costs": costs})
        sums = {tuple(row[:-1]): Decimal(row[-1]) for row in answer.get("costs", ())}
        return Committed(int(answer["new"]), int(answer["rejected"]), sums)

    def offloaded_rollup(self, retention_days: int) -> Callable[[Engine], None]:
        """The rollup and purge as a periodic job of the recorder that runs in the child.

        The job ignores the engine it is given: the child uses its own.
        """

        def rollup_and_purge(_engine: Engine) -> None:
            self._call({"rollup": retention_days})

        return rollup_and_purge

    def pid(self) -> int | None:
        """The child's process id while it runs (for tests and diagnostics)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def close(self) -> None:
        """Let the child finish its current request, then stop it (killed after CLOSE_SECONDS)."""
        with self._lock:
            self._stop(CLOSE_SECONDS)

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            proc = self._proc if self._proc is not None and self._proc.poll() is None else self._start()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(json.dumps(request).encode() + b"\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
            except OSError:
                line = b""
            if not line:
                self._stop(0)
                raise CommitFailed("writer process died")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise CommitFailed(str(answer["error"]))
        return answer

    def _start(self) -> subprocess.Popen[bytes]:
        self._stop(0)  # reap a dead predecessor
        root = str(Path(__file__).resolve().parents[2])  # so a source checkout's child imports the same code
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{path}" if path else root}
        proc = subprocess.Popen(
            [sys.executable, "-m", "collector.proxy.committer"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        assert proc.stdin is not None
        proc.stdin.write(json.dumps({"url": self.url, "batch_size": self.batch_size}).encode() + b"\n")
        proc.stdin.flush()
        self._proc = proc
        return proc

    def _stop(self, grace: float) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()  # the child's loop ends at end of input
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


__all__ = ["CommitFailed", "Committed", "WriterProcess", "serve", "writer_engine"]


if __name__ == "__main__":
    logging.basicConfig(format="proxy writer: %(levelname)s %(name)s: %(message)s")
    serve(sys.stdin.buffer, sys.stdout.buffer)
