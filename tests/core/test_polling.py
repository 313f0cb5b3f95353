"""Without the GIL a consumer that runs dry polls the buffer briefly before it sleeps.

Free-threaded builds poll for ``SPIN_S``; these tests set it (and the policy's
threshold) on any build, so that the polling path is proven everywhere. With
the GIL a poll only delays the producer until the next forced thread switch,
so the results are the same, just slower.
"""

import threading

import pytest
from support import until

from prefetch_generator import BackgroundGenerator, _channel

BOUND_S = 10
LONGER_THAN_ANY_TEST_S = 300.0  # a poll that missed what it waits for would outlast the bound


@pytest.fixture
def endless_polls(monkeypatch):
    monkeypatch.setattr(_channel, "SPIN_S", LONGER_THAN_ANY_TEST_S)
    monkeypatch.setattr(_channel, "SPIN_AFTER_SLEEPS_UNDER_S", LONGER_THAN_ANY_TEST_S)


def in_thread(body):
    outcome = {}

    def run():
        try:
            outcome["value"] = body()
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize("consumers", [1, 3])
def test_polling_consumers_receive_every_item_once_then_the_end(endless_polls, consumers):
    bg = BackgroundGenerator(range(100), max_prefetch=1)
    runs = [in_thread(lambda: list(bg)) for _ in range(consumers)]
    for thread, _ in runs:
        thread.join(BOUND_S)
    assert not any(thread.is_alive() for thread, _ in runs)
    received = [outcome["value"] for _, outcome in runs]
    assert sorted(sum(received, [])) == list(range(100))
    assert all(items == sorted(items) for items in received)
    stats = bg.stats()
    assert (stats.produced, stats.consumed, stats.buffered) == (100, 100, 0)


def test_a_poll_ends_with_the_item_it_waits_for(endless_polls, monkeypatch):
    asked, received = threading.Event(), threading.Event()
    sleeps = []

    class CountedWaiter(_channel.ThreadWaiter):
        __slots__ = ()

        def __init__(self):
            super().__init__()
            sleeps.append(self)

    monkeypatch.setattr(_channel, "ThreadWaiter", CountedWaiter)

    def source():
        yield 0
        assert asked.wait(BOUND_S)
        yield 1  # appended while the consumer polls the empty buffer
        received.wait(BOUND_S)  # the source ends only once the item is received

    bg = BackgroundGenerator(source())

    def consume():
        items = [next(bg)]
        asked.set()
        items.append(next(bg))
        received.set()
        return items

    thread, outcome = in_thread(consume)
    thread.join(BOUND_S)
    assert not thread.is_alive() and outcome == {"value": [0, 1]}
    assert sleeps == []  # it polled instead
    bg.close()


def test_a_polling_consumer_receives_the_sources_error(endless_polls):
    def source():
        yield 1
        raise ValueError("from the source")

    bg = BackgroundGenerator(source())
    assert next(bg) == 1
    with pytest.raises(ValueError, match="from the source"):
        next(bg)


def test_close_ends_a_poll_at_once(endless_polls):
    release = threading.Event()
    first_received = threading.Event()

    def source():
        yield "first"
        release.wait(BOUND_S)  # holds the buffer empty while the consumer polls

    bg = BackgroundGenerator(source())

    def consume():
        received = [next(bg)]
        first_received.set()
        received.extend(bg)  # polls an empty buffer until close() ends the stream
        return received

    thread, outcome = in_thread(consume)
    assert first_received.wait(BOUND_S)
    bg.close(timeout=0)
    thread.join(BOUND_S)
    release.set()
    assert not thread.is_alive() and outcome == {"value": ["first"]}


def test_polling_stops_after_a_long_sleep_and_starts_again_after_a_short_one(monkeypatch):
    asked, asleep = threading.Event(), threading.Event()

    class SignallingLock:
        def __init__(self, lock):
            self.lock = lock

        def acquire(self, timeout=-1):
            asleep.set()
            return self.lock.acquire(timeout=timeout)

        def release(self):
            self.lock.release()

    class SleepingWaiter(_channel.ThreadWaiter):
        __slots__ = ()

        def __init__(self):
            super().__init__()
            self.woken = SignallingLock(self.woken)

    monkeypatch.setattr(_channel, "SPIN_S", 1e-3)
    monkeypatch.setattr(_channel, "ThreadWaiter", SleepingWaiter)

    def source():
        yield 0
        for item in (1, 2):
            # Each item comes only once the consumer sleeps for it: one that
            # finds the item as it lists itself does not sleep, and its
            # polling policy stays as it was.
            assert asked.wait(BOUND_S)
            asked.clear()
            assert asleep.wait(BOUND_S), "the consumer never went to sleep"
            yield item

    def ask():
        asleep.clear()
        asked.set()
        return next(bg)

    bg = BackgroundGenerator(source())
    channel = bg._channel
    # Taken from the buffer, so that the first next() neither polls nor sleeps.
    assert until(lambda: channel.items, BOUND_S)
    assert next(bg) == 0
    assert channel.spin_s == 1e-3

    monkeypatch.setattr(_channel, "SPIN_AFTER_SLEEPS_UNDER_S", 0.0)  # every sleep is long
    assert ask() == 1
    assert channel.spin_s == 0.0

    monkeypatch.setattr(_channel, "SPIN_AFTER_SLEEPS_UNDER_S", LONGER_THAN_ANY_TEST_S)
    assert ask() == 2
    assert channel.spin_s == 1e-3
