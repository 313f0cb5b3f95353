"""Bad arguments and misuse are refused at once, with an error that names what was wrong.

A bad argument fails at the call site, before the source is touched and before
any thread starts. Copying, pickling, and iterating a generator from inside its
own source are refused with a clear error.
"""

import asyncio
import copy
import pickle
import threading

import pytest

from conftest import live_workers
from prefetch_generator import BackgroundGenerator, background


@pytest.mark.parametrize("generator", [5, None, 3.5])
def test_a_non_iterable_source_raises_type_error_naming_the_argument(generator):
    with pytest.raises(TypeError, match="generator must be an iterable"):
        BackgroundGenerator(generator)
    assert live_workers() == []


@pytest.mark.parametrize("max_prefetch", [1.5, "2", None, True])
def test_a_non_integer_max_prefetch_raises_type_error(max_prefetch):
    with pytest.raises(TypeError, match="max_prefetch must be an int"):
        BackgroundGenerator(range(3), max_prefetch)
    assert live_workers() == []


def test_a_non_callable_preprocess_func_raises_type_error():
    with pytest.raises(TypeError, match="preprocess_func must be callable"):
        BackgroundGenerator(range(3), 1, preprocess_func=3)
    assert live_workers() == []


@pytest.mark.parametrize("argument", ["x", 2.5, None])
def test_background_with_a_non_integer_raises_type_error(argument):
    with pytest.raises(TypeError, match="max_prefetch must be an int"):
        background(argument)


def test_background_decorating_a_non_callable_raises_type_error():
    with pytest.raises(TypeError, match="decorates a callable"):
        background(2)("not a function")


def test_a_decorated_function_that_returns_a_non_iterable_names_itself_at_the_call():
    @background(2)
    def not_a_generator():
        return 42

    with pytest.raises(TypeError) as caught:
        not_a_generator()
    assert str(caught.value) == (
        "@background expects a generator function, but test_a_decorated_function_that_returns_"
        "a_non_iterable_names_itself_at_the_call.<locals>.not_a_generator() returned int, "
        "which is not iterable: make it yield its items"
    )
    assert live_workers() == []


def test_a_bare_decorated_method_that_returns_none_names_the_method():
    class Loader:
        @background
        def batches(self):
            print("forgot to yield")

    with pytest.raises(TypeError, match=r"but .*Loader\.batches\(\) returned NoneType"):
        Loader().batches()
    assert live_workers() == []


def test_a_decorated_function_may_return_any_iterable():
    @background
    def listed(count):
        return list(range(count))

    assert list(listed(3)) == [0, 1, 2]


def test_a_type_error_inside_the_sources_own_iter_is_not_masked():
    class Broken:
        def __iter__(self):
            raise TypeError("bug inside __iter__")

    with pytest.raises(TypeError, match="bug inside __iter__"):
        BackgroundGenerator(Broken())
    assert live_workers() == []


def test_background_over_something_not_callable_names_both_forms():
    with pytest.raises(TypeError, match="max_prefetch must be an int.*decorates a generator"):
        background(property(lambda self: 1))


@pytest.mark.parametrize("kind", ["async def", "async generator"])
def test_background_refuses_async_functions_when_decorating(kind):
    async def coroutine():
        pass

    async def async_generator():
        yield 1

    function = coroutine if kind == "async def" else async_generator
    with pytest.raises(TypeError, match="synchronous generator.*async function"):
        background(2)(function)


def test_a_type_that_sets_iter_to_none_gets_the_named_error():
    class NotIterable:
        __iter__ = None

    with pytest.raises(TypeError, match="generator must be an iterable, got NotIterable"):
        BackgroundGenerator(NotIterable())
    assert live_workers() == []


@pytest.mark.parametrize("timeout", ["soon", -1.0, float("nan")])
def test_a_bad_close_timeout_is_refused_before_anything_closes(timeout):
    with BackgroundGenerator(range(3)) as bg:
        with pytest.raises((TypeError, ValueError), match="timeout"):
            bg.close(timeout)
        assert list(bg) == [0, 1, 2]


def test_a_bad_preprocess_func_is_reported_before_the_source_is_touched():
    touched = []

    class Loader:
        def __iter__(self):
            touched.append("__iter__")  # a DataLoader would start its workers here
            return iter(range(3))

    with pytest.raises(TypeError, match="preprocess_func must be callable"):
        BackgroundGenerator(Loader(), 1, preprocess_func=3)
    assert touched == [] and live_workers() == []


@pytest.mark.parametrize("duplicate", [copy.copy, copy.deepcopy, pickle.dumps])
def test_a_background_generator_cannot_be_copied_or_pickled(duplicate):
    with BackgroundGenerator(range(10)) as bg:
        with pytest.raises(TypeError, match="BackgroundGenerator cannot be"):
            duplicate(bg)
        assert list(bg) == list(range(10))


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
