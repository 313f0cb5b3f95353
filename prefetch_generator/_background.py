"""``BackgroundGenerator``: the consumer's handle on a background worker."""

import asyncio
import operator
import warnings
from queue import Empty
from time import perf_counter
from types import TracebackType
from typing import Any, Callable, Generic, Iterable, Optional, Type, TypeVar

from ._channel import Channel
from ._stats import Stats
from ._worker import Worker

T = TypeVar("T")

CLOSE_TIMEOUT_S = 1.0


def checked_max_prefetch(max_prefetch: object) -> int:
    """``max_prefetch`` as an int; TypeError naming it for anything else."""
    if not isinstance(max_prefetch, bool):
        try:
            return operator.index(max_prefetch)  # type: ignore[arg-type]
        except TypeError:
            pass
    raise TypeError(f"max_prefetch must be an int, got {type(max_prefetch).__name__}")


class BackgroundGenerator(Generic[T]):
    """Iterate over ``generator`` while a background thread runs ahead of you.

    ``generator`` is any iterable: a generator, an iterator, a list, a PyTorch
    DataLoader, a tqdm object. A worker thread starts at construction and takes
    items from it until ``max_prefetch`` of them wait unconsumed, plus the one
    the consumer is about to receive: at most ``max_prefetch + 1`` items are
    ever taken from the source and not yet consumed. ``max_prefetch <= 0``
    means no bound.

    Iteration: ``next()`` blocks while nothing is buffered; it returns the
    source's items in order, then raises the source's exception (the same
    object, any ``BaseException``) or ``StopIteration``; after that every
    ``next()`` raises ``StopIteration``. ``iter(bg) is bg``. Several threads
    may call ``next()`` at once: each item goes to exactly one of them and all
    of them see the end. ``async for`` waits without blocking the event loop.

    Closing: ``close()``, leaving a ``with`` block, or dropping the last
    reference stops the worker, which closes the source in its own thread (so
    the source's ``finally`` blocks run there) and exits. Buffered items are
    discarded and later ``next()`` calls raise ``StopIteration``. Live workers
    are also stopped when the interpreter exits.

    ``preprocess_func`` (deprecated) is applied to each item in the worker.
    """

    def __init__(
        self,
        generator: Iterable[T],
        max_prefetch: int = 1,
        preprocess_func: Optional[Callable[[Any], T]] = None,
    ) -> None:
        max_prefetch = checked_max_prefetch(max_prefetch)
        # Checked by type rather than by catching iter()'s TypeError, which
        # would also hide a TypeError raised inside a real __iter__.
        if not any(hasattr(type(generator), name) for name in ("__iter__", "__getitem__")):
            raise TypeError(f"generator must be an iterable, got {type(generator).__name__}")
        source = iter(generator)
        close_source = getattr(source, "close", None)
        if preprocess_func is not None:
            if not callable(preprocess_func):
                raise TypeError(
                    f"preprocess_func must be callable, got {type(preprocess_func).__name__}"
                )
            warnings.warn(
                "preprocess_func is deprecated: wrap the source instead, "
                "BackgroundGenerator(map(preprocess_func, generator))",
                DeprecationWarning,
                stacklevel=2,
            )
            source = map(preprocess_func, source)
        self.max_prefetch = max_prefetch
        capacity = max_prefetch + 1 if max_prefetch > 0 else float("inf")
        self._channel = Channel(capacity)
        self._receive = self._channel.receive
        self._worker = Worker(source, self._channel, close_source)

    def __iter__(self) -> "BackgroundGenerator[T]":
        return self

    def __next__(self) -> T:
        """Return the next item; blocks while the worker has none ready."""
        return self._receive()

    next = __next__

    def __aiter__(self) -> "BackgroundGenerator[T]":
        return self

    async def __anext__(self) -> T:
        """Return the next item, waiting in an executor thread, not the event loop."""
        while True:
            try:
                return self._receive(block=False)
            except Empty:
                await asyncio.get_running_loop().run_in_executor(None, self._channel.wait)
            except StopIteration:
                raise StopAsyncIteration from None

    def close(self, timeout: Optional[float] = CLOSE_TIMEOUT_S) -> None:
        """Stop the worker and wait up to ``timeout`` seconds for it to exit.

        Idempotent and callable from any thread. Consumers blocked in
        ``next()`` get ``StopIteration`` at once. If the source is stuck inside
        a step, this returns after ``timeout`` (``None``: wait for ever) and
        the worker closes the source and exits as soon as that step returns.
        """
        self._worker.stop(timeout)

    def __enter__(self) -> "BackgroundGenerator[T]":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # A failed __init__ leaves no worker to stop.
        worker = self.__dict__.get("_worker")
        if worker is not None:
            worker.stop(CLOSE_TIMEOUT_S)

    def is_running(self) -> bool:
        """Whether the worker thread is still alive."""
        return self._worker.thread.is_alive()

    def stats(self) -> Stats:
        """A snapshot of the counters; thread-safe, does not block on the worker."""
        channel = self._channel
        with channel.lock:
            buffered = len(channel.items)
            return Stats(
                produced=channel.produced,
                consumed=channel.produced - channel.discarded - buffered,
                buffered=buffered,
                consumer_wait_s=channel.consumer_wait_s,
                producer_wait_s=channel.producer_wait_s,
                elapsed_s=perf_counter() - channel.started_at,
            )

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<BackgroundGenerator max_prefetch={self.max_prefetch} {state}>"
