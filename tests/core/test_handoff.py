"""The hand-off: every item goes to exactly one consumer, in order, and no wake-up is lost.

Each item reaches one consumer, each consumer receives its items in the source's
order, and every consumer sees the end. The worker never holds more than
``max_prefetch + 1`` items taken from the source and not yet consumed. A wake-up
meant for a waiter that can no longer take it (its event loop closed, its thread
gone to an interrupt) goes on to another waiter, and a consumer owed no wake-up
counts none as missed.
"""

import asyncio
import queue
import sys
import threading
import time

import pytest
from support import Endless, until

from prefetch_generator import BackgroundGenerator, _channel

STALL_S = 5.0


def test_several_consumer_threads_each_item_goes_to_exactly_one_and_all_see_the_end():
    bg = BackgroundGenerator(range(20_000), max_prefetch=4)
    received = [[] for _ in range(4)]

    def consume(into):
        into.extend(bg)

    threads = [threading.Thread(target=consume, args=(r,)) for r in received]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert sorted(x for r in received for x in r) == list(range(20_000))
    assert all(r == sorted(r) for r in received)


@pytest.mark.parametrize("max_prefetch", [1, 2, 8])
def test_items_taken_but_not_consumed_never_exceed_max_prefetch_plus_one(max_prefetch):
    source = Endless()
    bg = BackgroundGenerator(iter(source), max_prefetch)
    for consumed in range(1, 2000):
        next(bg)
        assert source.taken - consumed <= max_prefetch + 1
    bg.close()


@pytest.mark.parametrize("max_prefetch", [1, 2, 8])
def test_the_bound_holds_before_the_first_next_and_after_each(max_prefetch):
    taken = []

    def source():
        while True:
            taken.append(None)
            yield len(taken)

    bg = BackgroundGenerator(source(), max_prefetch)
    for consumed in range(50):
        deadline = time.monotonic() + 10
        while not bg._channel.parked and time.monotonic() < deadline:
            time.sleep(0.0005)  # waits for a state, bounded; not a fixed delay
        assert len(taken) - consumed <= max_prefetch + 1
        next(bg)
    bg.close()


def next_in_a_thread_once_it_waits(bg, waiters):
    """Start ``next(bg)`` in a thread; return once ``waiters`` waiters are registered."""
    got = []
    consumer = threading.Thread(target=lambda: got.append(next(bg)), daemon=True)
    consumer.start()
    deadline = time.monotonic() + 10
    while len(bg._channel.waiters) < waiters and time.monotonic() < deadline:
        time.sleep(0.001)  # waits for a state, bounded
    return got, consumer


def test_a_waiter_whose_event_loop_is_closed_hands_its_wake_up_on():
    release = threading.Event()

    def source():
        assert release.wait(10)
        yield "item"

    bg = BackgroundGenerator(source())
    loop = asyncio.new_event_loop()
    # What an awaiting __anext__ leaves registered when its loop is abandoned.
    bg._channel.register(_channel.LoopWaiter(loop))
    loop.close()
    got, consumer = next_in_a_thread_once_it_waits(bg, waiters=2)
    release.set()
    consumer.join(10)
    assert got == ["item"]
    bg.close()


@pytest.mark.cuts_wake_ups
def test_a_waiter_an_interrupt_left_registered_does_not_swallow_the_next_wake_up():
    requests = queue.SimpleQueue()

    def on_request():
        while True:
            yield requests.get()

    bg = BackgroundGenerator(on_request(), max_prefetch=8)
    # What an interrupt can leave behind before 3.11, landing between the
    # start of the except block and the waiter's removal: nobody sleeps on it.
    abandoned = _channel.ThreadWaiter()
    bg._channel.waiters.append(abandoned)
    got, consumer = next_in_a_thread_once_it_waits(bg, waiters=2)
    requests.put("request")
    consumer.join(10)
    assert got == ["request"]
    bg.close(timeout=0)
    requests.put("unblock the source so the worker can end")


@pytest.mark.timeout(30)
def test_a_consumer_that_was_not_owed_a_wake_up_counts_no_missed_wake_up():
    # Two consumers sleep; one item comes and wakes the first. That consumer
    # is slow to run again (a busy machine: a woken thread waits for a CPU),
    # held here for up to 2 s after its wake-up. No wake-up is lost, yet the
    # other consumer, listed and owed nothing, re-checks, finds the item
    # twice running and counts a missed wake-up.
    go, more = threading.Event(), threading.Event()

    def gated():
        assert go.wait(STALL_S)
        yield 0
        assert more.wait(STALL_S)
        yield from (1, 2)

    bg = BackgroundGenerator(gated())
    channel = bg._channel
    sleep_on = type(channel)._sleep_on.__code__
    held = []
    received = []

    def hold_the_first_woken(frame, event, arg):
        if event == "return" and not held:
            held.append(threading.get_ident())
            until(lambda: channel.missed_wakeups > 0, 2.0)
        return hold_the_first_woken

    def tracer(frame, event, arg):
        return hold_the_first_woken if frame.f_code is sleep_on else None

    def consume():
        sys.settrace(tracer)
        received.extend(bg)

    consumers = [threading.Thread(target=consume, daemon=True) for _ in range(2)]
    for thread in consumers:
        thread.start()
    assert until(lambda: len(channel.waiters) == 2, STALL_S)
    go.set()
    assert until(lambda: len(received) == 1, STALL_S)
    more.set()
    for thread in consumers:
        thread.join(STALL_S)
    assert not any(thread.is_alive() for thread in consumers)
    assert sorted(received) == [0, 1, 2]
    assert channel.missed_wakeups == 0, "a re-check counted a wake-up that went to another consumer"
    bg.close()
