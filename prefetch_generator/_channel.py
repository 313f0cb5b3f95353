"""The bounded hand-off between one producer thread and any number of consumers.

A ``Channel`` carries items from the worker thread to the threads (or event
loops) that receive them, then exactly one ending: the end of the source, the
exception it raised, or a stop. It promises:

* Order and exactness: every item sent is received once, in order, unless the
  channel is closed first; then the items still buffered are discarded.
* A bound: after ``send_all`` appends an item it takes the next one from its
  iterator only while fewer than ``capacity`` items are buffered, so at most
  ``capacity`` items are ever taken and not yet received.
* No lost ending: once the buffer is drained, every receiver sees the ending.
  An exception (any ``BaseException``, the same object, falsy ones included)
  is raised in exactly one receiver; the others, and every later call, get
  ``StopIteration``.
* No lost wake-up, under any interleaving.

How: there is no lock around the state. Every shared change is one C-level
call that is atomic with or without the GIL (``deque.append``/``popleft``/
``remove``, ``Lock.acquire``/``release``) or one attribute store. A side that
goes to sleep first publishes that it is sleeping (the producer sets
``parked`` and then blocks on its park lock; a consumer lists a waiter in
``waiters``), then checks its condition again, then sleeps. A side that
changes the condition does so first, then looks for sleepers. Whatever the
interleaving, one of the two sees the other. Wake-ups may be spurious: every
sleeper checks again. A waiter belongs to whoever takes it off ``waiters``
first (``deque.remove`` succeeds for one caller only): one waker, which then
wakes it, or the waiter itself, which then waits no more.

Bounded sleeps: no sleep depends on a wake-up alone. Every sleeper re-checks
its condition each ``RECHECK_S``; one that finds work twice running goes on
without its wake-up. A wake-up lost for any reason (an interrupt in recovery
code, a memory-ordering gap without the GIL, a bug nobody has found) so
costs at most ``2 * RECHECK_S``, never a hang. Where the re-check sees that
a wake-up was owed and never sent (a producer with room; a waiter that a
waker took off the list and never woke), it counts it in
``missed_wakeups``: without interrupts the count stays 0, and the tests
assert it. (Items that wait while a waiter is still listed may be meant for
a consumer woken earlier and slow to run, as on a busy machine: that waiter
goes on, uncounted.) A producer parked on a full buffer also stops at a
re-check that finds its ``owner`` (the object consumers hold, by weak
reference) dropped, should the finaliser's stop request have been lost to a
signal handler raising in it. An idle sleeper wakes ten times a second,
about 15 us of CPU each: 0.01 CPU seconds per idle minute
(``benchmarks/idle_cost.py``).

Interrupts: a signal handler (Ctrl-C, a signal-based time limit) may raise
at any point where CPython handles signals: from 3.11 on, a Python function's
entry, a backward jump and the end of a call; before 3.11, nearly any
bytecode. So every recovery restores its invariant with its first C-level
call, before any Python-level one: a receiver puts an item it took back at
the front with ``items.appendleft``; an interrupted waiter takes itself off
the list with ``waiters.remove`` (and, if a waker took it first, hands the
wake-up on). An item is
taken by a ``for`` loop, so from 3.10 on no interrupt lands between the
taking and the store (see ``_taker``). What a second interrupt can still cut
short is a wake-up (a receiver clearing ``parked`` before it releases the
park lock, a waiter handing a wake-up on): the re-check bounds that.

Counting, for ``stats()``: the producer counts its appends with a tally it
advances in the same C call as each append, and items discarded are counted
by whoever pops them out of a closed buffer (``drain``), with a tally
published before the first pop. Every count is exact once the items have
stopped moving, with or without the GIL, and costs no bytecode per item.

``request_stop`` is safe inside a finaliser or a signal handler, in any
thread: attribute stores, a ``Lock.release`` and a ``deque.clear``, none of
which waits for another thread.

Latency: when the producer holds the GIL (pure-Python work per item), a
consumer it wakes would wait up to the switch interval (5 ms) for the GIL. So
after waking a consumer that slept longer than ``HANDOFF_AFTER_S``, the
producer blocks until that consumer reports that it runs, for at most
``HANDOFF_TIMEOUT_S``. Without a GIL both run at once and nobody waits.
Instead, a consumer that finds the buffer empty first polls it for up to
``SPIN_S``, unless its last sleep took longer than
``SPIN_AFTER_SLEEPS_UNDER_S`` (a slow producer): when the
producer is about as fast as the consumer, the next item then arrives
without a sleep and a wake-up, each of which costs 10-25 us. (With the GIL,
polling would only keep the producer from running.)
"""

import sys
from collections import deque
from itertools import repeat
from threading import Lock, get_ident
from time import perf_counter
from typing import Any, Callable, Iterator, Optional

from ._stats import Stats

RECHECK_S = 0.1
HANDOFF_AFTER_S = 200e-6
HANDOFF_TIMEOUT_S = 5e-3
GIL_ENABLED: bool = getattr(sys, "_is_gil_enabled", lambda: True)()
SPIN_S = 0.0 if GIL_ENABLED else 20e-6
SPIN_AFTER_SLEEPS_UNDER_S = 100e-6

# A tally's steps: 2**63 - 1, or 2**31 - 1 on 32-bit builds, where an endless
# source can reach it (``send_all`` then starts a new tally). No buffer can
# hold that many items, so one tally always covers a drain.
TALLY_LIMIT = sys.maxsize

NOTHING = object()
"""What a receiver's ``entry`` holds until it has taken an item."""


class ThreadWaiter:
    """A consumer thread asleep in ``wait``; ``wake`` may be called from any thread.

    It sleeps on a ``Lock`` of its own: on free-threaded builds acquiring one
    spins briefly before it sleeps, which catches a prompt wake-up without a
    sleep (a round trip 25 us against a ``SimpleQueue``'s 53-59 us, measured by
    ``benchmarks/wake_cost.py`` on a 2-vCPU VM); with the GIL the two cost
    the same in the hand-off.
    """

    __slots__ = ("woken", "since", "handoff")

    def __init__(self) -> None:
        self.woken = Lock()  # released once, by the waker that took it off the list
        self.woken.acquire()
        self.since = perf_counter()
        self.handoff = False

    def wake(self, handoff: bool = False) -> bool:
        """Wake the thread; with ``handoff``, ask it to report when it runs if it
        slept long. Always True: it was there to wake."""
        self.handoff = handoff and perf_counter() - self.since > HANDOFF_AFTER_S
        self.woken.release()
        return True


class LoopWaiter:
    """A coroutine awaiting an item; ``wake`` resolves its future on its event loop."""

    __slots__ = ("loop", "future", "since")
    handoff = False

    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self.future = loop.create_future()
        self.since = perf_counter()

    def wake(self, handoff: bool = False) -> bool:
        """Resolve the future from any thread; False if its loop is closed (nobody
        to wake)."""
        try:
            self.loop.call_soon_threadsafe(_resolve, self.future)
        except RuntimeError:
            return False
        return True


def _taker(items: deque) -> Iterator[Any]:
    """An iterator that pops ``items`` from the left, raising IndexError when empty.

    Receivers take items with ``for item in taker:`` rather than calling
    ``items.popleft()``: the interpreter handles signals at the end of a call,
    where a Ctrl-C would lose the item just taken, but from Python 3.10 on
    never between a ``for`` loop's next item and its store to the loop
    variable. (Python 3.8 and 3.9 can: there a Ctrl-C landing exactly
    between the two loses that item.)
    """
    return map(type(items).popleft, repeat(items))


def _tally() -> Iterator[None]:
    """A counter advanced in C: ``zip`` it with an iterator, read it with ``_count``.

    It stops after ``TALLY_LIMIT`` steps.
    """
    return repeat(None, TALLY_LIMIT)


def _count(tally: Iterator[None]) -> int:
    """How many times ``tally`` has been advanced."""
    return TALLY_LIMIT - tally.__length_hint__()  # type: ignore[attr-defined]


def _always_held() -> object:
    """The ``owner`` of a channel used on its own: never dropped."""
    return True


def _resolve(future: Any) -> None:
    if not future.done():
        future.set_result(None)


class Channel:
    """A bounded single-producer, multi-consumer hand-off with one ending."""

    def __init__(self, capacity: float) -> None:
        self.capacity = capacity
        self.items: deque = deque()
        self.closed = False  # whether close() ran: nothing more is handed out
        self.taker = _taker(self.items)
        self.waiters: deque = deque()
        self.parked = False
        # Locked while no wake-up is pending: the producer parks by acquiring
        # it; any number of releases before it does make one wake-up.
        self._park = Lock()
        self._park.acquire()
        # Released by a consumer that was asked to report that it runs.
        self._consumer_resumed = Lock()
        self._consumer_resumed.acquire()
        self.producer_thread: Optional[int] = None
        self.appending = True  # until send_all returns: the producer may append
        self.stop_requested = False
        self.ended = False
        self.errors: deque = deque()
        # Why close() ended the stream, when receivers must not take it for
        # the source's end (the interpreter is exiting): raised to every one.
        self.closed_because: Optional[str] = None
        # (items counted by earlier tallies, the current tally), replaced
        # whole, so a reader takes both with one attribute load. ``send_all``
        # advances the tally once per item, right after appending it, inside
        # the same C call: counting costs no bytecode per item. Only the
        # producer advances it, so ``produced`` is exact with or without the GIL.
        self._appended = (0, _tally())
        # A tally per discarding (a close, the producer's last appends, an
        # item put back too late): ``list.append`` is atomic, where ``+=`` on
        # a shared attribute can lose a count between threads.
        self._discards: list = []
        self.missed_wakeups = 0
        # Wake-ups a re-check found owed and never sent (``_sleep_on``): a
        # producer with room and no wake-up, a waiter taken off the list and
        # never woken. 0 unless an interrupt cut a wake-up short, or the
        # protocol has a bug; without the GIL two at once may count as one.
        self.started_at = perf_counter()
        self.producer_wait_s = 0.0
        self.consumer_wait_s = 0.0
        self.spin_s = SPIN_S  # how long the next consumer to run dry polls first
        # A weak reference to the object consumers hold (see ``_wait_for_space``).
        self.owner: Callable[[], object] = _always_held

    @property
    def produced(self) -> int:
        """Items appended to the buffer so far."""
        earlier, tally = self._appended
        return earlier + _count(tally)

    @property
    def discarded(self) -> int:
        """Items appended but never handed out, because the channel was closed first."""
        return sum(map(_count, self._discards))

    def statistics(self) -> Stats:
        """A snapshot of the counters; thread-safe, never blocks.

        Exact once items stop moving. Read in the order items move (appended,
        buffered, discarded), so that an item moving meanwhile is counted
        twice rather than not at all: ``consumed`` can only be understated.
        """
        produced = self.produced
        buffered = len(self.items)
        return Stats(
            produced=produced,
            consumed=max(0, produced - self.discarded - buffered),
            buffered=buffered,
            consumer_wait_s=self.consumer_wait_s,
            producer_wait_s=self.producer_wait_s,
            elapsed_s=perf_counter() - self.started_at,
        )

    # -- producer side ---------------------------------------------------

    def send_all(self, iterator: Iterator[Any]) -> bool:
        """Buffer ``iterator``'s items, blocking while the buffer is full.

        Returns True when the iterator is exhausted, False as soon as a stop
        is requested: the caller must then stop taking items from its source
        (and ``close()`` discards what is buffered). Exceptions from the
        iterator propagate. Call from one producer thread only.
        """
        self.producer_thread = get_ident()
        items = self.items
        try:
            # After a stop, nothing more is taken from the source.
            return not self.stop_requested and self._send_all(iterator, items)
        finally:
            self.producer_thread = None  # thread idents are reused once a thread ends
            self.appending = False
            if self.closed:
                # close() leaves emptying the buffer to the producer while
                # the producer may still append to it.
                self.drain(items)

    def _send_all(self, iterator: Iterator[Any], items: deque) -> bool:
        waiters = self.waiters
        appended = map(items.append, iterator)
        while True:
            earlier, tally = self._appended
            # Each step checks the bound, then takes the source's next item
            # and appends it, then advances the tally: one C call. The bound
            # stops the loop before a step the tally could not count.
            for step in zip(repeat(None, TALLY_LIMIT), appended, tally):
                del step  # the last reference: zip reuses the tuple for the next step
                if waiters:
                    self.wake_consumers(handoff=GIL_ENABLED)
                # A stop sets capacity to 0, so this one check per item also
                # notices a stop within one source step.
                if len(items) >= self.capacity and not self._wait_for_space(items):
                    return False
            if _count(tally) < TALLY_LIMIT:
                return True  # the source ran out before the bound
            self._appended = (earlier + TALLY_LIMIT, _tally())

    def finish(self, error: Optional[BaseException] = None) -> None:
        """Send the ending: the source is exhausted, or raised ``error``."""
        if error is not None:
            self.errors.append(error)
        self.ended = True
        if self.stop_requested:
            self.errors.clear()  # a stop that raced this call wins
        self.wake_consumers(every=True)

    def _wait_for_space(self, items: deque) -> bool:
        try:
            while True:
                self.parked = True
                if self.stop_requested:
                    return False
                if len(items) < self.capacity:
                    return True
                started = perf_counter()
                woken = self._sleep_on(
                    self._park,
                    lambda: (
                        self.stop_requested or len(items) < self.capacity or self.owner() is None
                    ),
                )
                self.producer_wait_s += perf_counter() - started
                if not woken:
                    # A receiver made room (or a stop was asked) and its
                    # wake-up never came.
                    self.count_missed_wakeup()
                    if self.owner() is None:
                        # Dropped, and the finaliser's stop request was lost
                        # (a signal handler raised inside it): stop all the same.
                        self.request_stop()
        finally:
            self.parked = False

    def _sleep_on(self, lock: Any, has_work: Callable[[], bool]) -> bool:
        """Acquire ``lock``, the wake-up, checking ``has_work()`` every ``RECHECK_S``.

        Returns True once the wake-up comes, or False once ``has_work()`` has
        held for two intervals without it: the caller then checks its
        condition as after any wake-up.
        """
        while not lock.acquire(timeout=RECHECK_S):
            if has_work():
                # The wake-up may still be on its way (its sender preempted
                # between changing the state and waking): one interval more.
                return lock.acquire(timeout=RECHECK_S)
        return True

    def count_missed_wakeup(self) -> None:
        """Count a wake-up that a re-check found owed and never sent."""
        self.missed_wakeups += 1

    def wake_consumers(self, handoff: bool = False, every: bool = False) -> None:
        """Wake the first waiter (``every``: all of them).

        A waiter is taken off the list before it is woken, so a consumer that
        runs again is off the list; an interrupt in between leaves it to its
        re-check. (No copy of the list: without the GIL, copying a deque that
        another thread changes raises RuntimeError.)
        """
        waiters = self.waiters
        while True:
            try:
                waiter = waiters[0]
                waiters.remove(waiter)
            except IndexError:
                return  # nobody waits
            except ValueError:
                continue  # it took itself off, or another waker took it, meanwhile
            if waiter.wake(handoff) and not every:
                break
        if waiter.handoff:
            # Give the GIL to the consumer now rather than at the next forced
            # switch; bounded, in case it was interrupted before reporting.
            # (A Lock: its timeout holds when a signal reaches this thread,
            # where SimpleQueue.get's could wait for ever on CPython <= 3.12.)
            self._consumer_resumed.acquire(timeout=HANDOFF_TIMEOUT_S)

    # -- consumer side ---------------------------------------------------

    def after_put_back(self) -> None:
        """Finish returning an item that an interrupt kept from its receiver.

        The receiver has already put it back at the front of ``items``: if
        the channel was closed meanwhile, it is discarded with the buffer.
        """
        if self.closed and not self.appending:
            self.drain(self.items)

    def wait(self) -> None:
        """Block until an item may be buffered; once the stream has ended and the
        buffer is drained, raise the ending instead.

        Takes nothing itself: an item is taken only in the frame that returns
        it (``BackgroundGenerator.__next__``), so that an interrupt cannot
        strand it. The sleep re-checks the buffer every ``RECHECK_S``, so a
        lost wake-up costs at most two intervals. Raises RuntimeError when
        called from the producer thread (from inside the source), where
        waiting would deadlock.
        """
        self.raise_if_drained()
        if self.spin_s and self._poll(self.spin_s):
            return
        waiter = ThreadWaiter()
        try:
            self.register(waiter)
            if not self.items and not self.ended:
                # A receiver interrupted between clearing ``parked`` and
                # waking the producer leaves it parked on a buffer with room.
                self.wake_producer()
                self._sleep(waiter)
            self.unlist(waiter)  # it did not sleep, or a re-check ended its sleep
        except BaseException:
            # First, in one C call: off the list, no waker counts on it. If a
            # waker took it off first, a wake-up may have been sent to it:
            # hand it on (at worst a spurious one).
            try:
                self.waiters.remove(waiter)
            except ValueError:
                self.wake_consumers()
            raise

    def _sleep(self, waiter: ThreadWaiter) -> None:
        woken = self._sleep_on(
            waiter.woken, lambda: waiter not in self.waiters or bool(self.items) or self.ended
        )
        if not woken and waiter not in self.waiters:
            # A waker took it off the list and never woke it. (Items that
            # wait while it is still listed may be meant for a consumer woken
            # before it and slow to run: it goes on, but that is no miss.)
            self.count_missed_wakeup()
        if waiter.handoff:
            try:
                self._consumer_resumed.release()
            except RuntimeError:
                pass  # a report the producer did not wait for is pending already
        slept = perf_counter() - waiter.since
        self.consumer_wait_s += slept
        self.spin_s = SPIN_S if slept < SPIN_AFTER_SLEEPS_UNDER_S else 0.0

    def register(self, waiter: Any) -> None:
        """List ``waiter`` to be woken by the next item or the ending.

        Raises RuntimeError in the producer thread (from inside the source),
        where waiting would deadlock.
        """
        if get_ident() == self.producer_thread:
            raise RuntimeError(
                "a BackgroundGenerator was iterated from inside its own source: "
                "it would wait for itself"
            )
        self.waiters.append(waiter)

    def unlist(self, waiter: Any) -> None:
        """Take ``waiter`` off the list, if no waker took it off first."""
        try:
            self.waiters.remove(waiter)
        except ValueError:
            pass  # taken off by its waker

    def _poll(self, timeout: float) -> bool:
        """Whether an item or the ending comes within ``timeout``, polling for it."""
        started = perf_counter()
        deadline = started + timeout
        items = self.items
        while not items and not self.ended and perf_counter() < deadline:
            pass
        self.consumer_wait_s += perf_counter() - started
        return bool(items) or self.ended

    def raise_if_drained(self) -> None:
        """Raise the ending (the source's exception once, else StopIteration) if the
        stream has ended and nothing is buffered."""
        # The producer appends its last item, then ends; close() ends at once.
        if self.ended and (self.closed or not self.items):
            if self.closed_because is not None:
                raise RuntimeError(self.closed_because)
            error = None
            try:
                # Taken by a ``for`` loop and raised in its body, as items are
                # taken (see ``_taker``): a Ctrl-C cannot land in between.
                for error in _taker(self.errors):
                    raise error
            except IndexError as raised:
                if raised is error:
                    raise  # the source's own IndexError
            raise StopIteration

    def wake_producer(self) -> None:
        """Wake the producer if it is parked on a full buffer, or will park; any thread."""
        self.parked = False  # one wake-up per parking: later receivers skip this call
        try:
            self._park.release()
        except RuntimeError:
            pass  # a wake-up is pending already

    # -- either side -----------------------------------------------------

    def request_stop(self) -> None:
        """Ask the producer to stop, and drop the source's error; returns at once.

        After a stop nobody receives the error (``finish`` drops one sent
        later). Dropping it here rather than leaving it to the garbage
        collector matters: its traceback holds the worker's frames, and they
        hold this channel. Safe inside a finaliser or a signal handler, in any
        thread.
        """
        self.stop_requested = True
        self.capacity = 0
        self.wake_producer()
        self.errors.clear()

    def close(self, because: Optional[str] = None) -> None:
        """Stop now: discard buffered items, end the stream, wake everyone.

        With ``because``, receivers get ``RuntimeError(because)`` instead of
        ``StopIteration``, every time. Not for finalisers (see ``request_stop``).
        """
        if because is not None:
            self.closed_because = because
        self.request_stop()
        # One statement, so that no interrupt can leave receivers with
        # neither items nor the ending: from here on nothing is handed out
        # (but by a receiver that read ``taker`` before: it pops from the
        # left, so what it takes is still the stream's next item).
        self.taker, self.closed, self.ended = iter(()), True, True
        if not self.appending:
            # Emptied only once the producer appends no more: an item it
            # appended after the emptying would reach a receiver that read
            # ``taker`` before, after a gap. Until then the producer empties
            # it itself, when ``send_all`` returns.
            self.drain(self.items)
        self.wake_consumers(every=True)

    def drain(self, items: deque) -> None:
        """Empty ``items`` from the right, counting what it removes as discarded.

        Receivers pop from the left, so what they take meanwhile is still a
        prefix of the stream, and each item is popped by one thread only, so
        it is counted once. The tally is published before the first pop, and
        popping and counting are one C call, so a signal handler raising in
        between cannot lose a count. The items removed are released only
        once all are counted: a finaliser of theirs cannot run (and, with the
        GIL, let another thread read the counts) between a pop and its count.
        """
        if not items:
            return  # so that repeated close() calls add nothing
        removed = _tally()
        self._discards.append(removed)
        kept: deque = deque()
        try:
            kept.extend(zip(map(type(items).pop, repeat(items)), removed))
        except IndexError:
            pass  # empty now

    def on_fork_in_child(self) -> None:
        """End a copy inherited by a forked child, where its producer does not exist.

        Its receivers get an error, not the end: the stream did not end.
        """
        self.appending = False
        self._park = Lock()
        self._park.acquire()
        self.waiters = deque()
        self._consumer_resumed = Lock()
        self._consumer_resumed.acquire()
        self.close(
            because="this BackgroundGenerator was created in the parent process before "
            "os.fork(), and its worker thread does not exist in this child: create it "
            "in the process that iterates it"
        )
