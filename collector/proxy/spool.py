"""The proxy's write-ahead journal: every event on local disk before its response completes.

A replica that is killed (SIGKILL, the OOM killer, ``kubectl delete --force``) must not lose the
calls it already answered (market-anchors §12.12). So the request path does not keep events in
memory: it appends each one as a JSON line to the *active segment* of this folder with a single
``write()`` on an ``O_APPEND`` descriptor, before the last byte of the response goes out. The
line is then in the kernel's page cache, which outlives the process; nothing is fsynced per event.

The recorder's writer thread *seals* the active segment (the next events go to a fresh one),
inserts the sealed segments' events into the database and deletes each segment only after its
rows are committed. A replica that starts finds the segments a killed predecessor left and
replays them first. Replays repeat inserts that may already have committed; event ids (minted
before forwarding) and ``ON CONFLICT (id) DO NOTHING`` make that harmless (market-anchors §12.13).

What survives what:

* **process death** (any signal, a crash): every event whose ``write()`` returned, that is, every
  call whose response completed;
* **power cut or kernel crash**: only what the kernel had written back; with ``fsync_seconds`` set
  the writer fsyncs the active segment (and the folder) that often, so at most that window of
  events not yet in the database is lost. The database's own commit durability applies on top.

One folder belongs to one process at a time (an OS lock on ``.lock``): two replicas appending to
and deleting each other's segments would lose events, so the second one refuses to start.

Worker processes sharing one port (``llm-usage proxy --workers N``) each *claim a slot*: the
first sub-folder ``w0``, ``w1``, ... whose lock is free. The lock dies with its process, so the
worker that replaces a killed one takes the dead one's slot and replays what it left; numbering
from ``w0`` keeps the folders to as many as there are live workers. Segments in folders no worker
will claim (fewer workers than before, a switch between one and several) are moved by
:func:`adopt_strays` at start, before any worker runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import IO, Any

import uuid_utils

from collector.core.private import private_dir, private_opener

log = logging.getLogger(__name__)

Event = dict[str, Any]
_SUFFIX = ".jsonl"
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)


class SpoolBusyError(RuntimeError):
    """Another process holds the spool folder."""


def encode(event: Event) -> bytes:
    """One event as one JSON line (primitives only, as the request path builds it)."""
    return (json.dumps(event, separators=(",", ":")) + "\n").encode()


def read_segment(path: Path) -> Iterator[Event]:
    """The events of a segment file, streamed; lines a cut-short write left are skipped with a warning.

    A plain function, so the writer's child process (:mod:`collector.proxy.committer`) reads
    segments exactly as the writer thread does.
    """
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                # Only a write cut short (a kill mid-write, a full disk) leaves a bad line, and its
                # call never completed: the response's last byte is sent after the write.
                log.warning("spool %s line %d is not valid JSON (write cut short); skipped", path.name, number)
                continue
            if isinstance(event, dict):
                yield event


def _segment_name() -> str:
    # UUIDv7: time-ordered and unique across processes without any coordination.
    return f"seg-{uuid_utils.uuid7()}{_SUFFIX}"


def _try_lock(folder: Path) -> IO[str] | None:
    """``folder``'s lock file, held (until closed or the process dies); None when another process holds it."""
    private_dir(folder)  # 0700: events name teams, projects and key fingerprints
    fh = open(folder / ".lock", "a", opener=private_opener)  # noqa: SIM115  (held while locked)
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


#: More slots than any worker count: past it something is wrong (a leak of processes).
MAX_SLOTS = 1024


def slot_folder(root: Path, k: int) -> Path:
    """The journal folder of worker slot ``k``."""
    return root / f"w{k}"


def _claim_slot(root: Path) -> tuple[IO[str], Path, int]:
    """Lock the first free ``root/w<k>``; returns its lock file, folder and ``k``."""
    for k in range(MAX_SLOTS):
        folder = slot_folder(root, k)
        fh = _try_lock(folder)
        if fh is not None:
            return fh, folder, k
    raise SpoolBusyError(f"all {MAX_SLOTS} worker slots of the proxy spool {root} are in use")


def adopt_strays(root: Path, workers: int) -> int:
    """Move segments no worker will claim into a folder one will; returns how many moved.

    With one worker (``workers`` = 1) the journal is ``root`` itself, so every ``root/w<k>`` is a
    stray; with N workers they claim ``w0`` ... ``w<N-1>``, so ``root``'s own segments and those of
    ``w<N>`` and up move to ``w0``. A folder whose lock another process holds (a proxy still
    running) is left alone. Renames within one file system: atomic, nothing is read or rewritten.
    """
    target, first_stray = (root, 0) if workers <= 1 else (slot_folder(root, 0), workers)
    strays = [p for p in root.glob("w*") if p.is_dir() and p.name[1:].isdigit() and int(p.name[1:]) >= first_stray]
    if workers > 1 and root.is_dir():
        strays.append(root)
    moved = 0
    for folder in strays:
        if not any(folder.glob(f"*{_SUFFIX}")):
            continue
        fh = _try_lock(folder)
        if fh is None:
            continue
        try:
            private_dir(target)
            for path in folder.glob(f"*{_SUFFIX}"):
                path.rename(target / path.name)  # segment names are unique (UUIDv7)
                moved += 1
        finally:
            fh.close()
    if moved:
        log.info("proxy spool: %d segment(s) of unclaimed folders moved to %s", moved, target)
    return moved


class Spool:
    """Append-only JSONL segment files in one folder (see the module docstring).

    Args:
        folder: where the segments live (created if missing).
        fsync_seconds: how often :meth:`tick` fsyncs the active segment; 0 never does.
    """

    def __init__(self, folder: Path, *, fsync_seconds: float = 0.0, slotted: bool = False) -> None:
        self.root = Path(folder)
        #: The folder this process appends to: ``root``, or once opened the claimed ``root/w<k>``.
        self.folder = self.root
        self.slotted = slotted
        #: The claimed slot ``k`` (slotted spools, once opened), else None.
        self.slot: int | None = None
        self.fsync_seconds = fsync_seconds
        self._lock = threading.Lock()
        self._lock_file: IO[str] | None = None
        self._fd = -1
        self._active: Path | None = None
        self._active_lines = 0
        self._active_bytes = 0
        #: Lines each segment sealed by this process holds (to count what got committed).
        self._own: dict[Path, int] = {}
        #: The events written to the active segment, as the request path built them, and those of
        #: the segment the last :meth:`rotate` sealed: its round inserts them without reading the
        #: file back and parsing it (the writer's biggest share of the interpreter lock, which the
        #: request path waits for). One segment's worth at most: older segments are read from disk.
        self._active_events: list[Event] = []
        self._sealed_events: tuple[Path, list[Event]] | None = None
        self._last_sync = 0.0

    # -- lifecycle (the owning process) -------------------------------------------------------

    def open(self) -> None:
        """Take the folder's lock and start a fresh active segment; earlier ones become sealed.

        Raises:
            SpoolBusyError: another process (e.g. a second replica on this host) uses the folder.
        """
        if self.slotted:
            self._lock_file, self.folder, self.slot = _claim_slot(self.root)
        else:
            fh = _try_lock(self.root)
            if fh is None:
                raise SpoolBusyError(
                    f"the proxy spool folder {self.root} is used by another process; give each replica "
                    "its own LLM_USAGE_PROXY_SPOOL_DIR (or LLM_USAGE_DATA_DIR)"
                )
            self._lock_file = fh
        for tmp in self.folder.glob("*.tmp"):  # an append() cut short: its segment never became visible
            tmp.unlink(missing_ok=True)
        with self._lock:
            self._start_segment()

    def close(self) -> None:
        """Close the active segment (deleted when empty) and release the folder."""
        with self._lock:
            fd, active, size = self._fd, self._active, self._active_bytes
            self._fd, self._active, self._active_lines, self._active_bytes = -1, None, 0, 0
        if fd >= 0:
            if self.fsync_seconds > 0:
                self._sync(fd)
            os.close(fd)
        if active is not None and size == 0:
            active.unlink(missing_ok=True)
        if self._lock_file is not None:
            self._lock_file.close()  # releases the flock
            self._lock_file = None

    @property
    def is_open(self) -> bool:
        """True while this process owns the folder and has an active segment."""
        return self._fd >= 0

    def _start_segment(self) -> None:
        """Open a new active segment (the caller holds ``_lock``)."""
        path = self.folder / _segment_name()
        self._fd = os.open(path, _FLAGS, 0o600)
        self._active, self._active_lines, self._active_bytes = path, 0, 0
        if self.fsync_seconds > 0:
            self._sync_folder()

    # -- the request path -----------------------------------------------------------------------

    def write(self, line: bytes, event: Event | None = None) -> None:
        """Append one encoded event with one ``write()``; raises OSError if it did not all land.

        ``event``: the dict ``line`` encodes, kept until the segment is committed (it must not
        change afterwards). A short write (disk full) leaves a fragment; a newline ends it so the
        next event starts on a line of its own (the reader skips the fragment).
        """
        with self._lock:
            if self._fd < 0:
                raise OSError("the spool is not open")
            written = os.write(self._fd, line)
            self._active_bytes += written
            if written != len(line):
                with contextlib.suppress(OSError):
                    self._active_bytes += os.write(self._fd, b"\n")
                raise OSError(f"short write to the spool ({written} of {len(line)} bytes)")
            self._active_lines += 1
            if event is not None:
                self._active_events.append(event)

    # -- the writer thread ----------------------------------------------------------------------

    def rotate(self) -> Path | None:
        """Seal the active segment if it holds anything and start a new one; returns the sealed path."""
        if self._fd < 0 or self._active_bytes == 0:
            return None
        new_path = self.folder / _segment_name()
        new_fd = os.open(new_path, _FLAGS, 0o600)  # opened before the lock: requests never wait on it
        with self._lock:
            old_fd, old_path, lines, events = self._fd, self._active, self._active_lines, self._active_events
            self._fd, self._active, self._active_lines, self._active_bytes = new_fd, new_path, 0, 0
            self._active_events = []
        assert old_path is not None
        self._own[old_path] = lines
        # Only when every line has its event (the request path passed them all) is memory the file.
        self._sealed_events = (old_path, events) if len(events) == lines else None
        if self.fsync_seconds > 0:
            self._sync(old_fd)
            self._sync_folder()
        os.close(old_fd)
        return old_path

    def tick(self, now: float) -> None:
        """Fsync the active segment when ``fsync_seconds`` have passed since the last time."""
        if self.fsync_seconds > 0 and now - self._last_sync >= self.fsync_seconds and self._fd >= 0:
            self._last_sync = now
            self._sync(self._fd)

    def sealed(self) -> list[Path]:
        """Segments not being appended to, oldest first (earlier runs' and the pre-journal spool's)."""
        files = [p for p in self.folder.glob(f"*{_SUFFIX}") if p != self._active]
        # Names of the spool before the journal (current/overflow/replay-*) sort before "seg-".
        return sorted(files, key=lambda p: (p.name.startswith("seg-"), p.name))

    def batches(self, path: Path, size: int) -> Iterator[list[Event]]:
        """The events of a segment in lists of ``size``, streamed (a segment may be large).

        The segment the last :meth:`rotate` sealed comes from memory (once: a retry reads the file).
        """
        sealed, self._sealed_events = self._sealed_events, None
        if sealed is not None and sealed[0] == path:
            events = sealed[1]
            for start in range(0, len(events), size):
                yield events[start : start + size]
            return
        if sealed is not None:
            self._sealed_events = sealed  # asked for another segment first: keep it for its turn
        it = read_segment(path)
        while batch := list(islice(it, size)):
            yield batch

    def done(self, path: Path) -> int:
        """Delete a segment whose events are committed; returns how many of them this process wrote."""
        path.unlink(missing_ok=True)
        return self._own.pop(path, 0)

    # -- anyone ---------------------------------------------------------------------------------

    def append(self, events: Iterable[Event]) -> int:
        """Write events as a new sealed segment (atomically: a temp file renamed); returns how many.

        Used for events that could not go through :meth:`write` and by tools and tests; it needs
        no lock, so a process that does not own the folder may call it.
        """
        data = b"".join(encode(e) for e in events)
        if not data:
            return 0
        private_dir(self.folder)
        path = self.folder / _segment_name()
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb", opener=private_opener) as fh:
            fh.write(data)
            fh.flush()
            if self.fsync_seconds > 0:
                os.fsync(fh.fileno())
        tmp.rename(path)
        count = data.count(b"\n")
        self._own[path] = count
        return count

    def size_bytes(self) -> int:
        """Bytes of events not yet committed to the database (for ``/metrics`` and ``/healthz``)."""
        total = 0
        for path in self.folder.glob(f"*{_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):  # committed and deleted meanwhile
                total += path.stat().st_size
        return total

    def pending(self) -> bool:
        """True when any event waits in the spool."""
        return self.size_bytes() > 0

    # -- fsync ----------------------------------------------------------------------------------

    @staticmethod
    def _sync(fd: int) -> None:
        with contextlib.suppress(OSError):
            os.fsync(fd)

    def _sync_folder(self) -> None:
        """Make new and deleted segment names durable too (a power cut forgets unsynced names)."""
        with contextlib.suppress(OSError):
            fd = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
