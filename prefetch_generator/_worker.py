"""The background worker: one thread that drains a source into a channel.

The worker holds the source and the channel and nothing else, in particular no
reference to the object the consumer holds, so dropping that object frees it
at once and its finaliser can stop the worker (the model is CPython's
``concurrent/futures/thread.py``).

The source is advanced and closed only in the worker thread: its ``finally``
blocks run there and never race a ``next()`` in flight. The worker ends in one
of three ways, each a message through the channel: the source is exhausted,
the source raised (any ``BaseException``, delivered as the same object), or a
stop was requested, after which the worker closes the source and exits as soon
as the step in flight returns.

Interpreter exit behaves as the same program would without prefetching. Python
first joins the program's non-daemon threads; workers are daemon threads and
keep feeding those, so they get every item. Then ``atexit`` handlers run, last
registered first. Ours stops every live worker, closes what was handed to
``close_at_exit``, and joins the workers within ``EXIT_TIMEOUT_S`` in all, so
sources get their ``finally`` run and no worker is still inside library code
(a JAX transfer, say) when the runtime is torn down. To run before the exit
handlers of libraries imported after this one (JAX's among them), the handler
moves itself to the end of the list when a worker starts after a module was
imported and, on Python >= 3.9, when shutdown begins. Only a library first
imported after shutdown has begun (by a thread still running then) can get
ahead of it.
"""

import atexit
import os
import sys
import threading
import weakref
from collections import deque
from time import monotonic
from typing import Any, Callable, Dict, Iterator, Optional

from ._channel import Channel

EXIT_TIMEOUT_S = 2.0

# Plain dict operations are atomic, so registering and unregistering take no
# lock that a signal or a finaliser could find held.
_live: Dict["Worker", None] = {}
_close_at_exit: "weakref.WeakSet[Any]" = weakref.WeakSet()


class Worker:
    """A started daemon thread that sends ``iterator``'s items into ``channel``."""

    interpreter_exiting = False

    def __init__(
        self,
        iterator: Iterator,
        channel: Channel,
        close_source: Optional[Callable[[], object]],
    ) -> None:
        self.channel = channel
        self.finished = False
        self.exit_waiters: deque = deque()
        self.thread = threading.Thread(
            target=_run,
            args=(self, iterator, channel, close_source),
            name="prefetch_generator",
            daemon=True,
        )
        _move_exit_handler_last()
        self.thread.start()
        # Registered once started, so the exit handler never joins an
        # unstarted thread; a worker that already finished unregisters itself.
        _live[self] = None
        if self.finished:
            _live.pop(self, None)

    def request_stop(self) -> None:
        """Ask the worker to stop; returns at once. Safe in finalisers and signal handlers."""
        self.channel.request_stop()

    def stop(self, timeout: Optional[float]) -> None:
        """End the stream now and wait up to ``timeout`` s for the thread to end."""
        self.channel.close()
        if not self.interpreter_exiting and self.thread is not threading.current_thread():
            self.thread.join(timeout)


def _run(
    worker: Worker,
    iterator: Iterator,
    channel: Channel,
    close_source: Optional[Callable[[], object]],
) -> None:
    try:
        if channel.send_all(iterator):
            channel.finish()
        else:
            channel.close()
    except BaseException as error:
        channel.finish(error)
    finally:
        del iterator
        if close_source is not None:
            try:
                close_source()
            except BaseException as error:
                sys.unraisablehook(_Unraisable(error, close_source))
        worker.finished = True
        _live.pop(worker, None)
        while worker.exit_waiters:
            worker.exit_waiters.popleft().wake()


class _Unraisable:
    """The argument ``sys.unraisablehook`` expects, for a failing source close."""

    exc_value: BaseException
    object: object

    def __init__(self, error: BaseException, closer: object) -> None:
        self.exc_type = type(error)
        self.exc_value = error
        self.exc_traceback = error.__traceback__
        self.err_msg = "Exception ignored while closing the source of a BackgroundGenerator"
        self.object = closer


def close_at_exit(closeable: Any) -> None:
    """Call ``closeable.close()`` at exit, with the workers, unless it is gone by then.

    Held by a weak reference. For iterators that run threads of their own (a
    Grain iterator), so they end before the runtime is torn down.
    """
    _close_at_exit.add(closeable)
    _move_exit_handler_last()


def stop_all_workers() -> None:
    """Stop every live worker, close the registered closeables, and join the workers.

    Bounded by ``EXIT_TIMEOUT_S`` in all.
    """
    Worker.interpreter_exiting = True
    workers = list(_live)
    for worker in workers:
        worker.channel.close()
    for closeable in list(_close_at_exit):
        try:
            closeable.close()
        except Exception as error:
            sys.unraisablehook(_Unraisable(error, closeable))
    deadline = monotonic() + EXIT_TIMEOUT_S
    for worker in workers:
        worker.thread.join(max(0.0, deadline - monotonic()))


_modules_seen = 0


def _move_exit_handler_last() -> None:
    # atexit runs handlers last registered first: re-registering puts ours
    # ahead of those of every library imported so far. Libraries register
    # theirs when imported, so nothing can have got ahead while no module was
    # imported; and each move leaves a slot behind in atexit's list.
    global _modules_seen
    if len(sys.modules) != _modules_seen:
        _modules_seen = len(sys.modules)
        atexit.unregister(stop_all_workers)
        atexit.register(stop_all_workers)


def _forget_workers_after_fork() -> None:
    for worker in list(_live):
        worker.channel.on_fork_in_child()
    _live.clear()


atexit.register(stop_all_workers)
os.register_at_fork(after_in_child=_forget_workers_after_fork)
if hasattr(threading, "_register_atexit"):
    # Python >= 3.9 runs these when shutdown begins, before joining the
    # program's threads: catch the libraries imported since the last worker.
    threading._register_atexit(_move_exit_handler_last)
