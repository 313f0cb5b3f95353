"""Interpreter exit, fork and Ctrl-C: a program ends on time and every source is closed.

Whatever its generators are doing when the program ends (a worker blocked on a
full buffer or inside a slow step, a daemon thread still consuming, a generator
started by an exit handler), it exits promptly, runs each source's ``finally``,
and leaves the exit handlers of the program and its libraries working. A forked
child is told its inherited generators are not running and may start new ones;
Ctrl-C ends the program with ``KeyboardInterrupt``. Each case runs in a fresh
subprocess of this Python.
"""

import atexit
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from support import EXIT_BOUND_S, PRELUDE, REPO, run_python

from prefetch_generator import BackgroundGenerator
from prefetch_generator._channel import GIL_ENABLED

EXIT_CASES = {
    "producer blocked on a full buffer": """
        bg = BackgroundGenerator(endless(), max_prefetch=2)
        next(bg)
    """,
    "producer inside a slow source step": """
        bg = BackgroundGenerator(slow_step())
        next(bg)
    """,
    "finished with items still buffered": """
        bg = BackgroundGenerator(range(5), max_prefetch=10)
        next(bg)
        bg._worker.thread.join(10)
    """,
    "feeding a daemon consumer blocked in another thread": """
        bg = BackgroundGenerator(slow_step())
        next(bg)
        threading.Thread(target=consume_until_exit, args=(bg,), daemon=True).start()
    """,
    "held in a reference cycle that only teardown collects": """
        class Holder:
            pass
        holder = Holder()
        holder.cycle, holder.bg = holder, BackgroundGenerator(endless(), max_prefetch=2)
        next(holder.bg)
        del holder
    """,
    "a daemon consumer thread still taking from an endless source": """
        bg = BackgroundGenerator(endless(), max_prefetch=4)
        threading.Thread(target=consume_until_exit, args=(bg,), daemon=True).start()
    """,
    "another thread joining every other non-daemon thread": """
        bg = BackgroundGenerator(endless(), max_prefetch=2)
        next(bg)
        def join_the_others():
            for thread in threading.enumerate():
                if thread not in (threading.current_thread(), threading.main_thread()):
                    if not thread.daemon:
                        thread.join()
        threading.Thread(target=join_the_others).start()
    """,
    "threads creating background generators while the main thread returns": """
        def churn():
            while True:
                try:
                    next(BackgroundGenerator(endless(), max_prefetch=1))
                except RuntimeError:  # 3.12 starts no thread once shutdown has begun
                    return
        for _ in range(2):
            threading.Thread(target=churn, daemon=True).start()
        time.sleep(0.05)  # let the churn run; exit must cope with it at any point
    """,
}


@pytest.mark.parametrize("case", list(EXIT_CASES))
def test_process_exits_cleanly_with_a_live_background_generator(case):
    result = run_python(EXIT_CASES[case])
    assert (result.returncode, result.stderr) == (0, "")


def test_a_source_suspended_at_a_yield_gets_its_finally_run_at_exit():
    result = run_python(EXIT_CASES["producer blocked on a full buffer"])
    assert "source finally ran" in result.stdout


def test_a_non_daemon_thread_gets_every_item_of_a_finite_stream_after_main_returns():
    result = run_python("""
        def slow_finite():
            for i in range(20):
                time.sleep(0.01)
                yield i
        bg = BackgroundGenerator(slow_finite(), max_prefetch=2)
        threading.Thread(target=lambda: print("consumer got", len(list(bg)), flush=True)).start()
    """)
    assert (result.returncode, result.stderr, result.stdout) == (0, "", "consumer got 20\n")


DRAIN_AT_EXIT = """
import atexit
def drain():
    try:
        print("drained", sum(1 for _ in bg), "items and a normal end")
    except RuntimeError as error:
        print("RuntimeError:", error)
atexit.register(drain)
"""


@pytest.mark.parametrize("registered", ["before the import", "after the generator started"])
def test_an_atexit_handler_draining_a_live_generator_is_not_told_a_false_end(registered):
    # Workers are stopped before the atexit handlers run; a handler that then
    # drains one must not take the stop for the end of the stream.
    before, after = (DRAIN_AT_EXIT, "") if registered.startswith("before") else ("", DRAIN_AT_EXIT)
    started = "bg = BackgroundGenerator(range(500), max_prefetch=1)\nnext(bg)\n"
    result = run_python(started + after, before=before)
    assert (result.returncode, result.stderr) == (0, "")
    if sys.version_info < (3, 9) and "after" in registered:
        # No shutdown hook: a handler registered after the import runs before ours.
        assert result.stdout == "drained 499 items and a normal end\n"
    else:
        assert result.stdout.startswith(
            "RuntimeError: BackgroundGenerator stopped: the interpreter is exiting."
        )


def test_a_daemon_thread_still_consuming_at_exit_gets_an_error_naming_the_exit():
    # An atexit handler registered before the import runs after the workers
    # are stopped: it waits there for the daemon thread's verdict, which the
    # daemon thread may not live to print itself.
    verdict = """
        import atexit, threading
        got, told = [], threading.Event()
        atexit.register(lambda: print(told.wait(10), type(got[-1]).__name__, got[-1], flush=True))
    """
    result = run_python(
        """
        def consume():
            try:
                for item in bg:
                    got.append(item)
            except BaseException as error:
                got.append(error)
            told.set()
        bg = BackgroundGenerator(slow_step())
        next(bg)
        threading.Thread(target=consume, daemon=True).start()
        """,
        before=verdict,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith(
        "True RuntimeError BackgroundGenerator stopped: the interpreter is exiting."
    )


def test_creating_generators_while_modules_come_and_go_adds_no_exit_handlers():
    # Plugin loaders and mock.patch.dict(sys.modules) change the module count
    # between creations; atexit never reuses a slot a handler left.
    result = run_python("""
        import atexit, types
        before = atexit._ncallbacks()
        for i in range(5000):
            if i % 2:
                sys.modules["a_passing_module"] = types.ModuleType("a_passing_module")
            else:
                sys.modules.pop("a_passing_module", None)
            BackgroundGenerator(iter(())).close()
        print(atexit._ncallbacks() - before)
    """)
    assert (result.returncode, result.stderr, result.stdout) == (0, "", "0\n")


def test_an_idle_thread_pool_and_a_live_worker_do_not_hold_up_exit():
    # The pool's non-daemon workers leave only when concurrent.futures' own
    # exit hook wakes them: imported first, it must still get to run.
    result = run_python(
        """
        pool = ThreadPoolExecutor(2)
        pool.submit(int).result()
        bg = BackgroundGenerator(endless(), max_prefetch=2)
        next(bg)
        """,
        before="from concurrent.futures import ThreadPoolExecutor\n",
    )
    assert (result.returncode, result.stderr, result.stdout) == (0, "", "source finally ran\n")


NO_NEW_THREADS_IN_SHUTDOWN = pytest.mark.skipif(
    sys.version_info[:2] == (3, 12),
    reason="CPython 3.12 refuses to start any thread once the main thread has returned",
)


@NO_NEW_THREADS_IN_SHUTDOWN
def test_a_generator_created_after_main_returned_gets_its_source_closed_at_exit():
    result = run_python("""
        def after_main():
            threading.main_thread().join()
            bg = BackgroundGenerator(endless(), max_prefetch=2)
            print("took", next(bg), flush=True)
        threading.Thread(target=after_main).start()
    """)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "took 1\nsource finally ran\n"


# A library that, as JAX does, registers its exit handler when imported.
LIBRARY_TEARDOWN = """
import importlib.util, pathlib, sys, tempfile
library = pathlib.Path(tempfile.mkdtemp()) / "some_library.py"
library.write_text("import atexit; atexit.register(lambda: print('library teardown', flush=True))")
spec = importlib.util.spec_from_file_location("some_library", library)
sys.modules["some_library"] = module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
"""
IMPORT_ORDERS = {
    "library imported before prefetch_generator": (LIBRARY_TEARDOWN, ""),
    "library imported after the generator started": ("", LIBRARY_TEARDOWN),
}
NEEDS_SHUTDOWN_HOOK = pytest.mark.skipif(
    sys.version_info < (3, 9),
    reason="Python 3.8 has no hook at the start of shutdown: only a worker started "
    "after the library's import puts the exit handler ahead of the library's",
)


@pytest.mark.parametrize(
    "order",
    [
        pytest.param(order, marks=[NEEDS_SHUTDOWN_HOOK] if "after" in order else [])
        for order in IMPORT_ORDERS
    ],
)
def test_sources_are_closed_before_the_exit_handlers_of_libraries(order):
    # JAX's exit handler tears down its runtime: a worker still inside a
    # transfer then aborts the process. Workers must be stopped before it.
    before, after = IMPORT_ORDERS[order]
    started = "bg = BackgroundGenerator(endless(), max_prefetch=2)\nnext(bg)\n"
    result = run_python(started + after, before=before)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "source finally ran\nlibrary teardown\n"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_can_use_new_background_generators_and_exits_cleanly():
    result = run_python("""
        import warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads, 3.12+
        inherited = BackgroundGenerator(endless(), max_prefetch=2)
        next(inherited)
        pid = os.fork()
        if pid == 0:
            try:
                next(inherited)
                os._exit(2)  # an inherited stream must not go on, nor end silently
            except RuntimeError as error:
                assert "before os.fork()" in str(error)
            assert list(BackgroundGenerator(range(100), 3)) == list(range(100))
            sys.stdout.flush()
            os._exit(0 if list(BackgroundGenerator(iter("ab"))) == ["a", "b"] else 1)
        _, status = os.waitpid(pid, 0)
        print("child status", status, flush=True)
    """)
    assert (result.returncode, result.stderr) == (0, "")
    assert "child status 0" in result.stdout


# A process started in the background by a shell inherits SIGINT ignored, and
# Python then installs no handler: install the usual one, whatever the parent.
CTRL_C_HANDLER = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"

SIGINT_CASES = {
    "while the consumer waits": """
        bg = BackgroundGenerator(slow_step())
        next(bg)
        print("ready", flush=True)
        next(bg)
    """,
    "while the producer runs": """
        def busy():
            while True:
                yield sum(range(1000))
        bg = BackgroundGenerator(busy(), max_prefetch=4)
        print("ready", flush=True)
        for _ in bg:
            pass
    """,
    "inside the finally of the source": """
        entered = threading.Event()
        def finally_blocks():
            try:
                yield 1
            finally:
                entered.set()
                time.sleep(60)
        bg = BackgroundGenerator(finally_blocks())
        next(bg)
        threading.Thread(target=bg.close, daemon=True).start()
        entered.wait(10)
        print("ready", flush=True)
        threading.Event().wait(60)
    """,
}


FREE_THREADED_MISSES_SIGINT = pytest.mark.xfail(
    not GIL_ENABLED,
    strict=False,
    reason="free-threaded CPython 3.13 itself misses some SIGINTs sent as the main thread "
    "starts to wait: with no library code (one daemon thread in time.sleep, the main "
    "thread in threading.Event().wait(60), SIGINT sent on 'ready'), 1 run in 12 hung",
)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@FREE_THREADED_MISSES_SIGINT
@pytest.mark.parametrize("case", list(SIGINT_CASES))
def test_ctrl_c_ends_the_program_with_keyboard_interrupt(case):
    env = dict(os.environ, PYTHONPATH=REPO)
    child = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_HANDLER + PRELUDE + textwrap.dedent(SIGINT_CASES[case])],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline() == "ready\n"
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=EXIT_BOUND_S)
    finally:
        child.kill()
        child.wait()
    assert child.returncode != 0
    assert stderr.rstrip().endswith("KeyboardInterrupt")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("max_prefetch", [1, 8])
def test_a_storm_of_ctrl_c_during_next_leaves_no_hang_no_duplicate_no_loss(max_prefetch):
    # As in a notebook: interrupt the loop, iterate again. Each item taken
    # from the buffer belongs to the consumer, so nothing may go missing.
    result = run_python(f"""
        import signal
        items = 20000
        bg = BackgroundGenerator(range(items), max_prefetch={max_prefetch})
        consuming, done = [False], threading.Event()
        def ctrl_c(*_):
            if consuming[0]:
                consuming[0] = False  # once per pass: never outside the try below
                raise KeyboardInterrupt
        signal.signal(signal.SIGINT, ctrl_c)
        def interrupt():
            while not done.is_set():
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
                time.sleep(0.0002)
        received, interrupts = [], 0
        interrupter = threading.Thread(target=interrupt, daemon=True)
        interrupter.start()
        while True:
            try:
                consuming[0] = True
                for item in bg:
                    received.append(item)
                consuming[0] = False
                break
            except KeyboardInterrupt:
                interrupts += 1
        done.set()
        interrupter.join()
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # one may still be in flight
        missing = sorted(set(range(items)) - set(received))
        print(interrupts > 10, received == sorted(set(received)), len(missing))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "True True 0\n"


@NO_NEW_THREADS_IN_SHUTDOWN
def test_a_generator_created_in_an_exit_handler_after_an_import_keeps_the_exit_handler():
    result = run_python("""
        import atexit, tempfile, pathlib
        bg = BackgroundGenerator(endless(), max_prefetch=2)
        next(bg)
        folder = tempfile.mkdtemp()
        pathlib.Path(folder, "late_module.py").write_text("")
        sys.path.insert(0, folder)
        def at_exit():
            import late_module
            with BackgroundGenerator(endless(), max_prefetch=2) as late:
                next(late)
        atexit.register(at_exit)
    """)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "source finally ran\nsource finally ran\n"


@NO_NEW_THREADS_IN_SHUTDOWN
def test_with_in_an_exit_handler_that_runs_after_ours_still_closes_the_source():
    result = run_python(
        "",
        before="""
        import atexit
        def save_at_exit():
            with BackgroundGenerator(endless()) as bg:
                next(bg)
            print("running:", bg.is_running(), flush=True)
        atexit.register(save_at_exit)
        """,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "source finally ran\nrunning: False\n"


def test_a_closeable_registered_for_exit_is_closed_only_after_its_worker_left_it():
    result = run_python("""
        from prefetch_generator._worker import close_at_exit
        class Source:
            inside = False
            def __iter__(self):
                return self
            def __next__(self):
                self.inside = True
                time.sleep(0.2)
                self.inside = False
                return 1
            def close(self):
                print("closed in", threading.current_thread().name, "inside:", self.inside)
        source = Source()
        close_at_exit(source)
        bg = BackgroundGenerator(source)
        next(bg)
    """)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines()[0] == "closed in prefetch_generator inside: False"
    assert "inside: True" not in result.stdout


def test_an_exit_handler_whose_eq_raises_does_not_cost_ours():
    result = run_python("""
        import atexit, json
        class Odd:
            def __call__(self):
                pass
            def __eq__(self, other):
                raise TypeError("ambiguous comparison")
            __hash__ = object.__hash__
        atexit.register(Odd())
        import fractions, decimal  # new modules: the handler moves on the next start
        bg = BackgroundGenerator(endless(), max_prefetch=2)
        next(bg)
    """)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "source finally ran\n"


def test_a_closeable_that_raises_system_exit_at_exit_does_not_cost_the_others():
    result = run_python("""
        from prefetch_generator._worker import close_at_exit
        class Exits:
            def close(self):
                raise SystemExit(3)
        class Prints:
            def close(self):
                print("closed the other", flush=True)
        first, second = Exits(), Prints()
        close_at_exit(first)
        close_at_exit(second)
    """)
    assert result.returncode == 0
    assert result.stdout == "closed the other\n"
    assert "SystemExit: 3" in result.stderr


def test_starting_workers_without_new_imports_leaves_the_exit_handler_list_as_it_is():
    # Each move of the exit handler leaves a slot behind in atexit's table.
    next(BackgroundGenerator(iter([1])))  # moves it once, after this suite's imports
    before = atexit._ncallbacks()
    for _ in range(50):
        next(BackgroundGenerator(iter([1])))
    assert atexit._ncallbacks() == before


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_an_inherited_generator_is_not_running_in_a_forked_child():
    result = run_python("""
        import warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads, 3.12+
        bg = BackgroundGenerator(endless(), max_prefetch=2)
        next(bg)
        pid = os.fork()
        if pid == 0:
            try:
                next(bg)
            except RuntimeError as error:  # never a silent end
                os._exit(0 if not bg.is_running() and "os.fork()" in str(error) else 1)
            os._exit(1)
        print("child status", os.waitpid(pid, 0)[1], flush=True)
    """)
    assert "child status 0" in result.stdout
