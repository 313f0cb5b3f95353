"""Soak: many items through one BackgroundGenerator; many created and dropped."""

import gc
import threading
import tracemalloc
import zlib

import pytest

from conftest import live_workers
from prefetch_generator import BackgroundGenerator


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


def endless(closed):
    try:
        while True:
            yield bytearray(64)
    finally:
        closed[0] += 1  # a counter: a growing list would itself show as growth


def create_consume_drop(count, closed):
    for index in range(count):
        bg = BackgroundGenerator(endless(closed), max_prefetch=index % 4)
        for _ in range(index % 5):
            next(bg)
        del bg


def test_ten_thousand_dropped_generators_leave_no_threads_and_no_memory():
    closed = [0]
    create_consume_drop(200, closed)  # warm caches and free lists before the baseline
    gc.collect()
    threads_before = threading.active_count()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        create_consume_drop(10_000, closed)
        for thread in live_workers():  # dropping requests the stop without waiting
            thread.join(10)
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert live_workers() == []
    assert threading.active_count() == threads_before
    assert closed[0] == 10_200
    assert growth < 64 * 1024, f"memory grew by {growth} bytes"
