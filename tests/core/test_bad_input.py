"""Bad arguments fail at the call site, name the argument, and start nothing."""

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
