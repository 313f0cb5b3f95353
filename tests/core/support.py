"""What several test files of tests/core share: a bounded wait, a source, a child Python,
where a trace function may raise as a signal handler would.

``until`` polls for a state another thread reaches and gives up after a bound, so a
test fails rather than hangs. ``run_python`` runs a program in a fresh interpreter
of this Python, after ``PRELUDE`` (which imports the package and defines sources
the programs use), for what only a process of its own can show: exit, fork, output
to stderr.
"""

import dis
import os
import subprocess
import sys
import textwrap
import threading
import time


def until(condition, bound_s):
    """Whether ``condition()`` came true within ``bound_s`` seconds (polled)."""
    deadline = time.monotonic() + bound_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(1e-4)
    return True


POP_EXCEPT = dis.opmap["POP_EXCEPT"]


def a_signal_can_land_at(frame):
    """Whether a signal handler may raise at ``frame``'s next instruction.

    Tests that raise from a trace function to stand for a signal handler skip
    an ``except`` block's ``POP_EXCEPT``: CPython handles no signal there, and
    an exception raised there leaves the exception being handled set for the
    rest of the thread's life (no handler covers that instruction), chained
    to every later exception in the thread.
    """
    return frame.f_code.co_code[frame.f_lasti] != POP_EXCEPT


class Endless:
    """An endless generator that records where its ``finally`` ran."""

    def __init__(self):
        self.taken = 0
        self.closed_in = None
        self.closed = threading.Event()

    def __iter__(self):
        try:
            while True:
                self.taken += 1
                yield self.taken
        finally:
            self.closed_in = threading.current_thread().name
            self.closed.set()


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

def consume_until_exit(bg):
    # A daemon thread still consuming at exit is told so, with an error.
    try:
        for _ in bg:
            pass
    except RuntimeError as error:
        if "interpreter is exiting" not in str(error):
            raise
"""


def run_python(body, before="", **kwargs):
    """Run ``body`` after PRELUDE (which imports the package), ``before`` ahead of both."""
    code = textwrap.dedent(before) + PRELUDE + textwrap.dedent(body)
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=EXIT_BOUND_S,
        **kwargs,
    )
