"""Argument checks shared by both packages: each names the bad argument.

They run before anything starts, so a bad call leaves no thread behind and
never touches the source (a DataLoader's ``__iter__`` starts worker processes).
"""

import operator
from typing import Any, Iterable, Iterator


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


def check_iterable(iterable: object, name: str) -> None:
    """TypeError naming ``name`` unless ``iterable``'s type can be iterated.

    Checked on the type rather than by catching ``iter()``'s TypeError, which
    would also hide a TypeError raised inside a real ``__iter__``.
    """
    kind = type(iterable)
    if not (hasattr(kind, "__iter__") or hasattr(kind, "__getitem__")):
        raise TypeError(f"{name} must be an iterable, got {kind.__name__}")


def iterate(iterable: Iterable[Any], name: str) -> Iterator[Any]:
    """``iter(iterable)``, after ``check_iterable``."""
    check_iterable(iterable, name)
    return iter(iterable)
