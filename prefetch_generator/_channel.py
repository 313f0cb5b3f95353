"""The bounded hand-off between one producer thread and any number of consumers.

A ``Channel`` carries items from the worker thread to the threads that call
``next()``, then exactly one ending: the end of the source, or the exception it
raised. It promises:

* Order and exactness: every item sent is received once, in order, unless the
  channel is stopped first; then the items still buffered are discarded.
* A bound: ``send_all`` takes the next item from its iterator only while
  fewer than ``capacity`` items are buffered, so at most ``capacity`` items
  are ever taken and not yet received.
* No lost ending: once the buffer is drained, every receiver sees the ending.
  An exception is raised in exactly one receiver; the others, and every later
  call, get ``StopIteration``.
* ``stop`` (any thread, idempotent) wakes every blocked party at once.

Thread safety: all state changes happen under ``lock``, except the consumer's
fast path, a bare ``deque.popleft`` (atomic in CPython, with or without the
GIL). Every decision to sleep is taken under ``lock``, so a stale read outside
it can delay a wake-up until the next locked step, never lose one.

Speed: a blocked side sleeps on its own ``SimpleQueue`` and is sent a token
only when it is actually asleep, so a hand-off that finds the other side awake
costs a few C-level deque operations. The consumer may take everything the
producer buffered in one wake-up, which halves the number of thread round
trips at ``capacity=2`` (see shared/notes/handoff-physics.md).
"""

import threading
from collections import deque
from queue import Empty, SimpleQueue
from time import perf_counter
from typing import Any, Iterator, Optional


class Channel:
    """A bounded single-producer, multi-consumer hand-off with one ending."""

    def __init__(self, capacity: float) -> None:
        self.capacity = capacity
        self.items: deque = deque()
        self.lock = threading.Lock()
        self.started_at = perf_counter()
        self.producer_waiting = False
        self.consumers_waiting = 0
        self.ended = False
        self.stopped = False
        self.produced = 0
        self.discarded = 0
        self.producer_wait_s = 0.0
        self.consumer_wait_s = 0.0
        self._error: Optional[BaseException] = None
        self._producer_wakeup: SimpleQueue = SimpleQueue()
        self._consumer_wakeups: SimpleQueue = SimpleQueue()

    # -- producer side ---------------------------------------------------

    def send_all(self, iterator: Iterator[Any]) -> bool:
        """Buffer ``iterator``'s items, blocking while the buffer is full.

        Returns True when the iterator is exhausted, False as soon as the
        channel is stopped (the item in hand is discarded): the caller must
        then stop taking items from its source. Exceptions from the iterator
        propagate. Call from one producer thread only.
        """
        items, lock = self.items, self.lock
        append, capacity = items.append, self.capacity
        for item in iterator:
            with lock:
                if self.stopped:
                    return False
                append(item)
                self.produced += 1
                if self.consumers_waiting:
                    self.consumers_waiting -= 1
                    self._consumer_wakeups.put(None)
                if len(items) < capacity:
                    continue
                self.producer_waiting = True
            if not self._wait_for_space():
                return False
        return True

    def finish(self, error: Optional[BaseException] = None) -> None:
        """Send the ending: the source is exhausted, or raised ``error``."""
        with self.lock:
            if self.ended:
                return
            self.ended = True
            self._error = error
            self._wake_all_consumers()

    # -- consumer side ---------------------------------------------------

    def receive(self, block: bool = True) -> Any:
        """Take the next item, blocking while the buffer is empty.

        Raises the source's exception (once), else ``StopIteration``, when the
        buffer is drained and the stream has ended or been stopped. With
        ``block=False`` raises ``queue.Empty`` instead of blocking.
        """
        while True:
            try:
                item = self.items.popleft()
            except IndexError:
                pass  # raising from in here would chain IndexError to the source's error
            else:
                if self.producer_waiting:
                    self._wake_producer()
                return item
            with self.lock:
                if self.items:
                    continue
                if self.ended:
                    error, self._error = self._error, None
                    raise error or StopIteration
                if not block:
                    raise Empty
                self.consumers_waiting += 1
            self._sleep_until_woken()

    def wait(self) -> None:
        """Block until an item is buffered or the stream has ended."""
        with self.lock:
            if self.items or self.ended:
                return
            self.consumers_waiting += 1
        self._sleep_until_woken()

    # -- either side -----------------------------------------------------

    def stop(self) -> None:
        """End the stream now: discard buffered items and wake everyone."""
        with self.lock:
            if self.stopped:
                return
            self.stopped = True
            self.ended = True
            self._error = None
            self.discarded += len(self.items)
            self.items.clear()
            self._wake_all_consumers()
            if self.producer_waiting:
                self.producer_waiting = False
                self._producer_wakeup.put(None)

    def reset_after_fork(self) -> None:
        """Make a copy inherited by a forked child usable: stopped, unlocked.

        The producer thread does not exist in the child, and the parent may
        have forked while some thread held ``lock``, so fresh locks are made
        before ``stop``.
        """
        self.lock = threading.Lock()
        self._producer_wakeup = SimpleQueue()
        self._consumer_wakeups = SimpleQueue()
        self.producer_waiting = False
        self.consumers_waiting = 0
        self.stop()

    # -- internals -------------------------------------------------------

    def _wait_for_space(self) -> bool:
        while True:
            started = perf_counter()
            self._producer_wakeup.get()
            with self.lock:
                self.producer_wait_s += perf_counter() - started
                if self.stopped:
                    return False
                if len(self.items) < self.capacity:
                    return True
                self.producer_waiting = True

    def _wake_producer(self) -> None:
        with self.lock:
            if self.producer_waiting:
                self.producer_waiting = False
                self._producer_wakeup.put(None)

    def _wake_all_consumers(self) -> None:
        for _ in range(self.consumers_waiting):
            self._consumer_wakeups.put(None)
        self.consumers_waiting = 0

    def _sleep_until_woken(self) -> None:
        started = perf_counter()
        # A consumer interrupted here (Ctrl-C) leaves its count behind; the
        # token later sent for it only causes one spurious wake-up.
        self._consumer_wakeups.get()
        with self.lock:
            self.consumer_wait_s += perf_counter() - started
