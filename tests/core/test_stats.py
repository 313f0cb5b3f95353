"""stats(): counters and which side is the bottleneck."""

import asyncio
import itertools
import os
import sys
import threading
import time

import pytest
from support import a_signal_can_land_at

from prefetch_generator import BackgroundGenerator, Stats, _channel

PACKAGE = os.path.dirname(_channel.__file__)


def test_stats_count_produced_consumed_and_buffered():
    bg = BackgroundGenerator(range(10), max_prefetch=-1)
    bg._worker.thread.join(10)
    for _ in range(3):
        next(bg)
    stats = bg.stats()
    assert isinstance(stats, Stats)
    assert (stats.produced, stats.consumed, stats.buffered) == (10, 3, 7)


def test_stats_is_an_immutable_snapshot():
    bg = BackgroundGenerator(range(3))
    stats = bg.stats()
    list(bg)
    with pytest.raises(AttributeError):
        stats.consumed = 5
    assert bg.stats().consumed == 3


def test_items_discarded_by_close_are_not_counted_as_consumed():
    bg = BackgroundGenerator(range(10), max_prefetch=-1)
    bg._worker.thread.join(10)
    next(bg)
    bg.close()
    for _ in range(2):
        with pytest.raises(StopIteration):
            next(bg)  # after close(): nothing more is handed out, nor counted
    stats = bg.stats()
    assert (stats.produced, stats.consumed, stats.buffered) == (10, 1, 0)


def slow_source(n, seconds):
    for i in range(n):
        time.sleep(seconds)  # simulated loading work, not synchronisation
        yield i


def test_a_slow_source_makes_the_producer_the_bottleneck():
    bg = BackgroundGenerator(slow_source(20, 0.005), max_prefetch=2)
    list(bg)
    stats = bg.stats()
    assert stats.consumer_wait_s > stats.producer_wait_s
    assert stats.bottleneck == "producer"


def test_a_slow_consumer_makes_the_consumer_the_bottleneck():
    bg = BackgroundGenerator(range(20), max_prefetch=2)
    for _ in bg:
        time.sleep(0.005)  # simulated training step
    stats = bg.stats()
    assert stats.producer_wait_s > stats.consumer_wait_s
    assert stats.bottleneck == "consumer"


def test_waits_of_several_consumers_add_up():
    bg = BackgroundGenerator(slow_source(8, 0.005))
    threads = [threading.Thread(target=lambda: list(bg)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert bg.stats().consumed == 8
    assert bg.stats().consumer_wait_s > 0


def test_counts_are_exact_with_consumers_racing_on_an_empty_buffer():
    bg = BackgroundGenerator(range(20_000), max_prefetch=1)
    counts = []

    def consume():
        counts.append(sum(1 for _ in bg))

    threads = [threading.Thread(target=consume) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    stats = bg.stats()
    assert sum(counts) == 20_000
    assert (stats.produced, stats.consumed, stats.buffered) == (20_000, 20_000, 0)


def test_counts_are_exact_for_an_async_consumer_that_waits():
    async def consume(bg):
        return [item async for item in bg]

    bg = BackgroundGenerator(slow_source(20, 0.001), max_prefetch=1)
    assert asyncio.run(asyncio.wait_for(consume(bg), 30)) == list(range(20))
    stats = bg.stats()
    assert stats.consumer_wait_s > 0  # it found the buffer empty and waited
    assert (stats.produced, stats.consumed, stats.buffered) == (20, 20, 0)


def test_items_discarded_while_the_worker_still_appends_are_counted_once():
    # close() empties the buffer while the worker appends to it and then
    # empties it too: each item must be counted by exactly one of them.
    for _ in range(300):
        bg = BackgroundGenerator(itertools.count(), max_prefetch=100_000)
        for _ in range(10):
            next(bg)
        bg.close()
        stats = bg.stats()
        assert (stats.consumed, stats.buffered) == (10, 0), stats


def close_interrupted_at(bg, event, **close_args):
    """Call ``bg.close()``, raising KeyboardInterrupt at its ``event``-th trace
    event (a signal handler raising between two lines); False if it ended first."""
    seen = itertools.count()

    def interrupt_at_event(frame, kind, arg):
        # Only the library's own frames: not a gc callback that runs meanwhile.
        if (
            frame.f_code.co_filename.startswith(PACKAGE)
            and a_signal_can_land_at(frame)
            and next(seen) == event
        ):
            raise KeyboardInterrupt
        return interrupt_at_event

    sys.settrace(interrupt_at_event)
    try:
        bg.close(**close_args)
    except KeyboardInterrupt:
        return True
    finally:
        sys.settrace(None)
    return False


def test_an_interrupt_anywhere_in_close_leaves_the_counts_exact():
    # Interrupt close() at each trace event in turn, then close again: what
    # was buffered counts as buffered or discarded, never as consumed.
    for event in itertools.count():
        bg = BackgroundGenerator(range(100), max_prefetch=-1)
        bg._worker.thread.join(10)
        assert next(bg) == 0
        if not close_interrupted_at(bg, event):
            break
        assert bg.stats().consumed == 1, event  # the rest is buffered or discarded, even now
        bg.close()
        stats = bg.stats()
        assert (stats.produced, stats.consumed, stats.buffered) == (100, 1, 0), (event, stats)
    assert event > 10  # the events of close() itself were reached


def held_after(items, gate):
    """Yield ``items``, then wait for ``gate`` and yield one more."""
    yield from items
    gate.wait(10)
    yield "late"


def consume_then_set(bg, ended):
    list(bg)
    ended.set()


@pytest.mark.cuts_wake_ups
def test_an_interrupt_anywhere_in_close_still_wakes_a_waiting_consumer():
    gate = threading.Event()
    for event in itertools.count():
        bg = BackgroundGenerator(held_after([], gate), max_prefetch=1)
        ended = threading.Event()
        consumer = threading.Thread(target=consume_then_set, args=(bg, ended), daemon=True)
        consumer.start()
        deadline = time.monotonic() + 10
        while not bg._channel.waiters and time.monotonic() < deadline:
            time.sleep(0.001)  # waits for a state, bounded
        interrupted = close_interrupted_at(bg, event, timeout=0)
        bg.close(timeout=0)
        assert ended.wait(10), event  # not left asleep with its wake-up lost
        if not interrupted:
            break
    gate.set()
    assert event > 10


def test_a_second_close_keeps_what_the_worker_appends_late_counted_as_buffered(monkeypatch):
    gate, appended, release = threading.Event(), threading.Event(), threading.Event()
    bg = BackgroundGenerator(held_after([0, 1], gate), max_prefetch=-1)
    assert [next(bg), next(bg)] == [0, 1]
    bg.close(timeout=0)
    bg.close(timeout=0)
    wait_for_space = _channel.Channel._wait_for_space

    def held_wait_for_space(self, items):
        appended.set()  # the late item is appended; its drain has not run yet
        release.wait(10)
        return wait_for_space(self, items)

    monkeypatch.setattr(_channel.Channel, "_wait_for_space", held_wait_for_space)
    gate.set()
    assert appended.wait(10)
    stats = bg.stats()
    release.set()
    assert (stats.produced, stats.consumed, stats.buffered) == (3, 2, 1)
    bg._worker.thread.join(10)
    stats = bg.stats()
    assert (stats.produced, stats.consumed, stats.buffered) == (3, 2, 0)


def test_repeated_close_calls_keep_no_record_of_their_own():
    bg = BackgroundGenerator(range(10), max_prefetch=-1)
    bg._worker.thread.join(10)
    for _ in range(1000):
        bg.close()
    assert len(bg._channel._discards) == 1  # the one drain that discarded something
    assert bg.stats().consumed == 0


def test_a_source_longer_than_a_tally_is_counted_and_delivered_whole(monkeypatch):
    # A tally stops after TALLY_LIMIT steps (2**31 - 1 on 32-bit builds):
    # the producer then starts another, without losing or ending anything.
    monkeypatch.setattr(_channel, "TALLY_LIMIT", 5)
    for items in (4, 5, 6, 10, 23):
        bg = BackgroundGenerator(range(items), max_prefetch=3)
        assert list(bg) == list(range(items))
        stats = bg.stats()
        assert (stats.produced, stats.consumed, stats.buffered) == (items, items, 0)
    endless = BackgroundGenerator(itertools.count(), max_prefetch=2)
    assert list(itertools.islice(endless, 50)) == list(range(50))
    endless.close()
    assert endless.stats().consumed == 50


class ReleasesTheGilWhenFreed:
    def __del__(self):
        time.sleep(0)  # lets another thread run in the middle of close()


def consumed_snapshots_while(bg, action):
    """``bg.stats().consumed``, taken over and over in another thread while ``action``
    runs; the first is taken before it starts."""
    snapshots = []
    started, done = threading.Event(), threading.Event()

    def poll():
        snapshots.append(bg.stats().consumed)
        started.set()
        while not done.is_set():
            snapshots.append(bg.stats().consumed)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        # Without the GIL the poller may take its first snapshot only once the
        # action runs, and each one then may fall while an item moves.
        assert started.wait(10), "the poller never took a snapshot"
        action()
    finally:
        done.set()
        poller.join(10)
    return snapshots


def test_a_snapshot_taken_while_close_discards_never_overstates_consumed():
    for _ in range(5):
        bg = BackgroundGenerator((ReleasesTheGilWhenFreed() for _ in range(200)), max_prefetch=-1)
        bg._worker.thread.join(10)
        for _ in range(5):
            next(bg)
        snapshots = consumed_snapshots_while(bg, bg.close)
        # Without the GIL an item can be seen popped and not yet counted.
        assert snapshots and 5 <= max(snapshots) <= 5 + (not _channel.GIL_ENABLED)


def test_balanced_when_neither_side_waits():
    stats = Stats(
        produced=1, consumed=1, buffered=0, consumer_wait_s=0.0, producer_wait_s=0.0, elapsed_s=1.0
    )
    assert stats.bottleneck == "balanced"
    assert "bottleneck is balanced" in str(stats)


def test_stats_count_nothing_consumed_after_a_close_during_a_step():
    entered, release = threading.Event(), threading.Event()

    def source():
        entered.set()
        assert release.wait(10)
        yield 1

    bg = BackgroundGenerator(source())
    assert entered.wait(10)
    bg.close(timeout=0)
    release.set()
    bg._worker.thread.join(10)
    stats = bg.stats()
    assert (stats.produced, stats.consumed) == (1, 0)


def test_an_async_consumer_waiting_on_a_slow_source_makes_it_the_bottleneck():
    async def main():
        bg = BackgroundGenerator(slow_source(20, 0.002))
        async for _ in bg:
            pass
        return bg.stats()

    stats = asyncio.run(asyncio.wait_for(main(), 30))
    assert stats.consumer_wait_s > 0 and stats.bottleneck == "producer"
