"""Breaks found by an adversarial review, each pinned by a test."""

import asyncio
import dis
import itertools
import os
import queue
import sys
import threading
import time

import pytest
from test_exit import NO_NEW_THREADS_IN_SHUTDOWN, run_python

from conftest import live_workers
from prefetch_generator import BackgroundGenerator, _background, _channel, background


class Interrupt(BaseException):
    """What a signal handler raises (Ctrl-C raises KeyboardInterrupt)."""


def slow_source(items):
    for item in range(items):
        time.sleep(0.002)  # a slow producer: the consumer waits for each item
        yield item


class SlowSourceWithState:
    """``slow_source`` with a checkpoint: ``state_dict()`` is the next item's index."""

    def __init__(self, items):
        self.items, self.next = items, 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.next == self.items:
            raise StopIteration
        time.sleep(0.002)
        self.next += 1
        return self.next - 1

    def state_dict(self):
        return {"next": self.next}


def consume_interrupted_at(line_event, items, source=slow_source):
    """Consume ``items`` with an Interrupt raised at the ``line_event``-th line run
    by the hand-off in this thread; keep iterating after it, as a notebook user would.
    Returns (received, line events seen, the generator)."""
    files = {_channel.__file__, _background.__file__}
    seen = [0]

    def local(frame, event, arg):
        if event == "line":
            seen[0] += 1
            if seen[0] == line_event:
                raise Interrupt
        return local

    def calls(frame, event, arg):
        return local if frame.f_code.co_filename in files else None

    bg = BackgroundGenerator(source(items), max_prefetch=1)
    received = []
    sys.settrace(calls)
    try:
        while True:
            try:
                for item in bg:
                    received.append(item)
                break
            except Interrupt:
                continue
    finally:
        sys.settrace(None)
    return received, seen[0], bg


@pytest.mark.parametrize("source", [slow_source, SlowSourceWithState], ids=["plain", "with state"])
def test_an_interrupt_at_any_line_of_next_loses_nothing_and_leaves_no_waiter(source):
    items = 5
    _, lines, _ = consume_interrupted_at(0, items, source)
    assert lines > 20
    for line_event in range(1, lines + 1):
        received, _, bg = consume_interrupted_at(line_event, items, source)
        where = f"interrupted at line event {line_event}"
        assert received == list(range(items)), where
        # The worker takes a woken waiter off the list after waking it, so on a
        # free-threaded build the list empties only once the worker is done.
        bg._worker.thread.join(10)
        assert not bg._channel.waiters, where
        if source is SlowSourceWithState:
            assert bg.state_dict() == {"next": items}, where
        bg.close()


def test_an_interrupt_after_taking_from_a_source_with_state_puts_back_item_and_state():
    bg = BackgroundGenerator(SlowSourceWithState(3), max_prefetch=2)
    assert next(bg) == 0
    records = bg._delivered.records

    class InterruptedStore(list):
        def __setitem__(self, slot, record):
            super().__setitem__(slot, record)
            raise Interrupt  # after recording, before the item is handed out

    bg._delivered.records = InterruptedStore(records)
    with pytest.raises(Interrupt):
        next(bg)
    assert bg.state_dict() == {"next": 1}  # item 1 was not delivered
    bg._delivered.records = records
    assert list(bg) == [1, 2] and bg.state_dict() == {"next": 3}
    assert bg.stats().consumed == 3  # item 1, put back, is counted once, when delivered


def test_an_item_taken_when_close_comes_before_it_is_handed_out_counts_as_discarded():
    bg = BackgroundGenerator(SlowSourceWithState(3), max_prefetch=-1)
    bg._worker.thread.join(10)
    assert next(bg) == 0
    records = bg._delivered.records

    class ClosedThenInterrupted(list):
        def __setitem__(self, slot, record):
            bg.close(timeout=0)  # item 1 is taken and not yet handed out
            raise Interrupt

    bg._delivered.records = ClosedThenInterrupted(records)
    with pytest.raises(Interrupt):
        next(bg)
    stats = bg.stats()
    assert (stats.produced, stats.consumed, stats.buffered) == (3, 1, 0)


def next_in_a_thread_once_it_waits(bg, waiters):
    """Start ``next(bg)`` in a thread; return once ``waiters`` waiters are registered."""
    got = []
    consumer = threading.Thread(target=lambda: got.append(next(bg)), daemon=True)
    consumer.start()
    deadline = time.monotonic() + 10
    while len(bg._channel.waiters) < waiters and time.monotonic() < deadline:
        time.sleep(0.001)  # waits for a state, bounded
    return got, consumer


def test_an_error_closing_the_source_is_reported_and_the_worker_still_ends():
    result = run_python("""
        def fails_on_close():
            try:
                while True:
                    yield 1
            finally:
                raise ValueError("cleanup failed")
        bg = BackgroundGenerator(fails_on_close())
        next(bg)
        bg.close()
        print("running:", bg.is_running(), flush=True)
    """)
    assert result.returncode == 0
    assert result.stdout == "running: False\n"
    assert result.stderr.startswith(
        "Exception ignored while closing the source of a BackgroundGenerator:\nTraceback"
    )
    assert result.stderr.rstrip().endswith("ValueError: cleanup failed")


@NO_NEW_THREADS_IN_SHUTDOWN
def test_a_generator_created_in_an_exit_handler_after_an_import_keeps_the_exit_handler():
    result = run_python("""
        import atexit, tempfile, pathlib
        bg = BackgroundGenerator(endless(), max_prefetch=2)
        next(bg)
        folder = tempfile.mkdtemp()
        pathlib.Path(folder, "late_module.py").write_text("")
        sys.path.insert(0, folder)
        def at_exit():
            import late_module
            with BackgroundGenerator(endless(), max_prefetch=2) as late:
                next(late)
        atexit.register(at_exit)
    """)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "source finally ran\nsource finally ran\n"


@NO_NEW_THREADS_IN_SHUTDOWN
def test_with_in_an_exit_handler_that_runs_after_ours_still_closes_the_source():
    result = run_python(
        "",
        before="""
        import atexit
        def save_at_exit():
            with BackgroundGenerator(endless()) as bg:
                next(bg)
            print("running:", bg.is_running(), flush=True)
        atexit.register(save_at_exit)
        """,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "source finally ran\nrunning: False\n"


def test_a_closeable_registered_for_exit_is_closed_only_after_its_worker_left_it():
    result = run_python("""
        from prefetch_generator._worker import close_at_exit
        class Source:
            inside = False
            def __iter__(self):
                return self
            def __next__(self):
                self.inside = True
                time.sleep(0.2)
                self.inside = False
                return 1
            def close(self):
                print("closed in", threading.current_thread().name, "inside:", self.inside)
        source = Source()
        close_at_exit(source)
        bg = BackgroundGenerator(source)
        next(bg)
    """)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines()[0] == "closed in prefetch_generator inside: False"
    assert "inside: True" not in result.stdout


def test_an_exit_handler_whose_eq_raises_does_not_cost_ours():
    result = run_python("""
        import atexit, json
        class Odd:
            def __call__(self):
                pass
            def __eq__(self, other):
                raise TypeError("ambiguous comparison")
            __hash__ = object.__hash__
        atexit.register(Odd())
        import fractions, decimal  # new modules: the handler moves on the next start
        bg = BackgroundGenerator(endless(), max_prefetch=2)
        next(bg)
    """)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "source finally ran\n"


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


def test_a_closeable_that_raises_system_exit_at_exit_does_not_cost_the_others():
    result = run_python("""
        from prefetch_generator._worker import close_at_exit
        class Exits:
            def close(self):
                raise SystemExit(3)
        class Prints:
            def close(self):
                print("closed the other", flush=True)
        first, second = Exits(), Prints()
        close_at_exit(first)
        close_at_exit(second)
    """)
    assert result.returncode == 0
    assert result.stdout == "closed the other\n"
    assert "SystemExit: 3" in result.stderr


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
        bg = BackgroundGenerator(slow_source(20))
        async for _ in bg:
            pass
        return bg.stats()

    stats = asyncio.run(asyncio.wait_for(main(), 30))
    assert stats.consumer_wait_s > 0 and stats.bottleneck == "producer"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_an_inherited_generator_is_not_running_in_a_forked_child():
    result = run_python("""
        import warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads, 3.12+
        bg = BackgroundGenerator(endless(), max_prefetch=2)
        next(bg)
        pid = os.fork()
        if pid == 0:
            try:
                next(bg)
            except RuntimeError as error:  # never a silent end
                os._exit(0 if not bg.is_running() and "os.fork()" in str(error) else 1)
            os._exit(1)
        print("child status", os.waitpid(pid, 0)[1], flush=True)
    """)
    assert "child status 0" in result.stdout


def test_background_over_something_not_callable_names_both_forms():
    with pytest.raises(TypeError, match="max_prefetch must be an int.*decorates a generator"):
        background(property(lambda self: 1))


@pytest.mark.parametrize("kind", ["async def", "async generator"])
def test_background_refuses_async_functions_when_decorating(kind):
    async def coroutine():
        pass

    async def async_generator():
        yield 1

    function = coroutine if kind == "async def" else async_generator
    with pytest.raises(TypeError, match="synchronous generator.*async function"):
        background(2)(function)


def test_a_type_that_sets_iter_to_none_gets_the_named_error():
    class NotIterable:
        __iter__ = None

    with pytest.raises(TypeError, match="generator must be an iterable, got NotIterable"):
        BackgroundGenerator(NotIterable())
    assert live_workers() == []


@pytest.mark.parametrize("timeout", ["soon", -1.0, float("nan")])
def test_a_bad_close_timeout_is_refused_before_anything_closes(timeout):
    with BackgroundGenerator(range(3)) as bg:
        with pytest.raises((TypeError, ValueError), match="timeout"):
            bg.close(timeout)
        assert list(bg) == [0, 1, 2]


class SourceError(Exception):
    pass


def failing_at_once():
    raise SourceError("from the source")
    yield  # a generator that raises at its first step


def next_interrupted_after_call(bg, nth):
    """``next(bg)`` with an Interrupt raised right after the ``nth`` call made in
    ``Channel.raise_if_drained`` returns, where CPython handles signals (since
    3.10 only there and at backward jumps); whether it was raised."""
    code = _channel.Channel.raise_if_drained.__code__
    names = {instruction.offset: instruction.opname for instruction in dis.get_instructions(code)}
    calls_returned = itertools.count(1)
    after_a_call = [False]

    def local(frame, event, arg):
        frame.f_trace_opcodes = True
        if event == "opcode":
            if after_a_call[0] and next(calls_returned) == nth:
                raise Interrupt
            after_a_call[0] = names.get(frame.f_lasti, "").startswith("CALL")
        return local

    def calls(frame, event, arg):
        return local if frame.f_code is code else None

    sys.settrace(calls)
    try:
        next(bg)
    except Interrupt:
        return True
    except SourceError:
        return False
    finally:
        sys.settrace(None)
    raise AssertionError("next() returned where the source had raised")


def test_a_signal_at_the_end_of_any_call_while_taking_the_error_keeps_it():
    for nth in itertools.count(1):
        bg = BackgroundGenerator(failing_at_once())
        bg._worker.thread.join(10)
        if not next_interrupted_after_call(bg, nth):
            break
        with pytest.raises(SourceError, match="from the source"):
            next(bg)  # the error was not lost to the interrupt
    if nth == 1:
        pytest.skip("this Python reports no opcode events to the tracer")


def test_an_index_error_from_the_source_reaches_the_consumer_as_itself():
    # The channel takes the error from a deque that raises IndexError when empty.
    error = IndexError("from the source")

    def source():
        yield 1
        raise error

    bg = BackgroundGenerator(source())
    assert next(bg) == 1
    with pytest.raises(IndexError) as raised:
        next(bg)
    assert raised.value is error
    with pytest.raises(StopIteration):
        next(bg)


@pytest.mark.cuts_wake_ups
def test_a_second_interrupt_while_a_wake_up_is_handed_on_strands_no_consumer(monkeypatch):
    # The main thread's waiter is woken and a first Ctrl-C lands as it wakes,
    # so it hands its wake-up on to the other consumer's waiter; a
    # second Ctrl-C lands as that waiter is about to be woken.
    main = threading.current_thread()
    armed = {"as it wakes": True, "as it hands on": False}

    class InterruptedAsItWakes:
        def __init__(self):
            self.lock = threading.Lock()
            self.lock.acquire()

        def acquire(self, blocking=True, timeout=-1):
            acquired = self.lock.acquire(blocking, timeout)
            if acquired and threading.current_thread() is main and armed["as it wakes"]:
                armed["as it wakes"], armed["as it hands on"] = False, True
                raise Interrupt
            return acquired

        def release(self):
            self.lock.release()

    class Waiter(_channel.ThreadWaiter):
        __slots__ = ()

        def __init__(self):
            super().__init__()
            self.woken = InterruptedAsItWakes()

        def wake(self, handoff=False):
            if threading.current_thread() is main and armed["as it hands on"]:
                armed["as it hands on"] = False
                both_landed.set()
                raise Interrupt
            return super().wake(handoff)

    monkeypatch.setattr(_channel, "ThreadWaiter", Waiter)
    monkeypatch.setattr(_channel, "SPIN_S", 0.0)  # sleep at once, to be woken
    gate, both_landed = threading.Event(), threading.Event()

    def source():
        assert gate.wait(10)
        yield 0
        # Item 1 would wake the other consumer itself: not before both landed.
        both_landed.wait(10)
        yield from range(1, 3)

    bg = BackgroundGenerator(source(), max_prefetch=1)
    waiters = bg._channel.waiters
    other_received = []
    other = threading.Thread(target=lambda: other_received.extend(bg), daemon=True)

    def set_the_scene():
        until(lambda: len(waiters) == 1)  # the main thread waits first
        other.start()
        until(lambda: len(waiters) == 2)
        gate.set()

    threading.Thread(target=set_the_scene, daemon=True).start()
    received = []
    while True:
        try:
            received.append(next(bg))
        except Interrupt:
            continue
        except StopIteration:
            break
    other.join(10)
    assert not other.is_alive(), "the other consumer was left asleep"
    assert sorted(received + other_received) == [0, 1, 2]
    assert not armed["as it wakes"] and not armed["as it hands on"]  # both landed


def until(condition, bound_s=10):
    deadline = time.monotonic() + bound_s
    while not condition():
        assert time.monotonic() < deadline, "never happened"
