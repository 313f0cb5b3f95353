"""Interpreter exit, fork and Ctrl-C, each in a fresh subprocess of this Python."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXIT_BOUND_S = 20

PRELUDE = """
import os, sys, threading, time
from prefetch_generator import BackgroundGenerator

def endless():
    try:
        i = 0
        while True:
            i += 1
            yield i
    finally:
        print("source finally ran", flush=True)

def slow_step():
    yield 1
    time.sleep(60)
    yield 2
"""

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
    "feeding a consumer blocked in another thread": """
        bg = BackgroundGenerator(slow_step())
        next(bg)
        threading.Thread(target=lambda: print("consumer saw", list(bg), flush=True)).start()
    """,
    "held in a reference cycle that only teardown collects": """
        class Holder:
            pass
        holder = Holder()
        holder.cycle, holder.bg = holder, BackgroundGenerator(endless(), max_prefetch=2)
        next(holder.bg)
        del holder
    """,
    "a consumer thread still taking from an endless source": """
        bg = BackgroundGenerator(endless(), max_prefetch=4)
        threading.Thread(target=lambda: [None for _ in bg]).start()
    """,
}


def run_python(body, **kwargs):
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
        env=env,
        capture_output=True,
        text=True,
        timeout=EXIT_BOUND_S,
        **kwargs,
    )


@pytest.mark.parametrize("case", list(EXIT_CASES))
def test_process_exits_cleanly_with_a_live_background_generator(case):
    result = run_python(EXIT_CASES[case])
    assert (result.returncode, result.stderr) == (0, "")


def test_a_source_suspended_at_a_yield_gets_its_finally_run_at_exit():
    result = run_python(EXIT_CASES["producer blocked on a full buffer"])
    assert "source finally ran" in result.stdout


def test_a_consumer_blocked_in_another_thread_sees_the_end_at_exit():
    result = run_python(EXIT_CASES["feeding a consumer blocked in another thread"])
    assert "consumer saw []" in result.stdout


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_can_use_new_background_generators_and_exits_cleanly():
    result = run_python("""
        import warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads, 3.12+
        inherited = BackgroundGenerator(endless(), max_prefetch=2)
        next(inherited)
        pid = os.fork()
        if pid == 0:
            assert list(inherited) == []
            assert list(BackgroundGenerator(range(100), 3)) == list(range(100))
            sys.stdout.flush()
            os._exit(0 if list(BackgroundGenerator(iter("ab"))) == ["a", "b"] else 1)
        _, status = os.waitpid(pid, 0)
        print("child status", status, flush=True)
    """)
    assert (result.returncode, result.stderr) == (0, "")
    assert "child status 0" in result.stdout


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


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("case", list(SIGINT_CASES))
def test_ctrl_c_ends_the_program_with_keyboard_interrupt(case):
    env = dict(os.environ, PYTHONPATH=REPO)
    child = subprocess.Popen(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(SIGINT_CASES[case])],
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
