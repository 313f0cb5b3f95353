"""Interrupts against the hand-off, as a user with a signal-based time limit meets them.

Each test forces one situation open with real threads and a real exception
raised where CPython raises a signal handler's exception, and checks what the
consumers received: every item once, in order for each consumer.
"""

import asyncio
import os
import signal
import sys
import threading
import time

import pytest

import prefetch_generator
from prefetch_generator import BackgroundGenerator

STALL_S = 5.0
PACKAGE_DIR = os.path.dirname(os.path.abspath(prefetch_generator.__file__)) + os.sep


def until(condition, bound_s=STALL_S):
    """Whether ``condition()`` came true within ``bound_s`` (polled)."""
    deadline = time.monotonic() + bound_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(1e-4)
    return True


class Counting:
    """A source with state: ``state_dict()`` counts the items yielded."""

    def __init__(self, items):
        self.items = items
        self.yielded = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.yielded == self.items:
            raise StopIteration
        self.yielded += 1
        return self.yielded - 1

    def state_dict(self):
        return {"yielded": self.yielded}


@pytest.mark.timeout(30)
def test_an_item_an_interrupted_consumer_put_back_is_the_next_one_handed_out():
    # The main thread takes item 0 and is interrupted at the entry of the
    # first Python call after the take (where CPython 3.11+ handles a pending
    # signal). While it is there, another consumer receives item 1; the main
    # thread then puts 0 back at the front, and the other consumer's next
    # next() returns 0. Across consumers that is the one order a put-back
    # allows (docs/interrupts.md): nothing lost, nothing twice, and the item
    # put back goes out before every later one still buffered.
    bg = BackgroundGenerator(iter(range(4)), max_prefetch=1)
    channel = bg._channel
    assert until(lambda: len(channel.items) == 2 and channel.parked)
    wake_producer = type(channel).wake_producer.__code__
    other_may_take = threading.Event()
    other_took = threading.Event()
    others = []

    put_back = threading.Event()

    def other_consumer():
        assert other_may_take.wait(STALL_S)
        others.append(next(bg))
        other_took.set()
        assert put_back.wait(STALL_S)
        others.extend(bg)

    def interrupt_at_wake_producer(frame, event, arg):
        if event == "call" and frame.f_code is wake_producer:
            sys.settrace(None)
            other_may_take.set()
            assert other_took.wait(STALL_S)
            raise KeyboardInterrupt
        return None

    thread = threading.Thread(target=other_consumer, daemon=True)
    thread.start()
    sys.settrace(interrupt_at_wake_producer)
    try:
        with pytest.raises(KeyboardInterrupt):
            next(bg)
    finally:
        sys.settrace(None)
        put_back.set()
    thread.join(STALL_S)
    assert not thread.is_alive()
    bg.close()
    assert others == [1, 0, 2, 3], f"the other consumer received {others}"


class Storm(KeyboardInterrupt):
    """What the storm's handler raises (a signal-based time limit, say)."""


@pytest.mark.timeout(60)
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="before 3.11 a storm's second interrupt may lose an item (docs/interrupts.md)",
)
def test_an_async_consumer_under_a_signal_storm_loses_no_item():
    # A 50 us timer whose handler raises in the package's frames of the
    # consumer task, and a coroutine that catches and goes on. (Not in
    # ``_resolve``: that runs as an event loop callback, outside the task.)
    # (The item is taken in __anext__'s own frame: a value returned by a
    # call could be lost as the call returns.)
    items = 3000
    bg = BackgroundGenerator(Counting(items))
    received = []
    wrong_states = []

    def storm(signum, frame):
        code = frame.f_code if frame is not None else None
        if code and code.co_filename.startswith(PACKAGE_DIR) and code.co_name != "_resolve":
            raise Storm

    async def consume():
        async for item in bg:
            received.append(item)

    async def main():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                await consume()
                return
            except Storm:
                while True:
                    try:
                        state = bg.state_dict()
                        break
                    except Storm:
                        pass
                if state != {"yielded": len(received)}:
                    wrong_states.append((len(received), state))

    previous = signal.signal(signal.SIGALRM, storm)
    signal.setitimer(signal.ITIMER_REAL, 50e-6, 50e-6)
    try:
        asyncio.run(main())
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        bg.close()
    missing = sorted(set(range(items)) - set(received))
    assert not missing, f"lost {len(missing)} item(s), e.g. {missing[:5]}"
    assert received == list(range(items))
    assert not wrong_states, f"checkpoints past an item not received: {wrong_states[:5]}"


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
            until(lambda: channel.missed_wakeups > 0, bound_s=2.0)
        return hold_the_first_woken

    def tracer(frame, event, arg):
        return hold_the_first_woken if frame.f_code is sleep_on else None

    def consume():
        sys.settrace(tracer)
        received.extend(bg)

    consumers = [threading.Thread(target=consume, daemon=True) for _ in range(2)]
    for thread in consumers:
        thread.start()
    assert until(lambda: len(channel.waiters) == 2)
    go.set()
    assert until(lambda: len(received) == 1)
    more.set()
    for thread in consumers:
        thread.join(STALL_S)
    assert not any(thread.is_alive() for thread in consumers)
    assert sorted(received) == [0, 1, 2]
    assert channel.missed_wakeups == 0, "a re-check counted a wake-up that went to another consumer"
    bg.close()
