"""close(), with, dropping, BaseException, several consumers, the bound."""

import gc
import sys
import threading
import weakref

import pytest

from conftest import WORKER_NAME, live_workers
from prefetch_generator import BackgroundGenerator, background


class Endless:
    """An endless generator that records where its ``finally`` ran."""

    def __init__(self):
        self.taken = 0
        self.closed_in = None
        self.closed = threading.Event()

    def __iter__(self):
        try:
            while True:
                self.taken += 1
                yield self.taken
        finally:
            self.closed_in = threading.current_thread().name
            self.closed.set()


class Stuck:
    """A generator whose second step blocks until ``release`` is set."""

    def __init__(self):
        self.entered = threading.Event()
        self.release = threading.Event()
        self.closed = threading.Event()

    def __iter__(self):
        try:
            yield "first"
            self.entered.set()
            self.release.wait(30)
            yield "second"
        finally:
            self.closed.set()


@pytest.fixture
def no_gc():
    """Prove clean-up by reference counting alone."""
    gc.disable()
    yield
    gc.enable()


def test_close_runs_the_sources_finally_in_the_worker_and_ends_the_worker():
    source = Endless()
    bg = BackgroundGenerator(iter(source), max_prefetch=2)
    assert next(bg) == 1
    bg.close()
    assert source.closed.is_set() and source.closed_in == WORKER_NAME
    assert not bg.is_running()


def test_next_after_close_raises_stop_iteration():
    bg = BackgroundGenerator(range(100), max_prefetch=10)
    assert next(bg) == 0
    bg.close()
    with pytest.raises(StopIteration):
        next(bg)


def test_close_is_idempotent():
    bg = BackgroundGenerator(iter(Endless()))
    bg.close()
    bg.close()
    assert list(bg) == []


def test_close_from_another_thread_wakes_a_blocked_consumer():
    source = Stuck()
    bg = BackgroundGenerator(iter(source))
    assert next(bg) == "first"
    outcome = []
    consumer = threading.Thread(target=lambda: outcome.append(next(bg, "ended")))
    consumer.start()
    source.entered.wait(10)
    closer = threading.Thread(target=bg.close, kwargs={"timeout": 0})
    closer.start()
    consumer.join(10)
    assert outcome == ["ended"]
    closer.join(10)
    source.release.set()
    bg.close(timeout=None)
    assert source.closed.is_set()


def test_close_returns_within_its_timeout_while_the_source_is_stuck():
    source = Stuck()
    bg = BackgroundGenerator(iter(source))
    assert next(bg) == "first"
    source.entered.wait(10)
    bg.close(timeout=0.05)
    assert bg.is_running() and not source.closed.is_set()
    source.release.set()
    bg.close(timeout=None)
    assert source.closed.is_set() and not bg.is_running()


def test_with_block_closes_on_exit():
    source = Endless()
    with BackgroundGenerator(iter(source)) as bg:
        assert next(bg) == 1
    assert source.closed.is_set() and not bg.is_running()


def test_with_block_closes_when_the_body_raises():
    source = Endless()
    with pytest.raises(RuntimeError):
        with BackgroundGenerator(iter(source)):
            raise RuntimeError
    assert source.closed.is_set()


def workers_end(bound_s=10):
    """Whether every worker thread ends within ``bound_s`` (dropping does not wait)."""
    for thread in live_workers():
        thread.join(bound_s)
    return live_workers() == []


def test_break_frees_the_worker_and_closes_the_source_without_the_gc(no_gc):
    source = Endless()
    for item in BackgroundGenerator(iter(source), max_prefetch=4):
        if item == 3:
            break
    assert source.closed.wait(10) and workers_end()
    assert source.closed_in == WORKER_NAME


def test_an_abandoned_decorated_endless_generator_is_cleaned_up(no_gc):
    finished = threading.Event()

    @background(max_prefetch=8)
    def endless():
        try:
            while True:
                yield 0
        finally:
            finished.set()

    batches = endless()
    next(batches)
    del batches
    assert finished.wait(10) and workers_end()


def test_many_abandoned_iterators_leave_no_threads(no_gc):
    for _ in range(300):
        next(BackgroundGenerator(iter(Endless())))
    assert workers_end()


class SourceError(Exception):
    """An exception that can be weakly referenced (built-in ones cannot)."""


def test_a_source_error_nobody_received_is_freed_without_the_gc(no_gc):
    # Its traceback holds the worker's frames, which hold the channel that
    # holds the error: dropping the BackgroundGenerator must break that cycle.
    raised = []

    def remembered(error):
        raised.append(weakref.ref(error))
        return error

    def source():
        yield 1
        raise remembered(SourceError("never received"))

    bg = BackgroundGenerator(source())
    assert next(bg) == 1
    assert workers_end()
    del bg
    assert raised[0]() is None


@pytest.mark.parametrize("error_type", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_base_exceptions_from_the_source_reach_the_consumer(error_type):
    def source():
        yield 1
        raise error_type("from source")

    bg = BackgroundGenerator(source())
    assert next(bg) == 1
    with pytest.raises(error_type, match="from source"):
        next(bg)
    with pytest.raises(StopIteration):
        next(bg)


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


def test_a_source_error_is_raised_in_exactly_one_of_several_consumers():
    def source():
        yield from range(1000)
        raise ValueError("once")

    bg = BackgroundGenerator(source(), max_prefetch=2)
    errors = []

    def consume():
        try:
            for _ in bg:
                pass
        except ValueError as error:
            errors.append(error)

    threads = [threading.Thread(target=consume) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(errors) == 1


@pytest.mark.parametrize("max_prefetch", [1, 2, 8])
def test_items_taken_but_not_consumed_never_exceed_max_prefetch_plus_one(max_prefetch):
    source = Endless()
    bg = BackgroundGenerator(iter(source), max_prefetch)
    for consumed in range(1, 2000):
        next(bg)
        assert source.taken - consumed <= max_prefetch + 1
    bg.close()


def test_an_error_raised_while_closing_the_source_goes_to_unraisablehook(monkeypatch):
    reported = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)

    def fails_on_close():
        try:
            while True:
                yield 1
        finally:
            raise RuntimeError("cleanup failed")

    bg = BackgroundGenerator(fails_on_close())
    next(bg)
    bg.close()
    assert len(reported) == 1
    assert isinstance(reported[0].exc_value, RuntimeError)
    assert "closing the source" in reported[0].err_msg


@pytest.mark.cuts_wake_ups
def test_a_dropped_generator_whose_finaliser_was_interrupted_still_stops_its_worker():
    closed = threading.Event()

    def endless():
        try:
            while True:
                yield 1
        finally:
            closed.set()

    class InterruptedFinaliser(BackgroundGenerator):
        def __del__(self):
            pass  # what a signal handler raising at the finaliser's first call leaves

    bg = InterruptedFinaliser(endless(), max_prefetch=2)
    worker = bg._worker.thread
    next(bg)
    del bg  # the worker parks on a full buffer with no stop requested
    assert closed.wait(10), "the source's finally never ran"
    worker.join(10)
    assert not worker.is_alive()
