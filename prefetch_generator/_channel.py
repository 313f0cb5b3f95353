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
``remove``, ``SimpleQueue.put``/``get``, ``Lock.acquire``/``release``) or one
attribute store. A side that goes to sleep first publishes that it is sleeping (the
producer sets ``parked`` and then blocks on its park lock; a consumer appends
a waiter to ``waiters``), then checks its condition again, then sleeps. A side that
changes the condition does so first, then looks for sleepers. Whatever the
interleaving, one of the two sees the other. Wake-ups may be spurious: every
sleeper checks again.

Interrupts: a signal handler (Ctrl-C) may raise between any two bytecodes of
a receiver. A receiver that clears ``parked`` releases the park lock next; if
it is interrupted in between, the producer sleeps only until some receiver
is about to sleep itself, which always releases the park lock first. An
interrupted waiter takes itself back and hands on a wake-up it was sent. An
item taken from the buffer goes back to the front if the interrupt lands
before it is returned (and it is taken by a ``for`` loop, so from Python
3.10 on it cannot land between the taking and the store; see ``_taker``).
And a producer about to park on a full buffer wakes every registered
waiter, so even a waiter that an interrupt left registered cannot hold the
stream.

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
from queue import Empty, SimpleQueue
from threading import Lock, get_ident
from time import perf_counter
from typing import Any, Iterator, Optional

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
"""What ``take`` returns when no item is buffered."""


class ThreadWaiter:
    """A consumer thread asleep in ``wait``; ``wake`` may be called from any thread.

    It sleeps on a ``Lock`` of its own: on free-threaded builds acquiring one
    spins briefly before it sleeps, which catches a prompt wake-up without a
    sleep (a round trip 25 us against a ``SimpleQueue``'s 53-59 us, measured by
    ``benchmarks/wake_cost.py`` on a 2-vCPU VM); with the GIL the two cost
    the same in the hand-off.
    """

    __slots__ = ("woken", "since", "handoff", "abandoned")

    def __init__(self) -> None:
        self.woken = Lock()  # released by the first wake-up
        self.woken.acquire()
        self.since = perf_counter()
        self.handoff = False
        self.abandoned = False

    def wake(self, handoff: bool = False) -> bool:
        """Wake the thread; with ``handoff``, ask it to report when it runs if it slept long.

        Returns False if it no longer waits (``abandoned``): wake another.
        """
        if self.abandoned:
            return False
        self.handoff = handoff and perf_counter() - self.since > HANDOFF_AFTER_S
        try:
            self.woken.release()
        except RuntimeError:
            pass  # woken already
        return True


class LoopWaiter:
    """A coroutine awaiting an item; ``wake`` resolves its future on its event loop."""

    __slots__ = ("loop", "future", "since", "abandoned")
    handoff = False

    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self.future = loop.create_future()
        self.since = perf_counter()
        self.abandoned = False

    def wake(self, handoff: bool = False) -> bool:
        """Resolve the future from any thread; False if its loop is closed or it was
        ``abandoned`` (nobody to wake)."""
        if self.abandoned:
            return False
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
        self.producer_thread: Optional[int] = None
        self.appending = True  # until send_all returns: the producer may append
        self.stop_requested = False
        self.ended = False
        self.errors: deque = deque()
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
        self.started_at = perf_counter()
        self.producer_wait_s = 0.0
        self.consumer_wait_s = 0.0
        self.spin_s = SPIN_S  # how long the next consumer to run dry polls first
        self._consumer_resumed: SimpleQueue = SimpleQueue()

    @property
    def produced(self) -> int:
        """Items appended to the buffer so far."""
        earlier, tally = self._appended
        return earlier + _count(tally)

    @property
    def discarded(self) -> int:
        """Items appended but never handed out, because the channel was closed first."""
        return sum(map(_count, self._discards))

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
                    self._wake_consumer(handoff=GIL_ENABLED)
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
        self._wake_all_consumers()

    def _wait_for_space(self, items: deque) -> bool:
        try:
            while True:
                self.parked = True
                if self.stop_requested:
                    return False
                if len(items) < self.capacity:
                    return True
                if self.waiters:
                    # Consumers wait while the buffer is full: only waiters
                    # an interrupt left registered can be there. Wake them
                    # all, so they cannot swallow the wake-ups of live ones.
                    self._wake_all_consumers()
                started = perf_counter()
                self._park.acquire()
                self.producer_wait_s += perf_counter() - started
        finally:
            self.parked = False

    def _wake_consumer(self, handoff: bool = False) -> None:
        while True:
            try:
                waiter = self.waiters.popleft()
            except IndexError:
                return  # nobody waits, or another thread took the waiter first
            try:
                woke = waiter.wake(handoff)
            except BaseException:
                # Interrupted (this may run in a consumer's thread, handing a
                # wake-up on): listed again, it cannot be left asleep unseen.
                self.waiters.appendleft(waiter)
                raise
            if woke:
                break
        if waiter.handoff:
            # Give the GIL to the consumer now rather than at the next forced
            # switch; bounded, in case it was interrupted before reporting.
            try:
                self._consumer_resumed.get(timeout=HANDOFF_TIMEOUT_S)
            except Empty:
                pass

    # -- consumer side ---------------------------------------------------

    def take(self) -> Any:
        """Take the next item if one is buffered, else return ``NOTHING``; never blocks.

        ``BackgroundGenerator.__next__`` inlines this (one frame less per item).
        """
        item = NOTHING
        try:
            for item in self.taker:
                if self.parked:
                    self.wake_producer()
                return item
        except IndexError:
            pass
        except BaseException:
            if item is not NOTHING:
                self.put_back(item)
            raise
        return NOTHING

    def put_back(self, item: Any) -> None:
        """Return an item taken but never handed out (an interrupt came between)."""
        if self.stop_requested:  # after close() nothing is handed out any more
            self.drain(deque((item,)))
        else:
            self.items.appendleft(item)
            if self.closed and not self.appending:
                self.drain(self.items)  # close() ran meanwhile and emptied it before

    def wait(self) -> None:
        """Block until an item may be buffered; once the stream has ended and the
        buffer is drained, raise the ending instead.

        Takes nothing itself: an item is taken only in the frame that returns it
        (``take``), so that an interrupt cannot strand it in between. Raises
        RuntimeError when called from the producer thread (from inside the
        source), where waiting would deadlock.
        """
        self.raise_if_drained()
        if self.spin_s and self._poll(self.spin_s):
            return
        waiter = ThreadWaiter()
        try:
            if self.add_waiter(waiter):
                waiter.woken.acquire()
                waiter.abandoned = True  # should it be listed still, wake-ups skip it
                if waiter.handoff:
                    self._consumer_resumed.put(None)
                slept = perf_counter() - waiter.since
                self.consumer_wait_s += slept
                self.spin_s = SPIN_S if slept < SPIN_AFTER_SLEEPS_UNDER_S else 0.0
        except BaseException:
            self.withdraw(waiter)
            raise

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

    def add_waiter(self, waiter: Any) -> bool:
        """Register ``waiter`` to be woken by the next item or the ending.

        Returns False, with the waiter not registered, when there is no need
        to wait: an item is buffered or the stream has ended. Raises
        RuntimeError in the producer thread (from inside the source), where
        waiting would deadlock.
        """
        if get_ident() == self.producer_thread:
            raise RuntimeError(
                "a BackgroundGenerator was iterated from inside its own source: "
                "it would wait for itself"
            )
        self.waiters.append(waiter)
        if self.items or self.ended:
            self.withdraw(waiter)
            return False
        # A receiver interrupted between clearing ``parked`` and waking the
        # producer leaves it parked on a buffer with room: wake it, always.
        self.wake_producer()
        return True

    def withdraw(self, waiter: Any) -> None:
        """Take back a waiter that will not wait (interrupted, cancelled, satisfied).

        If it was already woken, the wake-up is handed on, so that no other
        waiter misses the item it announced. It is marked ``abandoned`` first,
        so that if this call is itself interrupted, wake-ups still skip it.
        """
        waiter.abandoned = True
        try:
            self.waiters.remove(waiter)
        except ValueError:
            self._wake_consumer()

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

    def close(self) -> None:
        """Stop now: discard buffered items, end the stream, wake everyone.

        Not for finalisers (see ``request_stop``).
        """
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
        self._wake_all_consumers()

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

    def _wake_all_consumers(self) -> None:
        # Each waiter is woken before it is taken off the list, so that an
        # interrupt in between (close() runs in a consumer's thread) leaves it
        # listed for the next call; a second wake-up of a waiter does nothing.
        # (No copy of the list: without the GIL, copying a deque that another
        # thread changes raises RuntimeError.)
        while True:
            try:
                waiter = self.waiters[0]
            except IndexError:
                return
            waiter.wake()
            try:
                self.waiters.remove(waiter)
            except ValueError:
                pass  # withdrawn, or taken by another waker, meanwhile

    def on_fork_in_child(self) -> None:
        """End a copy inherited by a forked child, where its producer does not exist."""
        self.appending = False
        self._park = Lock()
        self._park.acquire()
        self.waiters = deque()
        self._consumer_resumed = SimpleQueue()
        self.close()
