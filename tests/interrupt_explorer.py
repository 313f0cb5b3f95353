"""Interrupts raised where CPython really handles signals, in the package's code.

A signal handler runs in the main thread only, and only where the interpreter
checks for pending signals: since 3.11 at a Python function's entry, at
backward jumps and after calls; before that, at nearly every bytecode. Raising
from a trace function would put exceptions where no signal can land (and
unsets the tracer), so the injector only *trips* SIGINT the way a signal
does (``_thread.interrupt_main``) and lets the interpreter raise where it
would: the SIGINT handler the injector installs raises ``Injected``.

Two things keep the trace function from moving that point. It is itself
Python code, whose entry handles pending signals, so the trip is made from C
after it returns: it leaves a token in a local whose weak reference calls
``interrupt_main`` as its frame is torn down. And while opcode events are
traced, the interpreter checks for signals at every instruction, so from the
trip until the handler runs no frame is traced (the global trace function is
then a C callable that returns None).

Events are the ``call`` and ``opcode`` events of the package's frames in the
main thread. The first interrupt is tripped at the ``first``-th event of the
package frames the consumer called (``CONSUMER_CODES``); the second at the
``second``-th event of any package frame from the moment the first is raised
until the consumer catches it. A trip at any event before the point where an
earlier trip was raised is raised at that same point: ``covered`` names it,
and the injector trips at the first event past it instead.
"""

import _thread
import asyncio
import functools
import gc
import io
import operator
import os
import re
import signal
import sys
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import prefetch_generator

PACKAGE_DIR = os.path.dirname(os.path.abspath(prefetch_generator.__file__)) + os.sep
STALL_S = 3.0
"""A run whose consumers make no progress for this long is stuck."""
COVERED_WITHIN = 64
"""Events to look for an earlier trip's raising point in, before tripping anyway."""

Point = Tuple[int, Any, int]
"""(activation, code, instruction offset): one point of one run of the package's code."""


class Injected(KeyboardInterrupt):
    """An interrupt the explorer injected; a real Ctrl-C stays a plain KeyboardInterrupt."""


class Stalled(BaseException):
    """Raised in the main thread by the watchdog when a run makes no progress."""


class _TripRef(weakref.ref):
    trip = _thread.interrupt_main


_fire = operator.methodcaller("trip")  # C all the way: ``ref.trip()``
# What traces while a trip is pending: a C callable that returns None (no
# frame traced) and runs no Python code (``str`` of a frame is C).
_untraced = functools.partial(print, file=io.StringIO())


class _Token:
    __slots__ = ("__weakref__",)


def in_package(frame: Any) -> bool:
    return frame.f_code.co_filename.startswith(PACKAGE_DIR)


def describe(frame: Any) -> str:
    """``_channel.py:298 Channel._wake_consumer @44``: the frame's file, line, function and
    the offset of its current instruction."""
    code = frame.f_code
    name = getattr(code, "co_qualname", code.co_name)
    return f"{os.path.basename(code.co_filename)}:{frame.f_lineno} {name} @{frame.f_lasti}"


@dataclass
class Landing:
    """Where one interrupt was tripped, and where the interpreter raised it."""

    event: int
    tripped_at: str
    raised_at: str = "never raised"
    point: Optional[Point] = None  # where it was raised, if in the package

    def __str__(self) -> str:
        return f"event {self.event}: tripped at {self.tripped_at}, raised at {self.raised_at}"


@dataclass
class Injector:
    """Trips the ``first``-th and ``second``-th events (None: no interrupt)."""

    first: Optional[int]
    second: Optional[int] = None
    covered: Optional[Point] = None  # trip the first past this point (see the module docstring)
    second_covered: Optional[Point] = None  # and the second past this one
    consumer_codes: frozenset = frozenset()
    state: str = "before"  # before, tripped1, handling1, tripped2, handling2, done
    events: int = 0  # the consumer's events before the first trip
    handling_events: int = 0  # events while the first is handled
    landings: List[Landing] = field(default_factory=list)
    raised: List[BaseException] = field(default_factory=list)
    caught_last: Optional[BaseException] = None
    stall: bool = False

    def __post_init__(self) -> None:
        self._refs: list = []
        self._token: Optional[_Token] = None
        self._activations: Dict[Any, int] = {}
        self._skipping = 0
        self._calls = 0

    # -- the trace functions ---------------------------------------------
    # The interpreter calls ``trace`` (call events) and ``_target``/``_plain``
    # (opcode events of the frames they trace). A trip leaves its token in
    # ``_token``; only these outermost functions move it into a local of
    # their own, so that it dies as the interpreter's call returns.

    def trace(self, frame: Any, event: str, arg: Any) -> Optional[Callable]:
        local = None
        if in_package(frame):
            frame.f_trace_opcodes = True
            frame.f_trace_lines = False
            self._calls += 1
            self._activations[frame] = self._calls
            local = self._target if self._consumer_called(frame) else self._plain
            local = self._count(frame, local)
        _dies_with_this_frame, self._token = self._token, None
        return local

    def _target(self, frame: Any, event: str, arg: Any) -> Optional[Callable]:
        local = self._count(frame, self._target) if event == "opcode" else self._target
        _dies_with_this_frame, self._token = self._token, None
        return local

    def _plain(self, frame: Any, event: str, arg: Any) -> Optional[Callable]:
        local = self._count(frame, self._plain) if event == "opcode" else self._plain
        _dies_with_this_frame, self._token = self._token, None
        return local

    def _count(self, frame: Any, local: Callable) -> Optional[Callable]:
        if self.state == "before" and local == self._target:
            self.events += 1
            if self.first is not None and self.events >= self.first:
                if self._past(frame, "covered"):
                    return self._trip(frame, "tripped1", self.events)
        elif self.state == "handling1":
            self.handling_events += 1
            if self.second is not None and self.handling_events >= self.second:
                if self._past(frame, "second_covered"):
                    return self._trip(frame, "tripped2", self.handling_events)
        return local

    def _past(self, frame: Any, covered: str) -> bool:
        """Whether this event lies past the point named by the attribute ``covered``, where
        an earlier trip was raised (a trip at any event up to it is raised there too)."""
        point = getattr(self, covered)
        if point is None or self._skipping >= COVERED_WITHIN:
            return True
        self._skipping += 1
        activation, _, offset = self._point(frame)
        covered_activation, _, covered_offset = point
        # Before the frame it was raised in starts, every event is before it;
        # then, that frame's events up to it.
        if self._calls < covered_activation or (
            activation == covered_activation and offset <= covered_offset
        ):
            return False
        setattr(self, covered, None)
        return True

    def _point(self, frame: Any) -> Point:
        return (self._activations.get(frame, 0), frame.f_code, frame.f_lasti)

    def _consumer_called(self, frame: Any) -> bool:
        while frame is not None and in_package(frame):
            frame = frame.f_back
        return frame is not None and frame.f_code in self.consumer_codes

    def _trip(self, frame: Any, state: str, event: int) -> None:
        self.landings.append(Landing(event, describe(frame)))
        self.state = state
        sys.settrace(_untraced)
        caller = frame
        while caller is not None:
            caller.f_trace = None
            caller = caller.f_back
        _untraced.keywords["file"].seek(0)
        _untraced.keywords["file"].truncate()
        self._token = _Token()
        self._refs.append(_TripRef(self._token, _fire))
        # None: this frame stays untraced until the handler runs.

    # -- the signal handler ----------------------------------------------

    def on_sigint(self, signum: int, frame: Any) -> None:
        if self.stall:
            raise Stalled
        if self.state not in ("tripped1", "tripped2"):
            raise KeyboardInterrupt  # a real Ctrl-C
        landing = self.landings[-1]
        if frame is not None:
            landing.raised_at = describe(frame)
            if in_package(frame):
                if frame not in self._activations:  # it started while no frame was traced
                    self._calls += 1
                    self._activations[frame] = self._calls
                landing.point = self._point(frame)
        else:
            landing.raised_at = "outside Python code"
        self.state = "handling1" if self.state == "tripped1" else "handling2"
        self._resume_tracing(frame)
        error = Injected(str(landing))
        self.raised.append(error)
        raise error

    def _resume_tracing(self, frame: Any) -> None:
        sys.settrace(self.trace)
        while frame is not None:
            if in_package(frame):
                frame.f_trace_opcodes = True
                frame.f_trace_lines = False
                frame.f_trace = self._target if self._consumer_called(frame) else self._plain
            frame = frame.f_back

    def caught(self, error: BaseException) -> None:
        """The consumer caught ``error``: the interrupt being handled has left the package."""
        self.caught_last = error
        if self.state in ("handling1", "handling2"):
            self.state = "done"
            sys.settrace(None)


def installed(injector: Injector) -> Callable[[], None]:
    """Start ``injector`` in the calling (main) thread; returns the function that stops it."""
    previous = signal.signal(signal.SIGINT, injector.on_sigint)
    # 3.12 reports opcode events only if some frame asked for them before
    # settrace; this frame is not traced, so it costs nothing.
    sys._getframe().f_trace_opcodes = True
    sys.settrace(injector.trace)

    def stop() -> None:
        sys.settrace(None)
        signal.signal(signal.SIGINT, previous)

    return stop


class Watchdog:
    """Interrupts the main thread when ``progress()`` stops changing: sets ``injector.stall``
    and sends ``signum``, whose handler then raises (``Injector.on_sigint`` raises ``Stalled``)."""

    def __init__(
        self, injector: Injector, progress: Callable[[], int], signum: int = signal.SIGINT
    ) -> None:
        self.injector = injector
        self.signum = signum
        self.progress = progress
        self.done = threading.Event()
        self.main = threading.main_thread().ident
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        last = self.progress()
        while not self.done.wait(STALL_S):
            now = self.progress()
            if now != last:
                last = now
                continue
            self.injector.stall = True
            # Repeated: free-threaded 3.13 can miss a signal sent while the
            # main thread waits.
            while not self.done.wait(STALL_S / 10):
                signal.pthread_kill(self.main, self.signum)
            return

    def stop(self) -> None:
        self.done.set()
        self.thread.join(STALL_S)


# -- consumers -------------------------------------------------------------
# ``list.extend`` appends each item in C as ``__next__`` returns it: no signal
# can be handled in between, so an item missing from ``received`` was lost by
# the package, never by the consumer's own code.


def consume(bg: Any, received: list, injector: Injector, on_interrupt: Callable) -> None:
    """Iterate to the end, catching each injected interrupt and going on (a
    signal-based time limit, a notebook user pressing Ctrl-C and iterating
    again); a second one may land in the handler of the first."""
    while True:
        try:
            try:
                received.extend(bg)
                return
            except Injected as error:
                injector.caught(error)
                on_interrupt()
        except Injected as error:
            injector.caught(error)
            on_interrupt()


async def consume_async(
    bg: Any, received: list, injector: Injector, on_interrupt: Callable
) -> None:
    """``consume`` for an ``async for`` loop."""
    while True:
        try:
            try:
                async for item in bg:
                    received.append(item)
                return
            except Injected as error:
                injector.caught(error)
                on_interrupt()
        except Injected as error:
            injector.caught(error)
            on_interrupt()


CONSUMER_CODES = frozenset({consume.__code__, consume_async.__code__})


# -- checks -----------------------------------------------------------------


def no_waiter_left(bg, problems):
    """What a lone consumer checks each time it catches an interrupt: it waits no more, so
    no waiter of its own may stay registered and not abandoned (a producer would wake it
    instead of a live consumer). Once the stream ended, the producer wakes each waiter
    before it takes it off the list: those are not counted."""

    def check():
        channel = bg._channel
        zombies = [w for w in channel.waiters if not getattr(w, "abandoned", False)]
        if zombies and not channel.ended and not RECOVERY_CAN_BE_CUT:
            problems.append(f"{len(zombies)} waiter(s) registered after next() raised")

    return check


class Counting:
    """A source whose ``state_dict()`` is how many items it has yielded (a new dict each call)."""

    def __init__(self, items):
        self.items, self.yielded = items, 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.yielded == self.items:
            raise StopIteration
        self.yielded += 1
        return self.yielded - 1

    def state_dict(self):
        return {"yielded": self.yielded}


# -- runs ------------------------------------------------------------------


@dataclass
class Run:
    """One run of a scenario: what it found wrong, and where its interrupts landed."""

    injector: Injector
    problems: List[str]

    def report(self, scenario: str) -> str:
        landings = "; ".join(
            f"{which} {landing}"
            for which, landing in zip(("first", "second"), self.injector.landings)
        )
        return f"[{scenario}] {landings or 'no interrupt'}: " + "; ".join(self.problems)


def run_in_main(
    injector: Injector, progress: Callable[[], int], body: Callable[[], None]
) -> List[str]:
    """Run ``body`` in the main thread under ``injector``, bounded by a watchdog."""
    watchdog = Watchdog(injector, progress)
    stop = installed(injector)
    try:
        body()
    except Stalled:
        return [f"stuck: no progress for {STALL_S} s"]
    except Exception as error:
        return [f"the consumer got {error!r}"]
    finally:
        stop()
        watchdog.stop()
    return []


def run_async_in_main(injector: Injector, bg: Any, received: list) -> List[str]:
    """Run ``consume_async`` over ``bg`` on an event loop in the main thread, under
    ``injector`` and bounded by a watchdog; returns the problems found."""
    problems: List[str] = []
    loop = asyncio.new_event_loop()
    task = loop.create_task(consume_async(bg, received, injector, no_waiter_left(bg, problems)))

    def run_the_loop() -> None:
        while True:
            try:
                loop.run_until_complete(task)
                return
            except Injected as error:  # landed in the event loop, not in the task
                injector.caught(error)

    try:
        problems += run_in_main(injector, lambda: len(received), run_the_loop)
    finally:
        if not task.done():
            task.cancel()
            loop.run_until_complete(asyncio.wait([task], timeout=STALL_S))
        loop.close()
    return problems


def check_the_end(bg: Any, injector: Injector) -> List[str]:
    """What every run must leave: a finished worker, no waiter, every interrupt received."""
    problems = []
    bg._worker.thread.join(STALL_S)
    if bg._worker.thread.is_alive():
        problems.append("the worker never finished")
    if bg._channel.waiters:
        problems.append(f"{len(bg._channel.waiters)} waiter(s) left registered")
    # (Before 3.11 a second interrupt can replace the first where the tracer
    # cannot see it; only the exact versions are held to this.)
    if (
        not RECOVERY_CAN_BE_CUT
        and injector.raised
        and injector.caught_last is not injector.raised[-1]
    ):
        problems.append("an injected interrupt never reached the consumer")
    if not injector.landings and getattr(bg._channel, "missed_wakeups", 0):
        problems.append(f"{bg._channel.missed_wakeups} missed wake-up(s) without interrupts")
    bg.close(timeout=STALL_S)
    return problems


# Before 3.11 CPython handles a signal at nearly every bytecode: on 3.8 and
# 3.9 between a ``for`` loop's next item and its store to the loop variable,
# and on every version before 3.11 on the few bytecodes of a recovery before
# its first call. There an interrupt (3.8, 3.9) or a second one (3.10) can
# lose the item being taken or put back (the saved state then counts it as
# delivered), or leave a waiter listed, whose wake-up the re-check then
# recovers (docs/interrupts.md). The rest holds on every version: nothing
# twice, nothing out of order, no hang.
RECOVERY_CAN_BE_CUT = sys.version_info < (3, 11)


def check_in_order(received: List[Any], expected: List[Any]) -> List[str]:
    if received == expected:
        return []
    if RECOVERY_CAN_BE_CUT and set(received) <= set(expected) and received == sorted(set(received)):
        return []
    return [f"received {received}, expected {expected}"]


@dataclass
class Exploration:
    scenario: str
    runs: int = 0
    pairs: int = 0
    failures: List[str] = field(default_factory=list)
    # failing runs by window: where each interrupt was raised, and what went wrong
    windows: Dict[Tuple[str, ...], List[str]] = field(default_factory=dict)

    def summary(self, most: int = 30) -> str:
        lines = [f"{len(self.failures)} failing runs in {len(self.windows)} windows:"]
        for key, reports in list(self.windows.items())[:most]:
            lines.append(f"{len(reports)} x {' | '.join(key)}\n    e.g. {reports[0]}")
        return "\n".join(lines)


def explore(
    name: str, scenario: Callable[[Injector], List[str]], max_failures: Optional[int] = 10
) -> Exploration:
    """Run ``scenario`` with a first interrupt at each point, and for each a second one at
    each point reached while the first is handled (see the module docstring)."""
    found = Exploration(name)

    def attempt(injector: Injector) -> Injector:
        injector.consumer_codes = CONSUMER_CODES
        # No finaliser of an earlier run's garbage may run in this one's frames.
        if found.runs % 64 == 0:
            gc.collect()
        gc.disable()
        try:
            problems = scenario(injector)
        finally:
            gc.enable()
        found.runs += 1
        found.pairs += len(injector.landings) == 2
        if problems:
            report = Run(injector, problems).report(name)
            found.failures.append(report)
            raised = tuple(f"raised at {landing.raised_at}" for landing in injector.landings)
            kinds = tuple(sorted({re.sub(r"\[.*\]|\{.*\}|\d+", "#", p) for p in problems}))
            found.windows.setdefault(raised + kinds, []).append(report)
        return injector

    def enough() -> bool:
        return max_failures is not None and len(found.failures) >= max_failures

    for _ in range(3):  # without interrupts
        attempt(Injector(None))
    first, covered = 1, None
    while not enough():
        alone = attempt(Injector(first, covered=covered))
        if not alone.landings:
            break
        landing = alone.landings[0]
        second, second_covered = 1, None
        while not enough():
            pair = attempt(Injector(landing.event, second, second_covered=second_covered))
            if len(pair.landings) < 2:
                break
            second, second_covered = pair.landings[1].event + 1, pair.landings[1].point
        first, covered = landing.event + 1, landing.point
    return found
