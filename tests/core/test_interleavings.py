"""Every window of the hand-off protocol, forced open, loses no wake-up.

Each run lets one side (the producer or the consumer) run alone up to just
before its n-th shared operation: a buffer or waiter-list call, a flag read or
write, a park or wake-up call (or until it must sleep). The other side then runs
until it is about to sleep, or is done; only then does the paused side go
on. Whatever n is, both must finish with every item delivered once, in order.
A GIL switch or, on free-threaded CPython, an ordinary preemption can land on
any of those points, and random stress runs almost never hit the bad ones:
this visits each of them.
"""

import asyncio
import sys
import threading
import time
from collections import deque
from threading import get_ident

import pytest

from prefetch_generator import BackgroundGenerator, _channel
from prefetch_generator._channel import Channel

BOUND_S = 10


class Schedule:
    """Runs ``paused_role`` alone up to its ``pause_at``-th shared operation."""

    def __init__(self, paused_role, pause_at):
        self.paused_role = paused_role
        self.pause_at = pause_at
        self.steps = {"producer": 0, "consumer": 0}
        self.roles = {}
        self.other_may_start = threading.Event()
        self.release = threading.Event()

    def begin(self, role):
        self.roles[get_ident()] = role
        if role != self.paused_role:
            assert self.other_may_start.wait(BOUND_S), "the paused side never paused"

    def step(self):
        role = self.roles.get(get_ident())
        if role is None:
            return
        self.steps[role] += 1
        if role == self.paused_role and self.steps[role] == self.pause_at:
            self.other_may_start.set()
            assert self.release.wait(BOUND_S), "the other side never slept nor finished"

    def cannot_go_on(self):
        """The calling side is about to sleep, or is done: let the other side run."""
        role = self.roles.get(get_ident())
        if role == self.paused_role:
            self.other_may_start.set()
        elif role is not None:
            self.release.set()


def instrumented_channel(schedule, capacity):
    class TrackedDeque(deque):
        def __len__(self):
            schedule.step()
            return super().__len__()

        def append(self, item):
            schedule.step()
            super().append(item)

        def popleft(self):
            schedule.step()
            return super().popleft()

        def remove(self, item):
            schedule.step()
            super().remove(item)

    def tracked_flag(name):
        def get(self):
            schedule.step()
            return self.__dict__[name]

        def set_(self, value):
            schedule.step()
            self.__dict__[name] = value

        return property(get, set_)

    class TrackedLock:
        """A lock that starts locked (the park lock, a waiter's), whose calls are steps."""

        def __init__(self):
            self.lock = threading.Lock()
            self.lock.acquire()

        def acquire(self, blocking=True, timeout=-1):
            schedule.step()
            if blocking and self.lock.locked():
                schedule.cannot_go_on()
            return self.lock.acquire(blocking, timeout)

        def release(self):
            schedule.step()
            self.lock.release()

    class TrackedChannel(Channel):
        parked = tracked_flag("parked")
        stop_requested = tracked_flag("stop_requested")
        ended = tracked_flag("ended")
        capacity = tracked_flag("capacity")

    channel = TrackedChannel(capacity)
    channel.items, channel.waiters = TrackedDeque(), TrackedDeque()
    channel.taker = _channel._taker(channel.items)
    channel._park = TrackedLock()
    return channel, TrackedLock


def run_schedule(monkeypatch, paused_role, pause_at, capacity, scenario):
    """Run ``scenario`` with one side paused; return how many steps that side took."""
    schedule = Schedule(paused_role, pause_at)
    channel, lock_type = instrumented_channel(schedule, capacity)

    class TrackedThreadWaiter(_channel.ThreadWaiter):
        __slots__ = ()

        def __init__(self):
            super().__init__()
            self.woken = lock_type()

    monkeypatch.setattr(_channel, "ThreadWaiter", TrackedThreadWaiter)
    outcome = {}

    def as_role(role, body):
        def run():
            schedule.begin(role)
            try:
                outcome[role] = body(channel)
            finally:
                schedule.cannot_go_on()

        return threading.Thread(target=run, daemon=True)

    producer, consumer = scenario
    threads = [as_role("producer", producer), as_role("consumer", consumer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BOUND_S)
    where = f"{paused_role} paused before its step {pause_at}"
    assert not any(thread.is_alive() for thread in threads), f"hung: {where}"
    assert channel.missed_wakeups == 0, f"a re-check found work no wake-up announced: {where}"
    return schedule.steps[paused_role], outcome, where


def consumer_of(channel):
    """A BackgroundGenerator over ``channel``, with no worker of its own."""
    consumer = BackgroundGenerator.__new__(BackgroundGenerator)
    consumer._channel, consumer._delivered = channel, None
    return consumer


def receiver(channel):
    """``next()`` exactly as a BackgroundGenerator runs it, over ``channel``."""
    return consumer_of(channel).__next__


def receive_all(channel):
    return list(iter(receiver(channel), object()))  # ends on StopIteration


def receive_all_async(channel):
    async def receive():
        return [item async for item in consumer_of(channel)]

    return asyncio.run(receive())


def finite_stream(items):
    def produce(channel):
        if channel.send_all(iter(range(items))):
            channel.finish()
        return "finished"

    def consume(channel):
        return receive_all(channel)

    return produce, consume


def stopped_stream(take):
    def produce(channel):
        sent = channel.send_all(iter(int, 1))  # endless zeros
        channel.close()
        return sent

    def consume(channel):
        next_item = receiver(channel)
        received = [next_item() for _ in range(take)]
        channel.request_stop()
        return received

    return produce, consume


def every_pause_point(monkeypatch, paused_role, capacity, scenario, check):
    steps, outcome, where = run_schedule(monkeypatch, paused_role, 0, capacity, scenario)
    check(outcome, where)
    for pause_at in range(1, steps + 1):
        _, outcome, where = run_schedule(monkeypatch, paused_role, pause_at, capacity, scenario)
        check(outcome, where)
    return steps


@pytest.mark.parametrize("paused_role", ["producer", "consumer"])
@pytest.mark.parametrize(
    ("capacity", "items"),
    [(1, 4), (2, 4), (8, 2)],
    ids=["buffer of 1", "buffer of 2", "stream ends before the buffer fills"],
)
def test_no_pause_point_loses_a_wake_up_an_item_or_the_end(
    monkeypatch, paused_role, capacity, items
):
    def check(outcome, where):
        assert outcome == {"producer": "finished", "consumer": list(range(items))}, where

    steps = every_pause_point(monkeypatch, paused_role, capacity, finite_stream(items), check)
    assert steps > 5  # the instrumentation really sees the protocol


@pytest.mark.parametrize("paused_role", ["producer", "consumer"])
def test_no_pause_point_keeps_the_producer_from_seeing_a_stop(monkeypatch, paused_role):
    def check(outcome, where):
        assert outcome == {"producer": False, "consumer": [0, 0, 0]}, where

    every_pause_point(monkeypatch, paused_role, 2, stopped_stream(3), check)


@pytest.mark.parametrize("receive", [receive_all, receive_all_async], ids=["next", "anext"])
def test_a_consumer_that_loaded_the_buffer_before_close_swapped_it_gets_no_gap(receive):
    # Without the GIL (and on 3.8/3.9 at a thread switch) a consumer can load
    # the taker, then lose the CPU while close() swaps the buffer out and
    # discards it, and the producer appends one more item to the old buffer.
    # Popping that item and handing it out would skip the discarded ones.
    consumer_has_the_taker, late_item_appended = threading.Event(), threading.Event()
    consumer_done = threading.Event()

    class Buffer(deque):
        def popleft(self):
            if not consumer_has_the_taker.is_set():
                consumer_has_the_taker.set()
                assert late_item_appended.wait(BOUND_S)
            return super().popleft()

        def append(self, item):
            super().append(item)
            if channel.closed and not late_item_appended.is_set():
                late_item_appended.set()
                assert consumer_done.wait(BOUND_S)

    def source():
        yield 0
        yield 1
        assert consumer_has_the_taker.wait(BOUND_S)
        channel.close()  # as from a third thread, while the producer is between items
        yield 2

    channel = Channel(4)
    channel.items = Buffer()
    channel.taker = _channel._taker(channel.items)
    received = []

    def consume():
        try:
            received.extend(receive(channel))
        finally:
            consumer_done.set()

    threads = [
        threading.Thread(target=channel.send_all, args=(source(),), daemon=True),
        threading.Thread(target=consume, daemon=True),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BOUND_S)
    assert not any(thread.is_alive() for thread in threads)
    assert received == list(range(len(received)))
    assert (channel.produced, channel.discarded) == (3, 3 - len(received))


def test_an_item_taken_just_before_close_is_still_handed_out():
    # Consumer A takes item 0 and pauses before returning it; consumer B
    # takes item 1 and returns it; then close() runs. Discarding A's item
    # now would leave a gap: B received item 1 without item 0.
    a_took_an_item, a_may_go_on = threading.Event(), threading.Event()

    class PausingChannel(Channel):
        def wake_producer(self):
            if threading.current_thread().name == "A" and not a_took_an_item.is_set():
                a_took_an_item.set()
                assert a_may_go_on.wait(BOUND_S)
            super().wake_producer()

    channel = PausingChannel(4)
    producer = threading.Thread(target=channel.send_all, args=(iter(range(10)),), daemon=True)
    producer.start()
    started = time.monotonic()
    while not channel.parked:  # until the buffer is full and the producer parks
        assert time.monotonic() - started < BOUND_S, "the producer never parked"
    a_received = []
    consumer_a = threading.Thread(
        target=lambda: a_received.append(receiver(channel)()), name="A", daemon=True
    )
    consumer_a.start()
    assert a_took_an_item.wait(BOUND_S)
    b_received = receiver(channel)()
    channel.close()
    a_may_go_on.set()
    for thread in (consumer_a, producer):
        thread.join(BOUND_S)
    assert not consumer_a.is_alive() and not producer.is_alive()
    assert (a_received, b_received) == ([0], 1)


def test_an_item_put_back_while_close_runs_is_discarded_with_the_buffer():
    class ClosedDuringPutBack(Channel):
        def _closed(self):
            value = self.__dict__["closed"]
            if not value and sys._getframe(1).f_code.co_name == "after_put_back":
                self.close()  # from another thread, right after the item went back
            return self.__dict__["closed"]

        def _close(self, value):
            self.__dict__["closed"] = value

        closed = property(_closed, _close)

    channel = ClosedDuringPutBack(4)
    put_back_the_first_of_three(channel)
    assert (channel.produced, channel.discarded, len(channel.items)) == (3, 3, 0)


def test_an_item_put_back_after_the_source_ended_is_handed_out_again():
    channel = Channel(4)
    put_back_the_first_of_three(channel)
    assert receive_all(channel) == [0, 1, 2]


def put_back_the_first_of_three(channel):
    """Send three items and end, then take the first and put it back, as a
    receiver does when an interrupt comes before it hands the item out."""
    assert channel.send_all(iter(range(3)))
    channel.finish()
    for item in channel.taker:
        channel.items.appendleft(item)
        channel.after_put_back()
        break
