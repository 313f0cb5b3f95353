"""state_dict()/get_state(): the source's state as of the last item a consumer received.

The sources here implement the two protocols with the standard library only;
tests/checkpoint runs the same claims against torchdata and Grain. Each test
first lets the worker run ahead of the consumer (it waits on an event the
source sets, never sleeps), so reading the source's live state instead of the
state delivered with the last item would fail it.
"""

import asyncio
import threading

import pytest

from prefetch_generator import BackgroundGenerator

BOUND_S = 10


class Counter:
    """Yields ``start, ..., stop - 1``; ``state_dict()`` is a new dict each call.

    ``ahead`` is set once the source has produced item ``ahead_of``: from then
    on its live position is past that item.
    """

    def __init__(self, stop, start=0, ahead_of=None, fail_at=None):
        self.next_value = start
        self.stop = stop
        self.ended = False
        self.ahead_of = ahead_of
        self.ahead = threading.Event()
        self.fail_at = fail_at

    def __iter__(self):
        return self

    def __next__(self):
        value = self.next_value
        if value == self.fail_at:
            raise ValueError(f"source failed at {value}")
        if value >= self.stop:
            self.ended = True
            raise StopIteration
        self.next_value += 1
        if value == self.ahead_of:
            self.ahead.set()
        return value

    def state_dict(self):
        return {"next": self.next_value, "ended": self.ended}

    @classmethod
    def restored(cls, state, stop):
        return cls(stop, start=state["next"])


class GrainLike(Counter):
    """The same source with Grain's ``get_state()`` only."""

    get_state = Counter.state_dict
    state_dict = None


class BothMethods(Counter):
    """A source with both methods, each giving its own form of the same position."""

    def get_state(self):
        return ("position", self.state_dict()["next"])


def test_a_source_with_both_methods_gets_each_as_of_the_same_item():
    with BackgroundGenerator(BothMethods(10), 4) as bg:
        take(bg, 3)
        assert bg.state_dict()["next"] == 3
        assert bg.get_state() == ("position", 3)


def take(bg, count):
    return [next(bg) for _ in range(count)]


@pytest.mark.parametrize("max_prefetch", [1, 8, 64])
def test_resume_from_the_state_gives_every_item_once_in_order(max_prefetch):
    consumed = 5
    source = Counter(20, ahead_of=consumed)
    with BackgroundGenerator(source, max_prefetch) as bg:
        seen = take(bg, consumed)
        assert source.ahead.wait(BOUND_S)
        state = bg.state_dict()
    assert state == {"next": consumed, "ended": False}
    resumed = BackgroundGenerator(Counter.restored(state, 20), max_prefetch)
    assert seen + list(resumed) == list(range(20))


def test_before_the_first_item_the_state_is_the_one_at_construction():
    source = Counter(20, ahead_of=0)
    with BackgroundGenerator(source, 4) as bg:
        assert source.ahead.wait(BOUND_S)
        assert bg.state_dict() == {"next": 0, "ended": False}
        assert list(BackgroundGenerator(Counter.restored(bg.state_dict(), 20))) == list(range(20))


def test_the_state_is_taken_in_the_worker_right_after_each_item():
    consumed = 3
    source = Counter(10, ahead_of=consumed + 2)
    with BackgroundGenerator(source, 8) as bg:
        states = []
        for _ in range(consumed):
            next(bg)
            states.append(bg.state_dict())
        assert source.ahead.wait(BOUND_S)
        assert states == [{"next": n, "ended": False} for n in (1, 2, 3)]
        assert bg.state_dict() == states[-1]


def test_get_state_for_a_grain_style_source():
    source = GrainLike(10, ahead_of=4)
    with BackgroundGenerator(source, 4) as bg:
        take(bg, 2)
        assert source.ahead.wait(BOUND_S)
        assert bg.get_state() == {"next": 2, "ended": False}


def test_after_the_end_the_state_is_the_sources_state_after_its_end():
    # Restoring the state after the last item would replay an empty pass.
    with BackgroundGenerator(Counter(4), 2) as bg:
        assert list(bg) == [0, 1, 2, 3]
        assert bg.state_dict() == {"next": 4, "ended": True}


def test_the_end_reaches_the_consumers_once_and_the_state_follows_it():
    bg = BackgroundGenerator(Counter(3), 2)
    assert list(bg) == [0, 1, 2]
    with pytest.raises(StopIteration):
        next(bg)
    assert bg.state_dict() == {"next": 3, "ended": True}
    assert bg.stats().produced == bg.stats().consumed == 3


def test_after_close_the_state_is_that_of_the_last_item_delivered():
    source = Counter(30, ahead_of=8)
    bg = BackgroundGenerator(source, 16)
    take(bg, 2)
    assert source.ahead.wait(BOUND_S)
    bg.close(timeout=BOUND_S)
    assert not bg.is_running()
    assert list(bg) == []
    assert bg.state_dict() == {"next": 2, "ended": False}


def test_after_the_source_raised_the_state_is_that_of_the_last_item_delivered():
    bg = BackgroundGenerator(Counter(10, fail_at=4), 8)
    assert take(bg, 4) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="failed at 4"):
        next(bg)
    assert bg.state_dict() == {"next": 4, "ended": False}


def test_a_state_read_while_a_consumer_is_blocked_does_not_block():
    release = threading.Event()

    def gated():
        yield 0
        assert release.wait(BOUND_S)
        yield 1

    class Gated(Counter):
        def __init__(self):
            super().__init__(2)
            self.inner = gated()

        def __next__(self):
            value = next(self.inner)
            self.next_value = value + 1
            return value

    bg = BackgroundGenerator(Gated(), 1)
    assert next(bg) == 0
    blocked = threading.Thread(target=next, args=(bg,))
    blocked.start()
    assert bg.state_dict() == {"next": 1, "ended": False}
    release.set()
    blocked.join(BOUND_S)
    assert not blocked.is_alive()
    assert bg.state_dict() == {"next": 2, "ended": False}
    bg.close()


def test_several_consumer_threads_the_state_follows_every_item_delivered():
    threads, each = 4, 50
    source = Counter(threads * each + 40)
    bg = BackgroundGenerator(source, 8)
    barrier = threading.Barrier(threads)

    def consume():
        barrier.wait(BOUND_S)
        take(bg, each)

    workers = [threading.Thread(target=consume) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(BOUND_S)
    assert not any(worker.is_alive() for worker in workers)
    assert bg.state_dict() == {"next": threads * each, "ended": False}
    bg.close()


def test_state_reads_during_consumption_never_fail_nor_go_back():
    # On free-threaded builds a read copies the records while consumers
    # append to them: the copy must be retried, not raise.
    items = 500
    bg = BackgroundGenerator(Counter(items), 8)
    consumed = threading.Event()
    readings, errors = [], []

    def read():
        while not consumed.is_set():
            try:
                readings.append(bg.state_dict()["next"])
            except BaseException as error:
                errors.append(error)
                return

    def consume():
        for _ in bg:
            pass

    reader = threading.Thread(target=read)
    consumers = [threading.Thread(target=consume) for _ in range(3)]
    reader.start()
    for consumer in consumers:
        consumer.start()
    for consumer in consumers:
        consumer.join(BOUND_S)
    consumed.set()
    reader.join(BOUND_S)
    assert not reader.is_alive() and not any(c.is_alive() for c in consumers)
    assert errors == []
    assert readings == sorted(readings)
    assert bg.state_dict() == {"next": items, "ended": True}


class LateRecords(list):
    """Holds the record of item ``late`` back until the next item's is recorded."""

    def __init__(self, records, late):
        super().__init__(records)
        self.late = late
        self.late_received = threading.Event()
        self.next_recorded = threading.Event()

    def __setitem__(self, slot, record):
        if record[0] == self.late:
            self.late_received.set()
            assert self.next_recorded.wait(BOUND_S)
        super().__setitem__(slot, record)
        if record[0] == self.late + 1:
            self.next_recorded.set()


def test_an_item_recorded_late_by_one_thread_does_not_move_the_state_back():
    # Thread A receives item 0 and is preempted before recording it; thread
    # B receives item 1 and records it first. Item 1 is the last delivered.
    bg = BackgroundGenerator(Counter(10), 4)
    bg._delivered.records = LateRecords(bg._delivered.records, late=0)
    first = threading.Thread(target=next, args=(bg,))
    first.start()
    assert bg._delivered.records.late_received.wait(BOUND_S)
    second = threading.Thread(target=next, args=(bg,))
    second.start()
    for thread in (first, second):
        thread.join(BOUND_S)
    assert not first.is_alive() and not second.is_alive()
    assert bg.state_dict() == {"next": 2, "ended": False}
    bg.close()


def test_an_asyncio_consumer_records_each_item():
    source = Counter(12, ahead_of=6)

    async def consume():
        states = []
        async with BackgroundGenerator(source, 8) as bg:
            async for item in bg:
                states.append((item, bg.state_dict()))
                if item == 3:
                    break
            assert source.ahead.wait(BOUND_S)
            return states, bg.state_dict()

    states, last = asyncio.run(consume())
    assert states == [(n, {"next": n + 1, "ended": False}) for n in range(4)]
    assert last == {"next": 4, "ended": False}


def test_an_asyncio_consumer_records_the_end():
    async def consume():
        bg = BackgroundGenerator(Counter(3), 1)
        items = [item async for item in bg]
        return items, bg.state_dict()

    assert asyncio.run(consume()) == ([0, 1, 2], {"next": 3, "ended": True})


@pytest.mark.parametrize("depth", [2, 3])
def test_stacked_stages_expose_the_innermost_state_as_of_the_outermost_item(depth):
    consumed = 4
    source = Counter(40, ahead_of=consumed + 4)
    bg = BackgroundGenerator(source, 2)
    for _ in range(depth - 1):
        bg = BackgroundGenerator(bg, 2)
    seen = take(bg, consumed)
    assert source.ahead.wait(BOUND_S)
    state = bg.state_dict()
    assert state == {"next": consumed, "ended": False}
    bg.close()
    assert seen + list(BackgroundGenerator(Counter.restored(state, 40))) == list(range(40))


def test_stacked_stages_record_the_end():
    bg = BackgroundGenerator(BackgroundGenerator(Counter(5), 1), 1)
    assert list(bg) == list(range(5))
    assert bg.state_dict() == {"next": 5, "ended": True}


def test_the_method_of_an_iterable_is_used_when_its_iterator_has_none():
    class Reader:
        def __init__(self):
            self.position = 0
            self.ahead = threading.Event()

        def __iter__(self):
            while self.position < 10:
                self.position += 1
                if self.position == 5:
                    self.ahead.set()
                yield self.position - 1

        def state_dict(self):
            return {"position": self.position}

    reader = Reader()
    with BackgroundGenerator(reader, 8) as bg:
        take(bg, 2)
        assert reader.ahead.wait(BOUND_S)
        assert bg.state_dict() == {"position": 2}


def test_preprocess_func_does_not_move_the_state():
    source = Counter(10, ahead_of=5)
    with pytest.warns(DeprecationWarning):
        bg = BackgroundGenerator(source, 8, preprocess_func=lambda x: x * 10)
    assert take(bg, 2) == [0, 10]
    assert source.ahead.wait(BOUND_S)
    assert bg.state_dict() == {"next": 2, "ended": False}
    bg.close()


def test_a_source_without_the_method_raises_type_error_naming_it():
    with BackgroundGenerator(x for x in range(3)) as bg:
        with pytest.raises(TypeError, match=r"state_dict\(\).*generator has none"):
            bg.state_dict()
        with pytest.raises(TypeError, match=r"get_state\(\).*generator has none"):
            bg.get_state()
    with BackgroundGenerator(Counter(3)) as bg:
        with pytest.raises(TypeError, match=r"get_state\(\).*Counter has none; it has state_dict"):
            bg.get_state()


def test_a_stage_over_a_stage_without_state_has_none_either():
    with BackgroundGenerator(BackgroundGenerator(iter(range(3)))) as bg:
        with pytest.raises(TypeError, match="BackgroundGenerator has none"):
            bg.state_dict()
        assert list(bg) == [0, 1, 2]


def test_an_error_in_the_state_method_reaches_the_consumer():
    class Broken(Counter):
        def state_dict(self):
            if self.next_value == 2:
                raise RuntimeError("cannot save")
            return super().state_dict()

    with BackgroundGenerator(Broken(5), 1) as bg:
        assert next(bg) == 0
        with pytest.raises(RuntimeError, match="cannot save"):
            next(bg)
        assert bg.state_dict() == {"next": 1, "ended": False}


def test_an_error_in_the_state_method_at_construction_starts_nothing():
    class Broken(Counter):
        def state_dict(self):
            raise RuntimeError("cannot save")

    with pytest.raises(RuntimeError, match="cannot save"):
        BackgroundGenerator(Broken(5))
