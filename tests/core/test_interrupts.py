"""Interrupts (Ctrl-C, signal-based time limits) lose nothing: no item, wake-up, state or count.

An interrupt may land at any point of ``next()``, ``__anext__`` or ``close()`` where
CPython handles signals, and a second one while the first is handled. A consumer
that catches it and goes on still receives every item once, in order; an item
taken when it came is put back and is the next one handed out; an error the source
raised is kept; ``state_dict()`` and ``stats()`` stay exact; no waiter is left
registered. Each test forces one situation of the hand-off open (a consumer
asleep, an item just taken, a wake-up handed on) and raises at each point of it,
then a second time at each point of the recovery (``tests/interrupt_explorer.py``).
The storm tests raise from a real 50 us signal timer, as users meet them.
"""

import asyncio
import dis
import itertools
import signal
import sys
import threading
import time

import pytest
from interrupt_explorer import (
    PACKAGE_DIR,
    RECOVERY_CAN_BE_CUT,
    STALL_S,
    Counting,
    Injector,
    Watchdog,
    check_in_order,
    check_the_end,
    consume,
    explore,
    no_waiter_left,
    run_async_in_main,
    run_in_main,
)
from support import a_signal_can_land_at, until

from prefetch_generator import BackgroundGenerator, _background, _channel

PUT_BACK_STALL_S = 5.0


def explored(name, scenario):
    found = explore(name, scenario, max_failures=3)
    assert not found.failures, found.summary()
    assert found.pairs > 0, "no second interrupt landed"  # how many: see test_interrupt_pairs
    return found


# -- 1. a wake-up handed on by an interrupted consumer ---------------------


@pytest.mark.cuts_wake_ups
def test_a_wake_up_an_interrupted_consumer_hands_on_reaches_the_other_consumer():
    # The main thread waits first and the other consumer second, then the
    # item comes: the producer wakes the main thread, which is interrupted
    # and hands the wake-up on to the other one (a second interrupt may land
    # anywhere in that hand-on). Nobody may be left asleep with an item there.
    def scenario(injector):
        created = threading.Event()

        def source():
            created.wait(STALL_S)
            for item in range(2):
                until(lambda: len(bg._channel.waiters) >= 2, STALL_S)
                yield item

        bg = BackgroundGenerator(source(), max_prefetch=1)
        created.set()
        mine, others = [], []
        other = threading.Thread(target=others.extend, args=(bg,), daemon=True)

        def start_the_other_once_the_main_thread_waits():
            until(lambda: bg._channel.waiters, STALL_S)
            other.start()

        starter = threading.Thread(target=start_the_other_once_the_main_thread_waits, daemon=True)
        starter.start()
        problems = run_in_main(
            injector,
            lambda: len(mine) + len(others),
            lambda: consume(bg, mine, injector, lambda: None),
        )
        starter.join(STALL_S)
        other.join(STALL_S)
        if other.is_alive():
            problems.append("the other consumer was left asleep")
        if check_in_order(sorted(mine + others), [0, 1]):
            problems.append(f"received {mine} and {others}")
        return problems + check_the_end(bg, injector)

    explored("wake-up handed on", scenario)


# -- 2. a sleeping consumer interrupted twice ------------------------------


def test_a_consumer_interrupted_twice_while_it_waits_leaves_no_waiter_registered():
    # Each item comes only once the consumer sleeps for it; a waiter left
    # registered would take the next wake-up meant for a live consumer.
    def scenario(injector):
        created = threading.Event()

        def source():
            created.wait(STALL_S)
            for item in range(3):
                until(lambda: bg._channel.waiters, STALL_S)
                yield item

        bg = BackgroundGenerator(source(), max_prefetch=1)
        created.set()
        received, problems = [], []
        problems += run_in_main(
            injector,
            lambda: len(received),
            lambda: consume(bg, received, injector, no_waiter_left(bg, problems)),
        )
        return problems + check_in_order(received, [0, 1, 2]) + check_the_end(bg, injector)

    explored("consumer asleep", scenario)


# -- 3. an item taken, then two interrupts ---------------------------------


def full_buffer(source):
    """A BackgroundGenerator whose worker has filled the buffer and waits for room."""
    bg = BackgroundGenerator(source, max_prefetch=1)
    assert until(lambda: bg.stats().buffered == 2, STALL_S)
    return bg


def test_an_item_next_took_before_two_interrupts_is_received_later():
    def scenario(injector):
        bg = full_buffer(iter(range(3)))
        received, problems = [], []
        problems += run_in_main(
            injector,
            lambda: len(received),
            lambda: consume(bg, received, injector, no_waiter_left(bg, problems)),
        )
        return problems + check_in_order(received, [0, 1, 2]) + check_the_end(bg, injector)

    explored("next() on a full buffer", scenario)


def test_an_item_anext_took_before_two_interrupts_is_received_later():
    def scenario(injector):
        bg = full_buffer(iter(range(3)))
        received = []
        problems = run_async_in_main(injector, bg, received)
        return problems + check_in_order(received, [0, 1, 2]) + check_the_end(bg, injector)

    explored("anext() on a full buffer", scenario)


# -- 4. the checkpoint taken in the interrupt handler ----------------------


def test_state_dict_in_the_interrupt_handler_is_the_state_after_the_last_item_received():
    # The usual "save on Ctrl-C" loop: the state it saves must resume with
    # the first item the loop did not receive.
    def scenario(injector):
        bg = full_buffer(Counting(3))
        received, problems = [], []
        check = no_waiter_left(bg, problems)

        def save():
            state = bg.state_dict()
            if state != {"yielded": len(received)} and not RECOVERY_CAN_BE_CUT:
                problems.append(f"state_dict() after {len(received)} item(s) was {state}")
            check()

        problems += run_in_main(
            injector, lambda: len(received), lambda: consume(bg, received, injector, save)
        )
        return problems + check_in_order(received, [0, 1, 2]) + check_the_end(bg, injector)

    explored("state_dict() in the handler", scenario)


# -- 2, 3 and 4 as users meet them: a signal storm -------------------------


class Storm(BaseException):
    """What the storm's handler raises (a signal-based time limit raising TimeoutError, say)."""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_under_a_signal_storm_every_item_arrives_once_in_order_and_checkpoints_are_exact():
    # A 50 us timer whose handler raises, and a loop that catches, saves a
    # checkpoint and goes on. Raised only inside the package's own frames:
    # what the consumer's own code loses is not the package's to keep.
    items = 2000
    bg = BackgroundGenerator(Counting(items))
    received, states = [], []
    injector = Injector(None)  # only for its watchdog's stall flag

    def storm(signum, frame):
        if injector.stall:
            raise TimeoutError("no progress")
        if frame is not None and frame.f_code.co_filename.startswith(PACKAGE_DIR):
            raise Storm

    def iterate():
        while True:
            try:
                try:
                    received.extend(bg)
                    return
                except Storm:
                    states.append((len(received), bg.state_dict()))
            except Storm:
                pass

    previous = signal.signal(signal.SIGALRM, storm)
    watchdog = Watchdog(injector, lambda: len(received), signal.SIGALRM)
    signal.setitimer(signal.ITIMER_REAL, 50e-6, 50e-6)
    try:
        iterate()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        watchdog.stop()
    assert not check_in_order(received, list(range(items)))
    wrong = [(count, state) for count, state in states if state != {"yielded": count}]
    assert not wrong or RECOVERY_CAN_BE_CUT, f"checkpoints past an item not received: {wrong[:5]}"
    bg.close()


# -- 5. state_dict() while another thread consumes -------------------------


class Endless:
    """A fast source with state: ``state_dict()`` counts the items yielded."""

    def __init__(self):
        self.yielded = 0

    def __iter__(self):
        return self

    def __next__(self):
        self.yielded += 1
        return self.yielded - 1

    def state_dict(self):
        return {"yielded": self.yielded}


@pytest.mark.timeout(30)
def test_state_dict_returns_while_another_thread_consumes_a_fast_source():
    # Documented never to block. The consumer goes on until the checkpoints
    # are all taken, so a state_dict() that waits for the consumer to pause
    # never returns (the test's timeout then fails it).
    bg = BackgroundGenerator(Endless(), max_prefetch=4)
    checkpoints = 2000
    taken = []
    consumed = [0]

    def consume_until_done():
        for _ in bg:
            consumed[0] += 1
            if len(taken) == checkpoints:
                return

    consumer = threading.Thread(target=consume_until_done, daemon=True)
    consumer.start()
    assert until(lambda: consumed[0] > 0, STALL_S)
    for _ in range(checkpoints):
        taken.append(bg.state_dict()["yielded"])
    consumer.join(STALL_S)
    assert not consumer.is_alive()
    assert taken == sorted(taken) and taken[-1] <= consumed[0]
    bg.close()


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
        if event == "line" and a_signal_can_land_at(frame):
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
        assert until(lambda: len(waiters) == 1, 10)  # the main thread waits first
        other.start()
        assert until(lambda: len(waiters) == 2, 10)
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
    assert until(lambda: len(channel.items) == 2 and channel.parked, PUT_BACK_STALL_S)
    wake_producer = type(channel).wake_producer.__code__
    other_may_take = threading.Event()
    other_took = threading.Event()
    others = []

    put_back = threading.Event()

    def other_consumer():
        assert other_may_take.wait(PUT_BACK_STALL_S)
        others.append(next(bg))
        other_took.set()
        assert put_back.wait(PUT_BACK_STALL_S)
        others.extend(bg)

    def interrupt_at_wake_producer(frame, event, arg):
        if event == "call" and frame.f_code is wake_producer:
            sys.settrace(None)
            other_may_take.set()
            assert other_took.wait(PUT_BACK_STALL_S)
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
    thread.join(PUT_BACK_STALL_S)
    assert not thread.is_alive()
    bg.close()
    assert others == [1, 0, 2, 3], f"the other consumer received {others}"


class KeyboardStorm(KeyboardInterrupt):
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
            raise KeyboardStorm

    async def consume():
        async for item in bg:
            received.append(item)

    async def main():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                await consume()
                return
            except KeyboardStorm:
                while True:
                    try:
                        state = bg.state_dict()
                        break
                    except KeyboardStorm:
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
