"""A plain iterator as a ``grain.IterDataset``, so Grain's pipeline can consume it.

``grain.experimental.device_put`` accepts only an ``IterDataset``; handed a
generator it drains it at construction. ``IteratorDataset`` wraps the iterator
lazily: nothing is taken until Grain's prefetch thread calls ``next()``, so an
endless generator works. It is one pass (a second ``iter()`` raises
``RuntimeError``); its state is the wrapped iterator's own when that has
``get_state``/``set_state`` (a Grain ``DatasetIterator``), else empty (Grain's
prefetch asks its parent for a state at every element) and not restorable;
closing its iterator closes the source iterator when that has ``close()``.

``ClosedAtExitDataset`` joins each iterator it makes to the core's exit
handling: one still open at interpreter exit is closed (its threads joined,
its source's ``finally`` run) before JAX is torn down. Given the message of the
TypeError a stateless source deserves, its iterators raise it from ``get_state()`` and
``set_state()``, so the user learns it when saving, not when resuming.

Imports grain only; it does not need jax.
"""

from typing import Any, Callable, Dict, Iterator, Optional

import grain

from prefetch_generator._extension_api import close_at_exit


class IteratorDataset(grain.IterDataset):
    """A one-pass ``grain.IterDataset`` over an existing iterator.

    ``get_state`` and ``set_state``: the source's own methods, or None where
    it has none.
    """

    def __init__(
        self,
        iterator: Iterator[Any],
        get_state: Optional[Callable[[], Any]],
        set_state: Optional[Callable[[Any], None]],
    ) -> None:
        super().__init__()
        self._iterator = iterator
        self._methods = (get_state, set_state)
        self._used = False

    def __iter__(self) -> "IteratorDatasetIterator":
        if self._used:
            raise RuntimeError("an IteratorDataset can be iterated only once")
        self._used = True
        return IteratorDatasetIterator(self._iterator, *self._methods)


class IteratorDatasetIterator(grain.DatasetIterator):
    """Yields the wrapped iterator's items; ``close()`` closes the source."""

    def __init__(
        self,
        iterator: Iterator[Any],
        get_state: Optional[Callable[[], Any]],
        set_state: Optional[Callable[[Any], None]],
    ) -> None:
        super().__init__()
        self._iterator = iterator
        self._get_state = get_state
        self._set_state = set_state

    def __next__(self) -> Any:
        return next(self._iterator)

    def get_state(self) -> Any:
        """The source's own state if it has one, else ``{}``."""
        return {} if self._get_state is None else self._get_state()

    def set_state(self, state: Any) -> None:
        if self._set_state is None:
            raise NotImplementedError("a source without set_state() cannot be restored")
        self._set_state(state)

    def close(self) -> None:
        if not self._closed:
            close_source = getattr(self._iterator, "close", None)
            if close_source is not None:
                close_source()
        super().close()


class ClosedAtExitDataset(grain.IterDataset):
    """``parent``, whose every iterator is a ``ClosedAtExitIterator``."""

    def __init__(self, parent: grain.IterDataset, missing_state: Optional[str]) -> None:
        super().__init__(parent)
        self._missing_state = missing_state

    def __iter__(self) -> "ClosedAtExitIterator":
        return ClosedAtExitIterator(self._parent.__iter__(), self._missing_state)


class ClosedAtExitIterator(grain.DatasetIterator):
    """A Grain iterator that is closed at interpreter exit if still open.

    ``close()`` (yours, or the exit handler's) closes the pipeline, joining
    its threads and closing the source, and then drops it, so Grain's own
    finalisers run at once rather than during interpreter teardown, where
    they fail on half-torn-down modules. Checkpointing is delegated, or
    raises TypeError(``missing_state``) when that is given (the source has no state).
    """

    def __init__(self, iterator: grain.DatasetIterator, missing_state: Optional[str]) -> None:
        super().__init__()
        self._iterator = iterator
        self._missing_state = missing_state
        close_at_exit(self)

    def __next__(self) -> Any:
        self._assert_not_closed()
        return next(self._iterator)

    def get_state(self) -> Dict[str, Any]:
        if self._missing_state is not None:
            raise TypeError(self._missing_state)
        return self._iterator.get_state()

    def set_state(self, state: Dict[str, Any]) -> None:
        if self._missing_state is not None:
            raise TypeError(self._missing_state)
        self._iterator.set_state(state)

    def close(self) -> None:
        if self._closed:
            return
        iterator, self._iterator = self._iterator, None
        iterator.close()
        super().close()
