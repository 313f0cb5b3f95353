"""Argument checks shared by both packages: each names the bad argument.

They run before anything starts, so a bad call leaves no thread behind and
never touches the source (a DataLoader's ``__iter__`` starts worker processes).
"""

import operator
from typing import Any, Iterable, Iterator, Optional


def checked_max_prefetch(max_prefetch: object, name: str = "max_prefetch") -> int:
    """``max_prefetch`` as an int; TypeError naming ``name`` for anything else.

    Integral floats such as ``2.0`` are accepted, as 1.0.3 accepted them (it
    handed the value to ``queue.Queue``). ``bool`` and fractional floats are
    refused: they are almost always a mistake.
    """
    if not isinstance(max_prefetch, bool):
        if isinstance(max_prefetch, float) and max_prefetch.is_integer():
            return int(max_prefetch)
        try:
            return operator.index(max_prefetch)  # type: ignore[arg-type]
        except TypeError:
            pass
    raise TypeError(f"{name} must be an int, got {type(max_prefetch).__name__} {max_prefetch!r}")


def checked_timeout(timeout: object) -> Optional[float]:
    """``timeout`` as seconds >= 0, or None (no bound); TypeError or ValueError naming it."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, got {timeout!r}")
    if not timeout >= 0:
        raise ValueError(f"timeout must be >= 0, got {timeout!r}")
    return float(timeout)


def is_iterable(candidate: object) -> bool:
    """Whether ``candidate``'s type can be iterated, without calling ``iter()``.

    Checked on the type rather than by catching ``iter()``'s TypeError, which
    would also hide a TypeError raised inside a real ``__iter__``. A type may
    set ``__iter__ = None`` to say it is not iterable.
    """
    kind = type(candidate)
    return (
        getattr(kind, "__iter__", None) is not None
        or getattr(kind, "__getitem__", None) is not None
    )


def check_iterable(iterable: object, name: str) -> None:
    """TypeError naming ``name`` unless ``iterable`` is iterable (see ``is_iterable``)."""
    if not is_iterable(iterable):
        raise TypeError(f"{name} must be an iterable, got {type(iterable).__name__}")


def iterate(iterable: Iterable[Any], name: str) -> Iterator[Any]:
    """``iter(iterable)``, after ``check_iterable``."""
    check_iterable(iterable, name)
    return iter(iterable)
