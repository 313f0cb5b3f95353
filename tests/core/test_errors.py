"""The source's errors: each reaches exactly one consumer, as itself, after every earlier item.

Whatever the source raises (an ``Exception``, even a falsy one or an ``IndexError``
that the buffer itself could raise, or a ``BaseException``) is raised as the same
object in one consumer, after every item the source yielded before it; then the
stream is over. ``close()`` discards an error nobody received. An error raised
while the source is being closed is reported through ``sys.unraisablehook``,
never lost, and the worker still ends.
"""

import sys
import threading

import pytest
from support import run_python

from prefetch_generator import BackgroundGenerator
from prefetch_generator._channel import Channel


@pytest.mark.parametrize("error_type", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_base_exceptions_from_the_source_reach_the_consumer(error_type):
    def source():
        yield 1
        raise error_type("from source")

    bg = BackgroundGenerator(source())
    assert next(bg) == 1
    with pytest.raises(error_type, match="from source"):
        next(bg)
    with pytest.raises(StopIteration):
        next(bg)


def test_a_source_error_is_raised_in_exactly_one_of_several_consumers():
    def source():
        yield from range(1000)
        raise ValueError("once")

    bg = BackgroundGenerator(source(), max_prefetch=2)
    errors = []

    def consume():
        try:
            for _ in bg:
                pass
        except ValueError as error:
            errors.append(error)

    threads = [threading.Thread(target=consume) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(errors) == 1


def test_an_index_error_from_the_source_reaches_the_consumer_as_itself():
    # The channel takes the error from a deque that raises IndexError when empty.
    error = IndexError("from the source")

    def source():
        yield 1
        raise error

    bg = BackgroundGenerator(source())
    assert next(bg) == 1
    with pytest.raises(IndexError) as raised:
        next(bg)
    assert raised.value is error
    with pytest.raises(StopIteration):
        next(bg)


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


def test_a_source_error_that_arrives_after_close_is_not_raised():
    channel = Channel(2)
    channel.close()
    channel.finish(ValueError("the source failed as it was being closed"))
    with pytest.raises(StopIteration):
        channel.raise_if_drained()


def test_an_error_raised_while_closing_the_source_goes_to_unraisablehook(monkeypatch):
    reported = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)

    def fails_on_close():
        try:
            while True:
                yield 1
        finally:
            raise RuntimeError("cleanup failed")

    bg = BackgroundGenerator(fails_on_close())
    next(bg)
    bg.close()
    assert len(reported) == 1
    assert isinstance(reported[0].exc_value, RuntimeError)
    assert "closing the source" in reported[0].err_msg


def test_an_error_closing_the_source_is_reported_and_the_worker_still_ends():
    result = run_python("""
        def fails_on_close():
            try:
                while True:
                    yield 1
            finally:
                raise ValueError("cleanup failed")
        bg = BackgroundGenerator(fails_on_close())
        next(bg)
        bg.close()
        print("running:", bg.is_running(), flush=True)
    """)
    assert result.returncode == 0
    assert result.stdout == "running: False\n"
    assert result.stderr.startswith(
        "Exception ignored while closing the source of a BackgroundGenerator:\nTraceback"
    )
    assert result.stderr.rstrip().endswith("ValueError: cleanup failed")
