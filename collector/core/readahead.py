"""Run a producer one step ahead in a thread of its own (a columnar import's read and write overlap)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

_DONE = object()


def read_ahead(items: Iterator[Any], name: str = "read-ahead") -> Iterator[Any]:
    """``items``, produced one step ahead in a thread of their own.

    A columnar import reads, maps, names and totals the next batch while the store writes this
    one: Arrow's reader and compute functions, the key hashing and SQLite's statements each run
    without the GIL, so the two overlap on a second core. At most one batch waits in between.
    Whatever ``items`` raises is raised here, at the point of the next item, so an import fails
    (and rolls back) as it did; if the consumer stops early, the producer stops after its
    current batch and closes ``items``.
    """
    slot: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        outcome: tuple[bool, Any] = (True, _DONE)
        try:
            for item in items:
                if not _hand_over(slot, stop, (True, item)):
                    return
        except BaseException as exc:  # noqa: BLE001  (handed to the consumer, which raises it)
            outcome = (False, exc)
        finally:
            if stop.is_set() and hasattr(items, "close"):
                items.close()  # in this thread, which runs the generator
        _hand_over(slot, stop, outcome)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            ok, item = slot.get()
            if not ok:
                raise item
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join()


def _hand_over(slot: queue.Queue[tuple[bool, Any]], stop: threading.Event, value: tuple[bool, Any]) -> bool:
    """Put ``value`` in the one-item slot once it is free; False if the consumer stopped first."""
    while not stop.is_set():
        try:
            slot.put(value, timeout=0.1)  # wakes at once when the slot frees; the timeout only checks ``stop``
            return True
        except queue.Full:
            continue
    return False


__all__ = ["read_ahead"]
