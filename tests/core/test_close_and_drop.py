"""close(), with and dropping: each stops the worker and runs the source's ``finally`` in it.

``close()`` is idempotent, wakes a consumer blocked in another thread, and returns
within its timeout even while the source is stuck; a ``with`` block closes on exit,
whether or not its body raised. A generator nobody references any more, even one
left by a ``break`` or an error nobody received, is stopped without waiting for the
garbage collector, and a collection that runs in the worker itself never deadlocks.
"""

import gc
import os
import subprocess
import sys
import textwrap
import threading
import weakref

import pytest
from support import REPO, Endless

from conftest import WORKER_NAME, live_workers
from prefetch_generator import BackgroundGenerator, background


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


def test_the_garbage_collector_finalising_a_generator_in_its_own_worker_does_not_deadlock():
    # An exception caught where the loop runs makes a frame <-> traceback
    # cycle; the collector then finalises BackgroundGenerators on whatever
    # thread allocates, the workers included, in the middle of the hand-off.
    code = textwrap.dedent("""
        import gc
        from prefetch_generator import BackgroundGenerator
        gc.set_threshold(50, 1, 1)
        def batches():
            for i in range(1000):
                yield [i] * 8
        def epoch():
            bg = BackgroundGenerator(batches(), max_prefetch=16); error = None
            try:
                for n, b in enumerate(bg):
                    if n == 100: raise ValueError("early stop")
            except ValueError as e:
                error = e
        for _ in range(300): epoch()
        print("done", flush=True)
    """)
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(os.environ, PYTHONPATH=REPO),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "done\n", "")
