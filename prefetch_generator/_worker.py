"""The background worker: one thread that drains a source into a channel.

The worker holds the source and the channel and nothing else, in particular no
reference to the object the consumer holds, so dropping that object frees it
at once and its finaliser can stop the worker (the model is CPython's
``concurrent/futures/thread.py``).

The source is advanced and closed only in the worker thread: its ``finally``
blocks run there and never race a ``next()`` in flight. The worker ends in one
of three ways, each a message through the channel: the source is exhausted,
the source raised (any ``BaseException``, delivered as the same object), or the
channel was stopped, after which the worker closes the source and exits as
soon as the step in flight returns.

Interpreter exit: workers are daemon threads, and every live worker is stopped
and joined (bounded by ``EXIT_TIMEOUT_S`` in all) before non-daemon threads are
joined and before ``atexit`` handlers run, so sources get their ``finally`` run,
consumers blocked in other threads wake up, and no worker is still inside
library code (a JAX transfer, say) when the runtime is torn down.
"""

import os
import sys
import threading
from time import monotonic
from typing import Callable, Iterator, Optional, Set

from ._channel import Channel

EXIT_TIMEOUT_S = 2.0

_live_lock = threading.Lock()
_live: Set["Worker"] = set()


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
        self.thread = threading.Thread(
            target=_run,
            args=(self, iterator, channel, close_source),
            name="prefetch_generator",
            daemon=True,
        )
        with _live_lock:
            _live.add(self)
            if _watch_exit is not None:
                _watch_exit()
        try:
            self.thread.start()
        except BaseException:
            with _live_lock:
                _live.discard(self)
            raise

    def stop(self, timeout: Optional[float]) -> None:
        """Stop the channel and wait up to ``timeout`` s for the thread to end."""
        self.channel.stop()
        # Once exit has begun, stop_all_workers has joined every live worker,
        # and this may be a __del__ during teardown, when module globals (the
        # threading module's included) are already cleared: touch none.
        if not self.interpreter_exiting and self.thread is not threading.current_thread():
            self.thread.join(timeout)


def _run(
    worker: Worker,
    iterator: Iterator,
    channel: Channel,
    close_source: Optional[Callable[[], object]],
) -> None:
    # The Worker object is only the registry's handle; this frame holding it
    # creates no cycle with the consumer's object.
    try:
        if channel.send_all(iterator):
            channel.finish()
    except BaseException as error:
        channel.finish(error)
    finally:
        del iterator
        if close_source is not None:
            try:
                close_source()
            except BaseException as error:
                sys.unraisablehook(_Unraisable(error, close_source))
        with _live_lock:
            _live.discard(worker)


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


def stop_all_workers() -> None:
    """Stop every live worker, then join them within ``EXIT_TIMEOUT_S`` in all."""
    Worker.interpreter_exiting = True
    with _live_lock:
        workers = list(_live)
    for worker in workers:
        worker.channel.stop()
    deadline = monotonic() + EXIT_TIMEOUT_S
    for worker in workers:
        worker.thread.join(max(0.0, deadline - monotonic()))


def _forget_workers_after_fork() -> None:
    global _live_lock
    _live_lock = threading.Lock()
    for worker in _live:
        worker.channel.reset_after_fork()
    _live.clear()


os.register_at_fork(after_in_child=_forget_workers_after_fork)

if hasattr(threading, "_register_atexit"):
    # Python >= 3.9: runs before non-daemon threads are joined and before atexit.
    threading._register_atexit(stop_all_workers)
    _watch_exit = None
else:
    # Python 3.8 joins non-daemon threads before running atexit, so a consumer
    # blocked in one of them would hang exit. Instead, a helper thread waits for
    # the main thread to finish (threading._shutdown marks it stopped before
    # joining the others), then stops the workers.
    _watcher: Optional[threading.Thread] = None

    def _watch_exit() -> None:
        global _watcher
        if _watcher is None or not _watcher.is_alive():
            _watcher = threading.Thread(
                target=_stop_all_after_main_thread, name="prefetch_generator-exit"
            )
            _watcher.start()

    def _stop_all_after_main_thread() -> None:
        threading.main_thread().join()
        stop_all_workers()
