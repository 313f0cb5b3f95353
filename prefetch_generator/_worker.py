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

Interpreter exit behaves as the same program would without prefetching:

* The program's non-daemon threads finish first. Workers are daemon threads
  and keep feeding them, so a non-daemon thread still consuming gets every
  item.
* Then, before any ``atexit`` handler runs, every live worker is stopped and
  joined within ``EXIT_TIMEOUT_S`` in all, and only then is what was handed to
  ``close_at_exit`` closed. Sources get their ``finally`` run, and no worker is
  still inside library code (a JAX transfer, say) when a library's own exit
  handler tears its runtime down, whatever the import order.
* A stream stopped this way never looks like its end: whoever still iterates
  it (an ``atexit`` handler that drains it, a daemon thread) gets
  ``RuntimeError`` saying that the interpreter is exiting, every time.
  Delivering the rest instead would keep workers running into the ``atexit``
  handlers, after the teardown of the libraries they call, and the source
  could no longer be closed before that teardown.

How. ``threading._shutdown()`` runs, on Python 3.9 and later, when the main
thread has finished, in the main process and in every multiprocessing child
(fork, forkserver and spawn): first its hooks, then it joins the non-daemon
threads. Our hook registers the exit handler again, which puts it at the end
of ``atexit``'s list, so it runs first: after the joins, before the handlers
of every library imported by then. One move per exit keeps ``atexit``'s
bookkeeping constant however many workers are created. The hook waits for no
thread itself: a non-daemon thread that joins the main thread would then wait
for the hook, and the hook for it.

fork and forkserver children before Python 3.13 leave through ``os._exit``
right after ``threading._shutdown()``, so no ``atexit`` handler runs there. In
those children the hook itself first joins the child's other non-daemon
threads, then stops the workers; it runs after every other shutdown hook
(``concurrent.futures`` wakes its idle pool threads in its own, so they can
be joined). From 3.13 on such children run the ``atexit`` handlers registered
in them, and the hook's registration is one of them.

What is not covered: a library first imported after shutdown began (by a
non-daemon thread still running then) registers its exit handler after ours,
so its handler runs first. A BackgroundGenerator created in an exit handler is
not stopped for it: close it there (``close()`` and ``with`` still wait for
their worker). Python 3.8 has no shutdown hook: there the handler registered
at import stops the workers after the non-daemon threads end, in the main
process and in spawn children, but fork and forkserver children end with
their workers killed wherever they stand.
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
EXITING = (
    "BackgroundGenerator stopped: the interpreter is exiting. Its worker was stopped and its "
    "source closed once the program's non-daemon threads had ended, before the atexit "
    "handlers: consume or close it before then (in the main thread or a non-daemon thread), "
    "or create it in the atexit handler that consumes it"
)
"""What every receiver of a stream stopped at exit is told, as ``RuntimeError``."""

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
        """End the stream now and wait up to ``timeout`` s for the thread to end.

        Does not wait once the interpreter is finalising: the thread can no
        longer run Python code then (and Python 3.14 refuses the join).
        """
        self.channel.close()
        if self.thread is not threading.current_thread() and not sys.is_finalizing():
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

    exc_value: Optional[BaseException]
    err_msg: Optional[str]
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


def stop_all_workers() -> None:
    """Stop and join every live worker, then close what was handed to ``close_at_exit``.

    Receivers of the streams stopped here get ``RuntimeError(EXITING)``. The
    workers are joined within ``EXIT_TIMEOUT_S`` in all, and only then are
    the closeables closed, so none is closed while a worker is inside it.
    Closing a closeable is not bounded here (Grain's iterators join their own
    threads).
    """
    workers = list(_live)
    for worker in workers:
        worker.channel.close(because=EXITING)
    deadline = monotonic() + EXIT_TIMEOUT_S
    for worker in workers:
        worker.thread.join(max(0.0, deadline - monotonic()))
    for closeable in list(_close_at_exit):
        try:
            closeable.close()
        except BaseException as error:  # one failing closeable must not cost the others
            report_unraisable(error, f"while closing {closeable!r} at exit")


def _at_shutdown() -> None:
    """``threading._shutdown()``'s hook: the main thread has finished (see the module doc)."""
    if _atexit_skipped():
        try:
            _join_other_non_daemon_threads()
        finally:  # interrupted (Ctrl-C), the child exits now: stop the workers all the same
            stop_all_workers()
        return
    try:
        atexit.unregister(stop_all_workers)
    except Exception:
        pass  # a registered callable whose __eq__ raises ends the search early
    atexit.register(stop_all_workers)


def _atexit_skipped() -> bool:
    """Whether this process is a multiprocessing child that will run no atexit handler.

    Before Python 3.13, fork and forkserver children leave through
    ``os._exit``. spawn children run them, but telling the start method apart
    in the child is unreliable (a forkserver child may import this package
    after its fork), and stopping the workers here is as good for them.
    """
    if sys.version_info >= (3, 13):
        return False
    multiprocessing = sys.modules.get("multiprocessing")
    return multiprocessing is not None and multiprocessing.parent_process() is not None


def _join_other_non_daemon_threads() -> None:
    """Join the non-daemon threads but this one and the main one, those they start included."""
    me = threading.current_thread()
    while True:
        others = [
            thread
            for thread in threading.enumerate()
            if not thread.daemon
            and thread is not me
            and thread is not threading.main_thread()
            and thread.is_alive()
        ]
        if not others:
            return
        for thread in others:
            thread.join()


def _forget_workers_after_fork() -> None:
    for worker in list(_live):
        worker.channel.on_fork_in_child()
        worker.finished = True
        worker.exit_waiters.clear()  # coroutines of the parent's event loops
    _live.clear()


atexit.register(stop_all_workers)
os.register_at_fork(after_in_child=_forget_workers_after_fork)
_shutdown_hooks = getattr(threading, "_threading_atexits", None)
if isinstance(_shutdown_hooks, list) and not getattr(threading, "_SHUTTING_DOWN", True):
    # threading._shutdown() runs its hooks last registered first: the first
    # place runs after every other hook, concurrent.futures' included, however
    # late that module is imported.
    _shutdown_hooks.insert(0, _at_shutdown)
