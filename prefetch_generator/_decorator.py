"""``background`` (alias ``prefetch``): run a generator function in the background."""

import functools
import inspect
from typing import TYPE_CHECKING, Any, Callable, Iterable, TypeVar, overload

from ._background import BackgroundGenerator
from ._checks import checked_max_prefetch, is_iterable

T = TypeVar("T")

if TYPE_CHECKING:
    # Type checkers read ParamSpec from typing_extensions on every Python version (their own
    # stubs ship it); at run time nothing is imported, so 3.8 and 3.9 need no dependency.
    from typing import Protocol

    from typing_extensions import ParamSpec

    P = ParamSpec("P")

    class Decorator(Protocol):
        """What ``@background(max_prefetch=...)`` returns: keeps the parameters."""

        def __call__(
            self, function: Callable[P, Iterable[T]]
        ) -> Callable[P, BackgroundGenerator[T]]: ...


@overload
def background(
    max_prefetch: "Callable[P, Iterable[T]]",
) -> "Callable[P, BackgroundGenerator[T]]": ...


@overload
def background(max_prefetch: int = 1) -> "Decorator": ...


def background(max_prefetch: Any = 1) -> Any:
    """Decorate a generator function so each call returns a fresh BackgroundGenerator.

    ``@background(max_prefetch=N)`` and ``@background()`` as in 1.0.3, and the
    bare ``@background``. Works on functions, methods and closures; the wrapper
    keeps the function's name, docstring and signature (``functools.wraps``),
    and type checkers see its parameters. Above ``@classmethod`` or
    ``@staticmethod`` it decorates the function inside and keeps the method
    kind. ``max_prefetch`` is checked here, at decoration time; a call whose
    function returns something that is not iterable raises TypeError naming
    the function.
    """
    if callable(max_prefetch) or isinstance(max_prefetch, (classmethod, staticmethod)):
        return _decorate(max_prefetch, 1)
    try:
        max_prefetch = checked_max_prefetch(max_prefetch)
    except TypeError as error:
        raise TypeError(f"{error}; or @background decorates a generator function") from None
    return functools.partial(_decorate, max_prefetch=max_prefetch)


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
    name = getattr(function, "__qualname__", repr(function))

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> BackgroundGenerator[Any]:
        source: Any = function(*args, **kwargs)
        if not is_iterable(source):
            raise TypeError(
                f"@background expects a generator function, but {name}() returned "
                f"{type(source).__name__}, which is not iterable: make it yield its items"
            )
        return BackgroundGenerator(source, max_prefetch)

    return wrapper


prefetch = background
