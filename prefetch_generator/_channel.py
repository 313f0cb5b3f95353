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

How: there is no lock. Every shared change is one C-level call that is atomic
with or without the GIL (``deque.append``/``popleft``/``remove``,
``SimpleQueue.put``/``get``) or one attribute store. A side that goes to sleep
first publishes that it is sleeping (the producer sets ``producer_waiting``; a
consumer appends a waiter to ``waiters``), then checks the condition again,
then sleeps. A side that changes the condition does so first, then looks for
sleepers. Whatever the interleaving, one of the two sees the other, so a
sleeper is always woken. Wake-ups may be spurious: every sleeper checks again.

Because nothing here takes a lock, nothing can deadlock when the garbage
collector runs a finaliser in the middle of a call, when a signal handler
raises in the middle of a call (an interrupted receiver takes its waiter back,
and hands on a wake-up it was sent), or when a lock would be left held.
``request_stop`` is safe inside a finaliser or a signal handler: a plain store
and ``SimpleQueue.put``, which CPython documents as reentrant for that use.

Latency: when the producer holds the GIL (pure-Python work per item), a
consumer it wakes would wait up to the switch interval (5 ms) for the GIL. So
after waking a consumer that slept longer than ``HANDOFF_AFTER_S``, the
producer blocks until that consumer reports that it runs, for at most
``HANDOFF_TIMEOUT_S``. Without a GIL both run at once and nobody waits.
"""

import sys
from collections import deque
from queue import Empty, SimpleQueue
from threading import get_ident
from time import perf_counter
from typing import Any, Iterator, Optional

HANDOFF_AFTER_S = 200e-6
HANDOFF_TIMEOUT_S = 5e-3
GIL_ENABLED: bool = getattr(sys, "_is_gil_enabled", lambda: True)()

NOTHING = object()
"""What ``poll`` returns when no item is buffered and the stream goes on."""


class ThreadWaiter:
    """A consumer thread asleep in ``receive``; ``wake`` may be called from any thread."""

    __slots__ = ("tokens", "since", "handoff")

    def __init__(self) -> None:
        self.tokens: SimpleQueue = SimpleQueue()
        self.since = perf_counter()
        self.handoff = False

    def wake(self, handoff: bool = False) -> bool:
        """Wake the thread; with ``handoff``, ask it to report when it runs.

        Returns whether it will report (it slept long enough to need it).
        """
        self.handoff = handoff and perf_counter() - self.since > HANDOFF_AFTER_S
        self.tokens.put(None)
        return self.handoff


class LoopWaiter:
    """A coroutine awaiting an item; ``wake`` resolves its future on its event loop."""

    __slots__ = ("loop", "future")

    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self.future = loop.create_future()

    def wake(self, handoff: bool = False) -> bool:
        try:
            self.loop.call_soon_threadsafe(_resolve, self.future)
        except RuntimeError:
            pass  # the loop is closed: nobody is left to wake
        return False


def _resolve(future: Any) -> None:
    if not future.done():
        future.set_result(None)


class Channel:
    """A bounded single-producer, multi-consumer hand-off with one ending."""

    def __init__(self, capacity: float) -> None:
        self.capacity = capacity
        self.items: deque = deque()
        self.waiters: deque = deque()
        self.producer_waiting = False
        self.producer_thread: Optional[int] = None
        self.stop_requested = False
        self.ended = False
        self.errors: deque = deque()
        self.produced = 0
        self.discarded = 0
        self.started_at = perf_counter()
        self.producer_wait_s = 0.0
        self.consumer_wait_s = 0.0
        self._producer_wakeup: SimpleQueue = SimpleQueue()
        self._consumer_resumed: SimpleQueue = SimpleQueue()

    # -- producer side ---------------------------------------------------

    def send_all(self, iterator: Iterator[Any]) -> bool:
        """Buffer ``iterator``'s items, blocking while the buffer is full.

        Returns True when the iterator is exhausted, False as soon as a stop
        is requested (the item in hand is discarded): the caller must then
        stop taking items from its source. Exceptions from the iterator
        propagate. Call from one producer thread only.
        """
        self.producer_thread = get_ident()
        try:
            return self._send_all(iterator)
        finally:
            self.producer_thread = None  # thread idents are reused once a thread ends

    def _send_all(self, iterator: Iterator[Any]) -> bool:
        items, waiters = self.items, self.waiters
        append = items.append
        for item in iterator:
            append(item)
            self.produced += 1
            if waiters:
                self._wake_consumer(handoff=GIL_ENABLED)
            # A stop sets capacity to 0, so this one check per item also
            # notices a stop within one source step.
            if len(items) >= self.capacity and not self._wait_for_space(items):
                return False
        return True

    def finish(self, error: Optional[BaseException] = None) -> None:
        """Send the ending: the source is exhausted, or raised ``error``."""
        if error is not None:
            self.errors.append(error)
        self.ended = True
        if self.stop_requested:
            self.errors.clear()  # a close() that raced this call wins
        self._wake_all_consumers()

    def _wait_for_space(self, items: deque) -> bool:
        while True:
            self.producer_waiting = True
            if self.stop_requested or len(items) < self.capacity:
                self.producer_waiting = False
                return not self.stop_requested
            started = perf_counter()
            self._producer_wakeup.get()
            self.producer_wait_s += perf_counter() - started

    def _wake_consumer(self, handoff: bool = False) -> None:
        try:
            waiter = self.waiters.popleft()
        except IndexError:
            return  # another thread took it first
        if waiter.wake(handoff):
            # Give the GIL to the consumer now rather than at the next forced
            # switch; bounded, in case it was interrupted before reporting.
            try:
                self._consumer_resumed.get(timeout=HANDOFF_TIMEOUT_S)
            except Empty:
                pass

    # -- consumer side ---------------------------------------------------

    def receive(self) -> Any:
        """Take the next item, blocking while the buffer is empty.

        Raises the source's exception (once), else ``StopIteration``, when the
        buffer is drained and the stream has ended or been stopped. Raises
        RuntimeError when called from the producer thread (from inside the
        source), where waiting would deadlock. ``BackgroundGenerator.__next__``
        tries the buffer itself first and calls this only when it was empty.
        """
        if get_ident() == self.producer_thread:
            raise RuntimeError(
                "next() was called on a BackgroundGenerator from inside its own source"
            )
        while True:
            item = self.poll()
            if item is not NOTHING:
                return item
            waiter = ThreadWaiter()
            if not self.add_waiter(waiter):
                continue
            try:
                waiter.tokens.get()
            except BaseException:
                self.withdraw(waiter)
                raise
            if waiter.handoff:
                self._consumer_resumed.put(None)
            self.consumer_wait_s += perf_counter() - waiter.since

    def poll(self) -> Any:
        """Take the next item if one is buffered, else return ``NOTHING``.

        Raises the ending as ``receive`` does.
        """
        item = self._pop()
        if item is NOTHING and self.ended:
            item = self._pop()  # the producer appends its last item, then ends
            if item is NOTHING:
                self._raise_ending()
        return item

    def _pop(self) -> Any:
        try:
            item = self.items.popleft()
        except IndexError:
            return NOTHING
        if self.producer_waiting:
            self.wake_producer_keeping(item)
        return item

    def add_waiter(self, waiter: Any) -> bool:
        """Register ``waiter`` to be woken by the next item or the ending.

        Returns False, with the waiter not registered, when there is no need
        to wait: an item is buffered or the stream has ended.
        """
        self.waiters.append(waiter)
        if self.items or self.ended:
            self.withdraw(waiter)
            return False
        if self.producer_waiting:
            # A receiver interrupted between its popleft and its wake-up of
            # the producer leaves it asleep on a buffer with room: wake it.
            self._wake_producer()
        return True

    def withdraw(self, waiter: Any) -> None:
        """Take back a waiter that will not wait (interrupted, cancelled, satisfied).

        If it was already woken, the wake-up is handed on, so that no other
        waiter misses the item it announced.
        """
        try:
            self.waiters.remove(waiter)
        except ValueError:
            self._wake_consumer()

    def _raise_ending(self) -> None:
        try:
            error = self.errors.popleft()
        except IndexError:
            error = None
        if error is None:
            raise StopIteration
        raise error

    def wake_producer_keeping(self, item: Any) -> None:
        """Wake the producer after taking ``item``; if interrupted, put ``item`` back."""
        try:
            self._wake_producer()
        except BaseException:
            # Interrupted (Ctrl-C) after taking the item: it is still the
            # consumers', so it goes back to the front of the buffer.
            self.items.appendleft(item)
            raise

    def _wake_producer(self) -> None:
        self.producer_waiting = False
        self._producer_wakeup.put(None)

    # -- either side -----------------------------------------------------

    def request_stop(self) -> None:
        """Ask the producer to stop; returns at once.

        Safe inside a finaliser or a signal handler, in any thread.
        """
        self.stop_requested = True
        self.capacity = 0
        self._producer_wakeup.put(None)

    def close(self) -> None:
        """Stop now: discard buffered items, end the stream, wake everyone.

        Not for finalisers (see ``request_stop``).
        """
        self.request_stop()
        discarded, self.items = self.items, deque()
        self.discarded += len(discarded)
        self.errors.clear()
        self.ended = True
        self._wake_all_consumers()

    def _wake_all_consumers(self) -> None:
        while True:
            try:
                waiter = self.waiters.popleft()
            except IndexError:
                return
            waiter.wake()

    def on_fork_in_child(self) -> None:
        """End a copy inherited by a forked child, where its producer does not exist."""
        self._producer_wakeup = SimpleQueue()
        self._consumer_resumed = SimpleQueue()
        self.waiters = deque()
        self.close()
