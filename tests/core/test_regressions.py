"""Broken promises found by trying the package adversarially, each pinned by a test."""

import asyncio
import atexit
import copy
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from conftest import live_workers
from prefetch_generator import BackgroundGenerator, background
from prefetch_generator._channel import Channel

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_garbage_collector_finalising_a_generator_in_its_own_worker_does_not_deadlock():
    # An exception caught where the loop runs makes a frame <-> traceback
    # cycle; the collector then finalises BackgroundGenerators on whatever
    # thread allocates, the workers included, in the middle of the hand-off.
    code = textwrap.dedent("""
        import gc
        from prefetch_generator import BackgroundGenerator
        gc.set_threshold(50, 1, 1)
        def batches():
            for i in range(1000):
                yield [i] * 8
        def epoch():
            bg = BackgroundGenerator(batches(), max_prefetch=16); error = None
            try:
                for n, b in enumerate(bg):
                    if n == 100: raise ValueError("early stop")
            except ValueError as e:
                error = e
        for _ in range(300): epoch()
        print("done", flush=True)
    """)
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(os.environ, PYTHONPATH=REPO),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "done\n", "")


def test_a_falsy_exception_from_the_source_is_raised_not_swallowed():
    class Falsy(Exception):
        def __bool__(self):
            return False

        def __len__(self):
            return 0

    def source():
        yield 1
        raise Falsy("falsy")

    bg = BackgroundGenerator(source())
    assert next(bg) == 1
    with pytest.raises(Falsy):
        next(bg)


@pytest.mark.parametrize(
    "take", [next, lambda bg: asyncio.run(bg.__anext__())], ids=["next", "await anext"]
)
def test_iterating_from_inside_the_source_raises_a_clear_runtime_error(take):
    holder = {}
    assigned = threading.Event()

    def source():
        yield 1
        assigned.wait(10)
        yield take(holder["bg"])

    holder["bg"] = bg = BackgroundGenerator(source())
    assigned.set()
    assert next(bg) == 1
    with pytest.raises(RuntimeError, match="from inside its own source"):
        next(bg)
    bg.close()


@pytest.mark.parametrize("duplicate", [copy.copy, copy.deepcopy, pickle.dumps])
def test_a_background_generator_cannot_be_copied_or_pickled(duplicate):
    with BackgroundGenerator(range(10)) as bg:
        with pytest.raises(TypeError, match="BackgroundGenerator cannot be"):
            duplicate(bg)
        assert list(bg) == list(range(10))


def test_a_bad_preprocess_func_is_reported_before_the_source_is_touched():
    touched = []

    class Loader:
        def __iter__(self):
            touched.append("__iter__")  # a DataLoader would start its workers here
            return iter(range(3))

    with pytest.raises(TypeError, match="preprocess_func must be callable"):
        BackgroundGenerator(Loader(), 1, preprocess_func=3)
    assert touched == [] and live_workers() == []


@pytest.mark.parametrize("method_kind", [classmethod, staticmethod])
@pytest.mark.parametrize("bare", [True, False])
def test_background_above_classmethod_or_staticmethod_keeps_the_method_kind(method_kind, bare):
    decorate = background if bare else background(max_prefetch=3)

    class Dataset:
        size = 4

        @decorate
        @method_kind
        def batches(*args):
            yield from range(Dataset.size)

    assert list(Dataset.batches()) == list(range(4))
    assert list(Dataset().batches()) == list(range(4))


def test_close_while_the_source_error_is_pending_discards_it():
    finished = threading.Event()

    def source():
        yield 1
        finished.set()
        raise ValueError("pending")

    bg = BackgroundGenerator(source(), max_prefetch=4)
    assert finished.wait(10)
    bg.close()
    with pytest.raises(StopIteration):
        next(bg)


@pytest.mark.parametrize("max_prefetch", [1, 2, 8])
def test_the_bound_holds_before_the_first_next_and_after_each(max_prefetch):
    taken = []

    def source():
        while True:
            taken.append(None)
            yield len(taken)

    bg = BackgroundGenerator(source(), max_prefetch)
    for consumed in range(50):
        deadline = time.monotonic() + 10
        while not bg._channel.parked and time.monotonic() < deadline:
            time.sleep(0.0005)  # waits for a state, bounded; not a fixed delay
        assert len(taken) - consumed <= max_prefetch + 1
        next(bg)
    bg.close()


def test_len_is_the_length_of_the_wrapped_iterable_and_bool_is_always_true():
    bg = BackgroundGenerator([1, 2, 3])
    assert len(bg) == 3
    next(bg)
    assert len(bg) == 3  # the items it gives in all, as len(loader)
    gen = BackgroundGenerator(x for x in ())
    with pytest.raises(TypeError):
        len(gen)
    assert bool(gen) and bool(BackgroundGenerator([]))


def test_an_integral_float_max_prefetch_is_accepted_as_in_1_0_3():
    assert BackgroundGenerator(range(3), 2.0).max_prefetch == 2


def test_starting_workers_without_new_imports_leaves_the_exit_handler_list_as_it_is():
    # Each move of the exit handler leaves a slot behind in atexit's table.
    next(BackgroundGenerator(iter([1])))  # moves it once, after this suite's imports
    before = atexit._ncallbacks()
    for _ in range(50):
        next(BackgroundGenerator(iter([1])))
    assert atexit._ncallbacks() == before


def test_an_ending_sent_after_close_is_not_raised():
    channel = Channel(2)
    channel.close()
    channel.finish(ValueError("the source failed as it was being closed"))
    with pytest.raises(StopIteration):
        channel.raise_if_drained()
