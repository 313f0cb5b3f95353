"""Interrupts (Ctrl-C, signal-based time limits) that land while an earlier one is handled.

Each test forces one situation of the hand-off open (a consumer asleep, an
item just taken, a wake-up handed on) and raises a first interrupt at each
point of it where CPython handles signals, then a second one at each point of
the recovery from the first (``tests/interrupt_explorer.py``). The consumer
catches each and goes on, as under a signal-based time limit. A storm test
raises them from a real 50 us signal timer, as users meet them.
"""

import asyncio
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
    Injected,
    Injector,
    Watchdog,
    check_in_order,
    check_the_end,
    consume,
    consume_async,
    explore,
    no_waiter_left,
    run_in_main,
)

from prefetch_generator import BackgroundGenerator


def until(condition, bound_s=STALL_S):
    """Whether ``condition()`` came true within ``bound_s`` (polled)."""
    deadline = time.monotonic() + bound_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(1e-4)
    return True


def explored(name, scenario):
    found = explore(name, scenario, max_failures=3)
    assert not found.failures, found.summary()
    assert found.pairs > 10  # the interrupts did land
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
                until(lambda: len(bg._channel.waiters) >= 2)
                yield item

        bg = BackgroundGenerator(source(), max_prefetch=1)
        created.set()
        mine, others = [], []
        other = threading.Thread(target=others.extend, args=(bg,), daemon=True)

        def start_the_other_once_the_main_thread_waits():
            until(lambda: bg._channel.waiters)
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
                until(lambda: bg._channel.waiters)
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
    assert until(lambda: bg.stats().buffered == 2)
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
        received, problems = [], []
        loop = asyncio.new_event_loop()
        task = loop.create_task(consume_async(bg, received, injector, no_waiter_left(bg, problems)))

        def run_the_loop():
            while True:
                try:
                    loop.run_until_complete(task)
                    return
                except Injected as error:
                    injector.caught(error)

        try:
            problems += run_in_main(injector, lambda: len(received), run_the_loop)
        finally:
            if not task.done():
                task.cancel()
                loop.run_until_complete(asyncio.wait([task], timeout=STALL_S))
            loop.close()
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
    assert until(lambda: consumed[0] > 0)
    for _ in range(checkpoints):
        taken.append(bg.state_dict()["yielded"])
    consumer.join(STALL_S)
    assert not consumer.is_alive()
    assert taken == sorted(taken) and taken[-1] <= consumed[0]
    bg.close()
