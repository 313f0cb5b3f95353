"""``BackgroundGenerator``: the consumer's handle on a background worker."""

import asyncio
import warnings
import weakref
from time import perf_counter
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Generic,
    Iterable,
    NoReturn,
    Optional,
    Type,
    TypeVar,
)

from ._channel import NOTHING, RECHECK_S, Channel, LoopWaiter
from ._checkpoint import Delivered, StateRelay, find_state_methods, with_states
from ._checks import check_iterable, checked_max_prefetch, checked_timeout
from ._migration import missing_attribute
from ._stats import Stats
from ._worker import Worker

T = TypeVar("T")

CLOSE_TIMEOUT_S = 1.0


class BackgroundGenerator(StateRelay, Generic[T]):
    """Iterate over ``generator`` while a background thread runs ahead of you.

    ``generator`` is any iterable: a generator, an iterator, a list, a PyTorch
    DataLoader, a tqdm object. A worker thread starts at construction and takes
    items from it until ``max_prefetch`` of them wait unconsumed, plus the one
    the consumer is about to receive: at most ``max_prefetch + 1`` items are
    ever taken from the source and not yet consumed. ``max_prefetch <= 0``
    means no bound. Every argument is checked before the source is touched.

    Iteration: ``next()`` blocks while nothing is buffered; it returns the
    source's items in order, then raises the source's exception (the same
    object, any ``BaseException``) or ``StopIteration``; after that every
    ``next()`` raises ``StopIteration``. ``iter(bg) is bg``. Several threads
    may call ``next()`` at once: each item goes to exactly one of them, and all
    of them see the end. ``async for`` and ``await anext(bg)`` wait on the
    event loop itself, with no executor thread; a cancelled wait loses nothing.
    ``len(bg)`` is ``len(generator)`` when the iterable has a length.

    Closing: ``close()``, leaving a ``with`` or ``async with`` block, or
    ``aclose()`` ends the stream at once (buffered items are discarded and
    later ``next()`` calls raise ``StopIteration``) and waits, bounded, for the
    worker to close the source in its own thread (so the source's ``finally``
    blocks run there). Dropping the last reference does the same without
    waiting: it never blocks the dropping thread. Live workers are also
    stopped at interpreter exit, after the program's non-daemon threads end.

    A source that keeps a reference to its own BackgroundGenerator keeps it
    alive, worker included, until exit; close it explicitly, or let the
    source hold a ``weakref``.

    Items are handed over by reference, never copied. A source that refills
    one buffer before each yield (``buf[...] = next_rows; yield buf``) thus
    hands the consumer the same object several times over, holding whatever
    the source wrote last, as any prefetcher of such a source does: the
    source runs ahead of the consumer by design. Yield copies
    (``yield buf.copy()``), or use ``prefetch_generator_jax.Prefetcher``,
    which copies each NumPy array as it leaves the source.

    ``preprocess_func`` (deprecated) is applied to each item in the worker.
    """

    def __init__(
        self,
        generator: Iterable[T],
        max_prefetch: int = 1,
        preprocess_func: Optional[Callable[[Any], T]] = None,
    ) -> None:
        max_prefetch = checked_max_prefetch(max_prefetch)
        if preprocess_func is not None and not callable(preprocess_func):
            raise TypeError(
                f"preprocess_func must be callable, got {type(preprocess_func).__name__}"
            )
        check_iterable(generator, "generator")
        if preprocess_func is not None:
            warnings.warn(
                "preprocess_func is deprecated: wrap the source instead, "
                "BackgroundGenerator(map(preprocess_func, generator))",
                DeprecationWarning,
                stacklevel=2,
            )
        self.max_prefetch = max_prefetch
        self._iterable = generator
        source = iter(generator)
        close_source = getattr(source, "close", None)
        methods = find_state_methods(source, generator)
        if preprocess_func is not None:
            source = map(preprocess_func, source)
        capacity = max_prefetch + 1 if max_prefetch > 0 else float("inf")
        self._channel = Channel(capacity)
        self._channel.owner = weakref.ref(self)
        self._delivered: Optional[Delivered] = None
        if methods:
            # Taken here, in the caller's thread, before the worker touches the source.
            initial = tuple(method() for method in methods.values())
            self._delivered = Delivered(tuple(methods), initial, self._channel.items)
            source = with_states(source, tuple(methods.values()), self._delivered)
        self._worker = Worker(source, self._channel, close_source)

    def __iter__(self) -> "BackgroundGenerator[T]":
        return self

    def __next__(self) -> T:
        """Return the next item; blocks while the worker has none ready."""
        channel = self._channel
        while True:
            # The item is taken in the frame that returns it, by a for loop:
            # from 3.10 on no signal is handled between the taking and the
            # store, and nothing is lost at a call's return.
            entry = NOTHING
            try:
                for entry in channel.taker:
                    if channel.parked:
                        channel.wake_producer()
                    if self._delivered is None:
                        return entry
                    # From 3.11 on, no signal is handled between this store
                    # and the return (neither makes a call): the state is
                    # recorded exactly when the item is handed out.
                    item, slot, record = entry
                    self._delivered.records[slot] = record
                    return item
            except IndexError:
                pass  # empty; raising from in here would chain IndexError to the source's error
            except BaseException:
                if entry is not NOTHING:
                    # First, in one C call: a second interrupt can land at the
                    # entry of any Python function called here.
                    channel.items.appendleft(entry)
                    channel.after_put_back()
                raise
            try:
                channel.wait()
            except StopIteration:
                self._saw_the_end()
                raise

    next = __next__

    def __len__(self) -> int:
        """``len()`` of the wrapped iterable: the items it gives in all, not those left.

        TypeError when it has no length (a generator, say).
        """
        return len(self._iterable)  # type: ignore[arg-type]

    def __bool__(self) -> bool:
        return True  # not len() != 0: a source without a length has no truth problem

    def __aiter__(self) -> "BackgroundGenerator[T]":
        return self

    async def __anext__(self) -> T:
        """Return the next item; awaits on the event loop while none is ready.

        Cancellation-safe: a cancelled wait leaves no waiter behind and loses
        no item. A ``StopAsyncIteration`` raised by the source is re-raised as
        RuntimeError, so it cannot end ``async for`` silently (as PEP 479 does
        for ``StopIteration``).
        """
        channel = self._channel
        while True:
            # As in __next__, and not through a call: before 3.11 CPython
            # handles signals as a call returns, which could lose the item.
            entry = NOTHING
            try:
                for entry in channel.taker:
                    if channel.parked:
                        channel.wake_producer()
                    if self._delivered is None:
                        return entry
                    item, slot, record = entry
                    self._delivered.records[slot] = record
                    return item
            except IndexError:
                pass
            except BaseException:
                if entry is not NOTHING:
                    channel.items.appendleft(entry)
                    channel.after_put_back()
                raise
            try:
                channel.raise_if_drained()
            except StopIteration:
                self._saw_the_end()
                raise StopAsyncIteration from None
            except StopAsyncIteration as error:
                raise RuntimeError("the source raised StopAsyncIteration") from error
            waiter = LoopWaiter(asyncio.get_running_loop())
            try:
                channel.register(waiter)
                if not channel.items and not channel.ended:
                    channel.wake_producer()
                    await self._sleep(waiter)
                channel.unlist(waiter)  # it did not sleep, or a re-check ended its sleep
            except BaseException:
                # As in Channel.wait.
                try:
                    channel.waiters.remove(waiter)
                except ValueError:
                    channel.wake_consumers()
                raise

    async def _sleep(self, waiter: LoopWaiter) -> None:
        # Channel._sleep_on, on the event loop. asyncio.wait's timeout leaves
        # the future alone, so a wake-up sent meanwhile is not lost.
        channel = self._channel
        future = waiter.future
        while True:
            await asyncio.wait((future,), timeout=RECHECK_S)
            if future.done():
                break
            if waiter not in channel.waiters or channel.items or channel.ended:
                await asyncio.wait((future,), timeout=RECHECK_S)
                if not future.done() and waiter not in channel.waiters:
                    channel.count_missed_wakeup()  # as in Channel._sleep
                break
        channel.consumer_wait_s += perf_counter() - waiter.since

    def close(self, timeout: Optional[float] = CLOSE_TIMEOUT_S) -> None:
        """End the stream and wait up to ``timeout`` seconds for the worker to exit.

        Idempotent and callable from any thread. Consumers blocked in
        ``next()`` get ``StopIteration`` at once. If the source is stuck inside
        a step, this returns after ``timeout`` (``None``: wait for ever) and
        the worker closes the source and exits as soon as that step returns.
        """
        self._worker.stop(checked_timeout(timeout))

    async def aclose(self, timeout: Optional[float] = CLOSE_TIMEOUT_S) -> None:
        """``close()`` for coroutines: waits for the worker without blocking the loop."""
        timeout = checked_timeout(timeout)
        worker = self._worker
        worker.stop(timeout=0)
        waiter = LoopWaiter(asyncio.get_running_loop())
        worker.exit_waiters.append(waiter)
        if worker.finished:
            waiter.wake()
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
        except asyncio.TimeoutError:
            pass

    def __enter__(self) -> "BackgroundGenerator[T]":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.close()

    async def __aenter__(self) -> "BackgroundGenerator[T]":
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # May run inside the garbage collector on any thread (the worker's
        # own included) or inside a signal handler: only request the stop.
        worker = self.__dict__.get("_worker")  # a failed __init__ leaves none
        if worker is not None:
            worker.request_stop()

    def __copy__(self) -> NoReturn:
        raise TypeError("a BackgroundGenerator cannot be copied, as a generator cannot")

    def __deepcopy__(self, memo: Any) -> NoReturn:
        self.__copy__()

    def __reduce__(self) -> NoReturn:
        raise TypeError("a BackgroundGenerator cannot be pickled, as a generator cannot")

    def _saw_the_end(self) -> None:
        # A consumer got StopIteration: if the source ran out (rather than
        # being stopped), the state to resume from is the one after its end.
        delivered = self._delivered
        if delivered is not None and not self._channel.stop_requested:
            delivered.saw_the_end()

    if not TYPE_CHECKING:
        # Hidden from type checkers: with a __getattr__ they would accept any attribute.
        def __getattr__(self, name: str) -> NoReturn:
            """Only for a missing attribute; for one of 1.0.3's it says what replaces it."""
            raise missing_attribute(self, name)

    def is_running(self) -> bool:
        """Whether the worker is still at work: it has not yet closed the source and ended."""
        return not self._worker.finished

    def stats(self) -> Stats:
        """A snapshot of the counters; thread-safe, never blocks.

        Exact once the stream has ended or been closed. Taken while items
        move, it is not atomic: ``consumed`` may trail by the items that moved
        meanwhile (and without the GIL, while ``close()`` discards, lead by the
        item or two being discarded at that moment).
        """
        return self._channel.statistics()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<BackgroundGenerator max_prefetch={self.max_prefetch} {state}>"
