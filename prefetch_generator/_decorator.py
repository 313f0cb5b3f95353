"""``background`` (alias ``prefetch``): run a generator function in the background."""

import functools
import inspect
from typing import Any, Callable, Iterable, TypeVar, overload

from ._background import BackgroundGenerator
from ._checks import checked_max_prefetch

T = TypeVar("T")
GeneratorFunction = Callable[..., Iterable[T]]
BackgroundFunction = Callable[..., BackgroundGenerator[T]]


@overload
def background(max_prefetch: GeneratorFunction[T]) -> BackgroundFunction[T]: ...


@overload
def background(
    max_prefetch: int = 1,
) -> Callable[[GeneratorFunction[T]], BackgroundFunction[T]]: ...


def background(max_prefetch: Any = 1) -> Any:
    """Decorate a generator function so each call returns a fresh BackgroundGenerator.

    ``@background(max_prefetch=N)`` and ``@background()`` as in 1.0.3, and the
    bare ``@background``. Works on functions, methods and closures; the wrapper
    keeps the function's name, docstring and signature (``functools.wraps``).
    Above ``@classmethod`` or ``@staticmethod`` it decorates the function
    inside and keeps the method kind. ``max_prefetch`` is checked here, at
    decoration time.
    """
    if callable(max_prefetch) or isinstance(max_prefetch, (classmethod, staticmethod)):
        return _decorate(max_prefetch, 1)
    try:
        max_prefetch = checked_max_prefetch(max_prefetch)
    except TypeError as error:
        raise TypeError(f"{error}; or @background decorates a generator function") from None

    def decorator(function: GeneratorFunction[T]) -> BackgroundFunction[T]:
        return _decorate(function, max_prefetch)

    return decorator


def _decorate(function: Any, max_prefetch: int) -> Any:
    if isinstance(function, (classmethod, staticmethod)):
        return type(function)(_decorate(function.__func__, max_prefetch))
    if not callable(function):
        raise TypeError(f"background(...) decorates a callable, got {type(function).__name__}")
    if inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function):
        raise TypeError(
            "background(...) runs a synchronous generator in a thread; "
            f"{function.__qualname__} is an async function"
        )

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> BackgroundGenerator[T]:
        return BackgroundGenerator(function(*args, **kwargs), max_prefetch)

    return wrapper


prefetch = background
