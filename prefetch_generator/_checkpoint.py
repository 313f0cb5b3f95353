"""Checkpoints carried beside items: the state of the source as of the last item delivered.

A source may have ``state_dict()`` (torch's ``Stateful``: torchdata's
``StatefulDataLoader``) or ``get_state()`` (Grain's ``DatasetIterator``). A
BackgroundGenerator over it takes each state in the worker right after the
item it follows (``with_states``), carries it beside the item through the
buffer, and records it when a consumer receives the item (``Delivered``). Its
``state_dict()`` and ``get_state()`` (``StateRelay``) read the newest state
recorded; items still buffered do not count, so restoring the source from
that state and wrapping it again goes on with the first item no consumer
received.

Promises: a read never blocks, never touches the source and is thread-safe
(exact while fewer than ``RECENT_RECORDS`` threads consume at once); from
Python 3.11 on an interrupt cannot make it count an item that was taken but
not handed out (the record is stored with no call before the item's return,
and an item put back also undoes its record). ``find_state_methods`` is what
both packages use to find a source's methods, looking through stacked
stages to the innermost source.

Nothing here holds a reference to the BackgroundGenerator, so dropping it
still frees it at once.
"""

from collections import deque
from operator import itemgetter
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

STATE_METHODS = ("state_dict", "get_state")
"""The checkpoint methods a source may have: torch's ``Stateful``, Grain's ``DatasetIterator``."""

# Consumers store each delivered item's state in slot ``number % RECENT_RECORDS``
# of a list, and a state read takes the newest. A consumer holds at most one
# item it has taken but not yet recorded, so a record can only be overwritten
# by an older one if a consumer stalls for this many items between taking an
# entry and storing its record: never while fewer threads consume at once.
RECENT_RECORDS = 64


class StateRelay:
    """The checkpoint methods of a BackgroundGenerator, which derives from this.

    It sets ``_delivered`` (None for a source without states) and
    ``_iterable`` (the source, to name it in errors).
    """

    _delivered: Optional["Delivered"]
    _iterable: object

    def state_dict(self) -> Any:
        """The source's ``state_dict()`` as of the last item delivered to a consumer.

        For a source with ``state_dict()`` (torch's ``Stateful``: torchdata's
        ``StatefulDataLoader`` and its iterators): the value it returned right
        after producing the last item that ``next()``/``anext()`` returned to
        any consumer thread; before any, its value at construction; once a
        consumer has seen the end of the source, its value after the end.
        Items still buffered are not counted, so restoring the source from
        this state (``loader.load_state_dict(state)``) and wrapping it again
        goes on with the first item no consumer received.

        The worker takes the state in its own thread right after each item and
        the consumer's ``next()`` keeps it; this method only reads it: it
        never blocks, never touches the source, and is thread-safe (correct
        for up to 64 threads consuming at once). The object returned is the
        one the source returned; it does not change as the source goes on, as
        long as the source returns a new object each call (torchdata's and
        Grain's do). After the source raised, or after ``close()``, it is
        still the state as of the last item delivered.

        TypeError when the source has no ``state_dict()`` (a generator has no
        state to save).
        """
        return self._state("state_dict")

    def get_state(self) -> Any:
        """The source's ``get_state()`` as of the last item delivered to a consumer.

        For a source with ``get_state()`` (Grain's ``DatasetIterator``);
        otherwise as ``state_dict()``: restore with ``iterator.set_state(state)``
        and wrap again. TypeError when the source has no ``get_state()``.
        """
        return self._state("get_state")

    def _state(self, name: str) -> Any:
        delivered = self._delivered
        if delivered is None or name not in delivered.names:
            source = type(self._iterable).__name__
            other = f"; it has {delivered.names[0]}()" if delivered is not None else ""
            raise TypeError(
                f"BackgroundGenerator.{name}() needs a source with a {name}() method, "
                f"and {source} has none{other}"
            )
        return delivered.latest(name)


def find_state_methods(
    source: Iterator[Any], iterable: Iterable[Any]
) -> Dict[str, Callable[[], Any]]:
    """The checkpoint methods of ``source``, by name, each looked up on the iterator first.

    An iterable whose iterator lacks the method may have it itself (a class
    whose ``__iter__`` is a generator function and whose ``state_dict()``
    follows it).
    """
    methods = {}
    for name in STATE_METHODS:
        for holder in (source, iterable):
            method = _state_method(holder, name)
            if method is not None:
                methods[name] = method
                break
    return methods


def _state_method(holder: object, name: str) -> Optional[Callable[[], Any]]:
    if isinstance(holder, StateRelay):
        # Both methods always exist on it: count only those its source has,
        # so stacked stages expose the innermost source's state.
        delivered = holder._delivered
        return getattr(holder, name) if delivered and name in delivered.names else None
    method = getattr(holder, name, None)
    return method if callable(method) else None


_sequence_number = itemgetter(0)


class Delivered:
    """The states of a source that has them, as delivered to consumers.

    The worker sends ``(item, slot, record)`` entries, a record being
    ``(sequence number, *states)`` and its slot the number modulo
    ``RECENT_RECORDS``. The consumer that takes an entry stores the record in
    its slot of ``records`` and returns the item, with no call in between;
    an entry put back goes to the front of the buffer. The latest delivered
    state is therefore that of the newest record older than the buffer's
    first entry: putting an entry back is one C call that also undoes its
    record, whenever the interrupt came. Holds no reference to the
    BackgroundGenerator, so dropping it still frees it at once.
    """

    __slots__ = ("names", "records", "buffer", "end_record")

    def __init__(self, names: Tuple[str, ...], initial: Tuple[Any, ...], buffer: deque) -> None:
        self.names = names
        # A list of fixed length: a store never resizes it, so a copy taken
        # while consumers store is one C call, with or without the GIL.
        self.records: List[Tuple[Any, ...]] = [(-1, *initial)] * RECENT_RECORDS
        self.buffer = buffer
        self.end_record: Optional[Tuple[Any, ...]] = None

    def saw_the_end(self) -> None:
        record = self.end_record
        if record is not None:
            self.records[record[0] % RECENT_RECORDS] = record

    def latest(self, name: str) -> Any:
        records = self.records.copy()
        try:
            first_buffered = self.buffer[0][2][0]
        except IndexError:
            first_buffered = None
        if first_buffered is not None:
            records = [record for record in records if record[0] < first_buffered]
        record = max(records, key=_sequence_number)
        return record[1 + self.names.index(name)]


def with_states(
    source: Iterator[Any], takes: Tuple[Callable[[], Any], ...], delivered: Delivered
) -> Iterator[Any]:
    """``(item, slot, record)`` for each item of ``source``, its states taken right after it.

    Runs in the worker. At the end it leaves the states after the end with
    ``delivered``, for the consumer that sees the end.
    """
    number = 0
    for item in source:
        yield item, number % RECENT_RECORDS, (number, *[take() for take in takes])
        number += 1
    delivered.end_record = (number, *[take() for take in takes])
