"""Everything a program written for prefetch-generator 1.0.3 relies on."""

import itertools
import sys
import threading
import traceback
import warnings

import pytest

import prefetch_generator
from prefetch_generator import BackgroundGenerator, background, prefetch


def test_module_exports_the_1_0_3_names_and_a_docstring():
    from prefetch_generator import BackgroundGenerator, __doc__, background, prefetch

    assert callable(BackgroundGenerator) and callable(background) and callable(prefetch)
    assert "BackgroundGenerator" in __doc__


def test_yields_every_item_of_a_generator_in_order():
    assert list(BackgroundGenerator(x * x for x in range(100))) == [x * x for x in range(100)]


@pytest.mark.parametrize("source", [[1, 2, 3], (1, 2, 3), range(1, 4), {1: "a", 2: "b", 3: "c"}])
def test_accepts_any_iterable_not_only_iterators(source):
    assert list(BackgroundGenerator(source)) == [1, 2, 3]


def test_max_prefetch_is_positional_or_keyword():
    assert BackgroundGenerator(range(3), 100).max_prefetch == 100
    assert BackgroundGenerator(range(3), max_prefetch=2).max_prefetch == 2


@pytest.mark.parametrize("max_prefetch", [0, -1])
def test_max_prefetch_of_zero_or_less_is_unbounded(max_prefetch):
    bg = BackgroundGenerator(range(10_000), max_prefetch)
    bg._worker.thread.join(10)  # an unbounded worker finishes without any consumer
    assert not bg.is_running()
    assert bg.stats().buffered == 10_000
    assert list(bg) == list(range(10_000))


def test_is_its_own_iterator_and_has_next_method():
    bg = BackgroundGenerator(iter("abc"))
    assert iter(bg) is bg
    assert next(bg) == "a"
    assert bg.next() == "b"
    assert bg.__next__() == "c"
    with pytest.raises(StopIteration):
        next(bg)


def test_every_next_after_the_end_raises_stop_iteration():
    bg = BackgroundGenerator([1])
    assert list(bg) == [1]
    for _ in range(3):
        with pytest.raises(StopIteration):
            next(bg)


def test_an_exception_yielded_as_a_value_is_delivered_as_a_value():
    error = ValueError("I am data")
    assert list(BackgroundGenerator([error, 1])) == [error, 1]


def source_that_fails_after(n, error):
    yield from range(n)
    raise error


def test_source_error_arrives_after_every_earlier_item_as_the_same_object():
    error = ValueError("boom")
    bg = BackgroundGenerator(source_that_fails_after(5, error), max_prefetch=3)
    received = []
    with pytest.raises(ValueError) as caught:
        for item in bg:
            received.append(item)
    assert received == [0, 1, 2, 3, 4]
    assert caught.value is error
    assert caught.value.__context__ is None  # nothing of ours chained onto it


def test_source_error_keeps_the_source_frames_in_its_traceback():
    with pytest.raises(ValueError) as caught:
        list(BackgroundGenerator(source_that_fails_after(1, ValueError("boom"))))
    functions = [frame.name for frame in traceback.extract_tb(caught.value.__traceback__)]
    assert "source_that_fails_after" in functions


def test_after_an_error_every_next_raises_stop_iteration():
    bg = BackgroundGenerator(source_that_fails_after(0, KeyError("k")))
    with pytest.raises(KeyError):
        next(bg)
    for _ in range(3):
        with pytest.raises(StopIteration):
            next(bg)


def test_decorator_factory_forms_return_a_fresh_background_generator_per_call():
    @background(max_prefetch=3)
    def counted(n):
        yield from range(n)

    @background()
    def empty_parens():
        yield 1

    @prefetch_generator.prefetch(2)
    def alias():
        yield 2

    first, second = counted(3), counted(2)
    assert isinstance(first, BackgroundGenerator) and first is not second
    assert first.max_prefetch == 3
    assert (list(first), list(second)) == ([0, 1, 2], [0, 1])
    assert list(empty_parens()) == [1] and list(alias()) == [2]


def test_bare_decorator_form_works():
    @background
    def numbers():
        yield from range(3)

    assert list(numbers()) == [0, 1, 2]


def test_prefetch_is_an_alias_of_background():
    assert prefetch is background


def test_decorator_keeps_the_wrapped_functions_metadata():
    @background(max_prefetch=2)
    def documented(a, b=1):
        """Docs of documented."""
        yield a + b

    assert documented.__name__ == "documented"
    assert documented.__doc__ == "Docs of documented."
    assert documented.__wrapped__.__name__ == "documented"


def test_decorator_works_on_methods_closures_and_dunder_iter():
    offset = 10

    class Dataset:
        def __init__(self, n):
            self.n = n

        @background(max_prefetch=2)
        def __iter__(self):
            for i in range(self.n):
                yield i + offset

        @prefetch()
        def doubled(self):
            for i in range(self.n):
                yield 2 * i

    dataset = Dataset(3)
    assert list(dataset) == [10, 11, 12]
    assert list(dataset.doubled()) == [0, 2, 4]


def test_preprocess_func_still_works_and_warns_at_the_call_site():
    with pytest.warns(DeprecationWarning, match="preprocess_func") as record:
        bg = BackgroundGenerator(range(4), 1, lambda x: x + 100)
    assert record[0].filename == __file__
    assert list(bg) == [100, 101, 102, 103]


def test_preprocess_func_errors_reach_the_consumer():
    def fail(x):
        raise ArithmeticError(x)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        bg = BackgroundGenerator(range(4), preprocess_func=fail)
    with pytest.raises(ArithmeticError):
        next(bg)


def test_the_bare_decorator_uses_the_default_max_prefetch_of_1():
    @background
    def numbers():
        yield from range(3)

    with numbers() as bg:
        assert bg.max_prefetch == 1 and list(bg) == [0, 1, 2]


def test_repr_names_the_bound_and_the_state():
    bg = BackgroundGenerator(itertools.count(), 4)
    assert repr(bg) == "<BackgroundGenerator max_prefetch=4 running>"
    bg.close(timeout=None)  # the default bound is 1 s, which a busy machine can exceed
    assert repr(bg) == "<BackgroundGenerator max_prefetch=4 stopped>"


def missing_attribute_message(name):
    with pytest.raises(AttributeError) as caught:
        getattr(BackgroundGenerator(range(1)), name)
    return str(caught.value)


@pytest.mark.parametrize(
    ("name", "replacement"),
    [
        ("is_alive", "use is_running()"),
        ("join", "use close()"),
        ("start", "starts when the BackgroundGenerator is created"),
        ("run", "iterate over the BackgroundGenerator"),
        ("daemon", "stopped at interpreter exit"),
        ("name", "named 'prefetch_generator'"),
        ("queue", "stats().buffered"),
        ("generator", "keep a reference of your own"),
        ("Continue", "is_running()"),
        ("preprocess_func", "map(func, source)"),
    ],
)
def test_a_1_0_3_attribute_names_its_replacement_and_the_migration_section(name, replacement):
    message = missing_attribute_message(name)
    assert message.startswith(f"'BackgroundGenerator' object has no attribute '{name}': ")
    assert replacement in message
    assert message.endswith('(see "Migrating from 1.0.3" in the README)')


def test_every_public_thread_attribute_1_0_3_inherited_has_a_replacement():
    missing = [
        name
        for name in dir(threading.Thread)
        if not name.startswith("_") and not hasattr(BackgroundGenerator, name)
    ]
    assert missing
    for name in missing:
        assert "this one is not; " in missing_attribute_message(name), name


def test_another_missing_attribute_keeps_pythons_own_error():
    bg = BackgroundGenerator(range(1))
    with pytest.raises(AttributeError) as caught:
        bg.no_such_attribute  # noqa: B018
    assert str(caught.value) == "'BackgroundGenerator' object has no attribute 'no_such_attribute'"
    if sys.version_info >= (3, 10):  # what "Did you mean" suggestions are computed from
        assert (caught.value.name, caught.value.obj) == ("no_such_attribute", bg)
    assert not hasattr(bg, "is_alive")


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
