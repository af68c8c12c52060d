"""``read_ahead``: a producer one step ahead in its own thread, its errors raised where the consumer is."""

from __future__ import annotations

import pytest


def _reader_threads():
    import threading

    return [t for t in threading.enumerate() if t.name == "read-ahead"]


def test_read_ahead_yields_every_item_in_order_and_raises_what_the_producer_raised():
    from collector.core.readahead import read_ahead

    assert list(read_ahead(iter(range(50)))) == list(range(50))

    def failing():
        yield from range(3)
        raise ValueError("focus.csv:7502: column 'BilledCost': value '1.2.5': not a number")

    got = []
    with pytest.raises(ValueError, match=r"focus\.csv:7502"):
        for item in read_ahead(failing()):
            got.append(item)
    assert got == [0, 1, 2]
    assert not _reader_threads()


def test_read_ahead_stops_and_closes_the_producer_when_the_consumer_stops():
    """A write that fails mid-file stops the reader thread, which closes the file's generator."""
    import threading

    from collector.core.readahead import read_ahead

    closed = threading.Event()

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    reader = read_ahead(endless())
    assert [next(reader) for _ in range(5)] == [0, 1, 2, 3, 4]
    reader.close()  # what a failed write does to the generator it was consuming
    assert closed.is_set()
    assert not _reader_threads()
