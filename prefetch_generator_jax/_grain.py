"""A plain iterator as a ``grain.IterDataset``, so Grain's pipeline can consume it.

``grain.experimental.device_put`` accepts only an ``IterDataset``; handed a
generator it drains it at construction. ``IteratorDataset`` wraps the iterator
lazily: nothing is taken until Grain's prefetch thread calls ``next()``, so an
endless generator works. It is one pass (a second ``iter()`` raises
``RuntimeError``), has no checkpointable state (``set_state`` raises), and
closing its iterator closes the source iterator when that has ``close()``.

Imports grain only; it does not need jax.
"""

from typing import Any, Dict, Iterator

import grain


class IteratorDataset(grain.IterDataset):
    """A one-pass ``grain.IterDataset`` over an existing iterator."""

    def __init__(self, iterator: Iterator[Any]) -> None:
        super().__init__()
        self._iterator = iterator
        self._used = False

    def __iter__(self) -> "IteratorDatasetIterator":
        if self._used:
            raise RuntimeError("an IteratorDataset can be iterated only once")
        self._used = True
        return IteratorDatasetIterator(self._iterator)


class IteratorDatasetIterator(grain.DatasetIterator):
    """Yields the wrapped iterator's items; ``close()`` closes the source."""

    def __init__(self, iterator: Iterator[Any]) -> None:
        super().__init__()
        self._iterator = iterator

    def __next__(self) -> Any:
        return next(self._iterator)

    def get_state(self) -> Dict[str, Any]:
        return {}

    def set_state(self, state: Dict[str, Any]) -> None:
        raise NotImplementedError("a plain iterator cannot be restored to a saved state")

    def close(self) -> None:
        if not self._closed:
            close_source = getattr(self._iterator, "close", None)
            if close_source is not None:
                close_source()
        super().close()
