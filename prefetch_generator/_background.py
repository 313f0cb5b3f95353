"""``BackgroundGenerator``: the consumer's handle on a background worker."""

import asyncio
import warnings
from time import perf_counter
from types import TracebackType
from typing import Any, Callable, Generic, Iterable, NoReturn, Optional, Type, TypeVar

from ._channel import NOTHING, Channel, LoopWaiter
from ._checks import check_iterable, checked_max_prefetch, checked_timeout
from ._stats import Stats
from ._worker import Worker

T = TypeVar("T")

CLOSE_TIMEOUT_S = 1.0


class BackgroundGenerator(Generic[T]):
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
        if preprocess_func is not None:
            source = map(preprocess_func, source)
        self._channel = Channel(max_prefetch + 1 if max_prefetch > 0 else float("inf"))
        self._worker = Worker(source, self._channel, close_source)

    def __iter__(self) -> "BackgroundGenerator[T]":
        return self

    def __next__(self) -> T:
        """Return the next item; blocks while the worker has none ready."""
        channel = self._channel
        while True:
            # Channel.take, inlined: one Python frame less per item (a sixth of
            # the hand-off at depth), and the item is taken in the frame that
            # returns it, so an interrupt cannot strand it.
            item = NOTHING
            try:
                for item in channel.taker:
                    if channel.parked:
                        channel.release_producer()
                    return item
            except IndexError:
                pass  # empty; raising from in here would chain IndexError to the source's error
            except BaseException:
                if item is not NOTHING:
                    channel.items.appendleft(item)
                raise
            channel.wait()

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
            item = channel.take()
            if item is not NOTHING:
                return item
            try:
                channel.raise_if_drained()
            except StopIteration:
                raise StopAsyncIteration from None
            except StopAsyncIteration as error:
                raise RuntimeError("the source raised StopAsyncIteration") from error
            waiter = LoopWaiter(asyncio.get_running_loop())
            try:
                if channel.add_waiter(waiter):
                    await waiter.future
                    channel.consumer_wait_s += perf_counter() - waiter.since
            except BaseException:
                channel.withdraw(waiter)
                raise

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

    def is_running(self) -> bool:
        """Whether the worker is still at work: it has not yet closed the source and ended."""
        return not self._worker.finished

    def stats(self) -> Stats:
        """A snapshot of the counters; thread-safe, never blocks."""
        channel = self._channel
        produced = channel.produced  # before the buffer: consumed can only be understated
        buffered = len(channel.items)
        return Stats(
            produced=produced,
            consumed=max(0, produced - channel.discarded - buffered),
            buffered=buffered,
            consumer_wait_s=channel.consumer_wait_s,
            producer_wait_s=channel.producer_wait_s,
            elapsed_s=perf_counter() - channel.started_at,
        )

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<BackgroundGenerator max_prefetch={self.max_prefetch} {state}>"
