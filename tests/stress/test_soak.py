"""Soak: many items through one BackgroundGenerator; many created and dropped."""

import gc
import threading
import tracemalloc
import zlib

import pytest

from conftest import live_workers
from prefetch_generator import BackgroundGenerator

JOIN_S = 10  # a bound that turns a worker that never stops into a failure, not a hang
PEAK_WORKERS = 100


@pytest.mark.parametrize("max_prefetch", [1, 64])
def test_a_long_stream_arrives_complete_and_in_order(max_prefetch, long_run):
    items = 1_000_000 if long_run else 200_000
    source_checksum = 0
    for item in range(items):
        source_checksum = zlib.crc32(item.to_bytes(4, "little"), source_checksum)
    checksum, count = 0, 0
    for item in BackgroundGenerator(range(items), max_prefetch):
        checksum = zlib.crc32(item.to_bytes(4, "little"), checksum)
        count += 1
    assert (count, checksum) == (items, source_checksum)


class BodyCounts:
    """How many source bodies started, and how many of those ran their ``finally``.

    A BackgroundGenerator dropped before its worker first advanced the source
    never enters the body, so that source has no ``finally`` to run: which
    sources start depends on timing, but every one that starts must finish.
    Counters rather than lists, so the bookkeeping itself shows no growth; a
    lock, because the workers update them at once.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.started = 0
        self.finished = 0

    def endless(self):
        with self.lock:
            self.started += 1
        try:
            while True:
                yield bytearray(64)
        finally:
            with self.lock:
                self.finished += 1


def join_workers():
    for thread in live_workers():  # dropping requests the stop without waiting for it
        thread.join(JOIN_S)
    assert live_workers() == []


def create_consume_drop(count, counts):
    """Returns how many sources a consumer took an item from: those surely started."""
    consumed_from = 0
    for index in range(count):
        bg = BackgroundGenerator(counts.endless(), max_prefetch=index % 4)
        for _ in range(index % 5):
            next(bg)
        consumed_from += index % 5 > 0
        del bg
        if index % PEAK_WORKERS == PEAK_WORKERS - 1:
            # The dicts that hold live threads keep the size of their peak, and on a busy
            # machine more dropped workers are still on their way out at once: bounding
            # the peak keeps what they hold the same however busy the machine is.
            join_workers()
    return consumed_from


def test_ten_thousand_dropped_generators_leave_no_threads_and_no_memory():
    counts = BodyCounts()
    create_consume_drop(200, counts)  # warm caches and free lists before the baseline
    join_workers()
    gc.collect()
    threads_before = set(threading.enumerate())
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        consumed_from = create_consume_drop(10_000, counts)
        join_workers()
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert [thread for thread in threading.enumerate() if thread not in threads_before] == []
    assert counts.finished == counts.started
    assert counts.started >= consumed_from == 8_000
    assert growth < 64 * 1024, f"memory grew by {growth} bytes"
