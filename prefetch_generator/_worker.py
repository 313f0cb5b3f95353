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
registered first. Ours stops every live worker and joins them within
``EXIT_TIMEOUT_S`` in all, then closes what was handed to ``close_at_exit``, so
sources get their ``finally`` run and no worker is still inside library code
(a JAX transfer, say) when the runtime is torn down. A BackgroundGenerator
created in an exit handler that runs after ours is not stopped for it: close
it there (``close()`` and ``with`` still wait for their worker). To run before the exit
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
import traceback
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
        if self.thread is not threading.current_thread():
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
        try:
            del iterator
            if close_source is not None:
                try:
                    close_source()
                except BaseException as error:
                    report_unraisable(error, "while closing the source of a BackgroundGenerator")
        finally:
            worker.finished = True
            _live.pop(worker, None)
            while worker.exit_waiters:
                worker.exit_waiters.popleft().wake()


def report_unraisable(error: BaseException, where: str) -> None:
    """Report ``error``, which has no caller to go to, as CPython reports its own.

    ``sys.unraisablehook`` gets the error; the default hook accepts only
    CPython's own argument type, which cannot be built from Python, so for it
    the report is written to stderr in the same form.
    """
    hook = sys.unraisablehook
    if hook is sys.__unraisablehook__:
        lines = traceback.format_exception(type(error), error, error.__traceback__)
        sys.stderr.write(f"Exception ignored {where}:\n{''.join(lines)}")
        return
    try:
        hook(_Unraisable(error, f"Exception ignored {where}"))
    except Exception:
        pass  # a failing hook must not stop the worker from ending cleanly


class _Unraisable:
    """The argument ``sys.unraisablehook`` expects, for an error with no caller."""

    exc_value: BaseException
    object: object = None

    def __init__(self, error: BaseException, err_msg: str) -> None:
        self.exc_type = type(error)
        self.exc_value = error
        self.exc_traceback = error.__traceback__
        self.err_msg = err_msg


def close_at_exit(closeable: Any) -> None:
    """Call ``closeable.close()`` at exit, with the workers, unless it is gone by then.

    Held by a weak reference. For iterators that run threads of their own (a
    Grain iterator), so they end before the runtime is torn down.
    """
    _close_at_exit.add(closeable)
    _move_exit_handler_last()


def stop_all_workers() -> None:
    """Stop and join every live worker, then close what was handed to ``close_at_exit``.

    The workers are joined within ``EXIT_TIMEOUT_S`` in all, and only then are
    the closeables closed, so none is closed while a worker is inside it.
    Closing a closeable is not bounded here (Grain's iterators join their own
    threads).
    """
    workers = list(_live)
    for worker in workers:
        worker.channel.close()
    deadline = monotonic() + EXIT_TIMEOUT_S
    for worker in workers:
        worker.thread.join(max(0.0, deadline - monotonic()))
    for closeable in list(_close_at_exit):
        try:
            closeable.close()
        except BaseException as error:  # one failing closeable must not cost the others
            report_unraisable(error, f"while closing {closeable!r} at exit")


_modules_seen = 0


def _move_exit_handler_last() -> None:
    """Put our exit handler ahead of those of the libraries imported so far.

    atexit runs handlers last registered first. Libraries register theirs when
    imported, so nothing can have got ahead while no module was imported; and
    each move leaves a slot behind in atexit's list. Once shutdown has begun
    it is too late: moving while atexit runs its handlers would put ours
    where it is never reached.
    """
    if len(sys.modules) != _modules_seen and threading.main_thread().is_alive():
        _move_now()


def _move_now() -> None:
    global _modules_seen
    _modules_seen = len(sys.modules)
    try:
        atexit.unregister(stop_all_workers)
    except Exception:
        pass  # a registered callable whose __eq__ raises ends the search early
    atexit.register(stop_all_workers)


def _forget_workers_after_fork() -> None:
    for worker in list(_live):
        worker.channel.on_fork_in_child()
        worker.finished = True
        worker.exit_waiters.clear()  # coroutines of the parent's event loops
    _live.clear()


atexit.register(stop_all_workers)
os.register_at_fork(after_in_child=_forget_workers_after_fork)
if hasattr(threading, "_register_atexit"):
    # Python >= 3.9 runs these when shutdown begins, before joining the
    # program's threads: catch the libraries imported since the last worker.
    threading._register_atexit(_move_now)
