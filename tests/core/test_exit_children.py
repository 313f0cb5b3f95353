"""Exit of multiprocessing children: fork, forkserver and spawn, each in a fresh parent process.

fork and forkserver children leave through ``os._exit``: ``atexit`` handlers do not run
there before Python 3.13, but ``threading._shutdown()`` does. Each child reports by
appending a line to a log file, which works whatever state the child dies in.
"""

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXIT_BOUND_S = 60
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")

# concurrent.futures.thread is imported first on purpose: its exit hook must still
# run before the package's, or joining its idle non-daemon workers would hang.
SCRIPT = """
from concurrent.futures import ThreadPoolExecutor
import multiprocessing, os, sys, threading, time
from prefetch_generator import BackgroundGenerator

def report(log, line):
    with open(log, "a") as file:
        file.write(line + "\\n")

def endless(log):
    try:
        i = 0
        while True:
            i += 1
            yield i
    finally:
        report(log, "source finally ran")

def break_at_once(log):
    for _ in BackgroundGenerator(endless(log)):
        break

def leave_a_live_worker_beside_an_idle_thread_pool(log):
    global pool, bg  # both still live when the child exits
    pool = ThreadPoolExecutor(1)
    pool.submit(int).result()
    bg = BackgroundGenerator(endless(log), max_prefetch=2)
    next(bg)

def consume_in_a_non_daemon_thread_after_run_returns(log):
    def slow_finite():
        for i in range(20):
            time.sleep(0.01)
            yield i
    bg = BackgroundGenerator(slow_finite(), max_prefetch=2)
    threading.Thread(target=lambda: report(log, "consumer got %d" % len(list(bg)))).start()

if __name__ == "__main__":
    method, target, log, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    context = multiprocessing.get_context(method)
    children = [context.Process(target=globals()[target], args=(log,)) for _ in range(count)]
    for child in children:
        child.start()
    for child in children:
        child.join()
    print([child.exitcode for child in children])
"""

NO_HOOK_IN_FORKED_CHILDREN = sys.version_info < (3, 9)


def start_methods():
    for method in ("fork", "forkserver", "spawn"):
        marks = []
        if method not in multiprocessing.get_all_start_methods():
            marks.append(pytest.mark.skip(reason=f"{method} is not available here"))
        elif method != "spawn" and NO_HOOK_IN_FORKED_CHILDREN:
            marks.append(
                pytest.mark.skip(
                    reason="Python 3.8 runs neither atexit handlers nor a shutdown hook in "
                    "fork and forkserver children: their workers die with them"
                )
            )
        yield pytest.param(method, marks=marks)


def run_children(tmp_path, method, target, count):
    """Run ``target`` in ``count`` children; their exit codes and the lines they logged."""
    script, log = tmp_path / "children.py", tmp_path / "log.txt"
    script.write_text(textwrap.dedent(SCRIPT))
    log.write_text("")
    parent = subprocess.Popen(
        [sys.executable, str(script), method, target, str(log), str(count)],
        env=dict(os.environ, PYTHONPATH=REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = parent.communicate(timeout=EXIT_BOUND_S)
    finally:
        try:
            os.killpg(parent.pid, signal.SIGKILL)  # a hung child would outlive its parent
        except ProcessLookupError:
            pass  # all gone
        parent.wait()
    assert (parent.returncode, stderr) == (0, "")
    return stdout, log.read_text().splitlines()


@pytest.mark.parametrize("method", list(start_methods()))
def test_every_child_runs_the_sources_finally_after_a_break(tmp_path, method):
    exit_codes, lines = run_children(tmp_path, method, "break_at_once", 4)
    assert exit_codes == "[0, 0, 0, 0]\n"
    assert lines == ["source finally ran"] * 4


@pytest.mark.parametrize("method", list(start_methods()))
def test_a_child_with_an_idle_thread_pool_and_a_live_worker_exits(tmp_path, method):
    exit_codes, lines = run_children(
        tmp_path, method, "leave_a_live_worker_beside_an_idle_thread_pool", 1
    )
    assert exit_codes == "[0]\n"
    assert lines == ["source finally ran"]


@pytest.mark.parametrize("method", list(start_methods()))
def test_a_non_daemon_thread_in_a_child_gets_every_item(tmp_path, method):
    exit_codes, lines = run_children(
        tmp_path, method, "consume_in_a_non_daemon_thread_after_run_returns", 1
    )
    assert exit_codes == "[0]\n"
    assert lines == ["consumer got 20"]
