"""``FlaxStream``: what ``mode="flax"`` returns, Flax's ``prefetch_to_device`` made safe.

Flax's ``prefetch_to_device(iterator, size, devices)`` is a generator with no
thread: it keeps ``size`` batches in flight through JAX's asynchronous
dispatch, taking the next batch from the source right after it yields one.
Used bare, a source's exception escapes from that refill while batches the
source produced before it are still queued, and they are lost; a bytes leaf
becomes an array of its byte values, a str leaf fails without saying which.
``FlaxStream`` puts the package's promises around it:

* Each batch is checked as it leaves the source, like every mode's (see
  ``DeviceStage``; Flax's ``np.stack`` copies every leaf before the source is
  advanced, so no private copy is needed). Flax splits each leaf's leading
  axis, so a leaf without one (a scalar) or with an empty one raises
  ``ValueError`` naming it.
* An ``Exception`` from the source or from those checks is held back: the
  stream delivers every batch taken before it, then raises it, then ends.
  ``KeyboardInterrupt`` and other ``BaseException`` propagate at once: the
  source runs in the consumer's own thread in this mode.
* ``get_state()``/``state_dict()`` give the source's state as of the last
  batch delivered (the source's own method, taken right after each batch),
  or raise TypeError naming the source when it has no such method.
  ``len()`` is the source's.
* ``close()`` (and leaving ``with``) closes the source; one still open at
  interpreter exit is closed then, before JAX is torn down.

Not thread-safe: one consumer thread, as with the generator Flax returns.
"""

from collections import deque
from types import TracebackType
from typing import Any, Callable, Deque, Dict, Generator, Iterable, Iterator, Optional, Type

import jax
import numpy as np

from prefetch_generator._extension_api import close_at_exit, find_state_methods

from ._device import DeviceStage
from ._prefetchers import no_state_error


class FlaxStream:
    """``prefetch(held)`` over ``iterator``'s checked batches; see the module docstring."""

    def __init__(
        self,
        iterable: Iterable[Any],
        iterator: Iterator[Any],
        prefetch: Callable[[Iterator[Any]], Generator[Any, None, None]],
        stage: DeviceStage,
    ) -> None:
        self.source = iterable
        self._stage = stage
        self._methods = find_state_methods(iterator, iterable)
        self._latest = {name: take() for name, take in self._methods.items()}
        self._held = _HeldBack(iterator, self._checked, self._methods)
        self._batches = prefetch(self._held)
        close_at_exit(self)

    def __iter__(self) -> "FlaxStream":
        return self

    def __next__(self) -> Any:
        try:
            batch = next(self._batches)
        except StopIteration:
            held = self._held
            error, held.error = held.error, None
            if held.end_states is not None:
                self._latest = held.end_states
            if error is not None:
                raise error from None
            raise
        self._latest = self._held.states.popleft()
        return batch

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]

    def _checked(self, batch: Any) -> Any:
        checked = self._stage.own(batch)
        for path, leaf in jax.tree_util.tree_flatten_with_path(checked)[0]:
            shape = np.shape(leaf)
            if not shape or shape[0] == 0:
                raise ValueError(
                    f"leaf {jax.tree_util.keystr(path) or '(the batch itself)'} has shape "
                    f"{shape}: mode='flax' splits each leaf's leading axis (Flax's "
                    "prefetch_to_device), which must have a length; use mode='thread' or "
                    "mode='grain', which place such leaves as they are"
                )
        return checked

    def state_dict(self) -> Any:
        """The source's ``state_dict()`` as of the last batch delivered; TypeError without one."""
        return self._state("state_dict")

    def get_state(self) -> Any:
        """The source's ``get_state()`` as of the last batch delivered; TypeError without one."""
        return self._state("get_state")

    def _state(self, name: str) -> Any:
        if name not in self._latest:
            raise no_state_error(name, self.source, next(iter(self._methods), None))
        return self._latest[name]

    def close(self) -> None:
        """Stop: Flax's generator and then the source are closed. Idempotent."""
        self._batches.close()
        self._held.close()

    def __enter__(self) -> "FlaxStream":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.close()


class _HeldBack:
    """The source's checked batches; its first ``Exception`` is kept and ends the iteration.

    ``states`` gets the source's states right after each batch handed on, in
    order, and ``end_states`` those after its end.
    """

    def __init__(
        self,
        iterator: Iterator[Any],
        check: Callable[[Any], Any],
        methods: Dict[str, Callable[[], Any]],
    ) -> None:
        self.iterator = iterator
        self.check = check
        self.methods = methods
        self.error: Optional[Exception] = None
        self.ended = False
        self.states: Deque[Dict[str, Any]] = deque()
        self.end_states: Optional[Dict[str, Any]] = None

    def __iter__(self) -> "_HeldBack":
        return self

    def __next__(self) -> Any:
        if self.ended:
            raise StopIteration
        try:
            batch = self.check(next(self.iterator))
        except StopIteration:
            self.ended = True
            self.end_states = self._states()
            raise
        except Exception as error:
            self.ended = True
            self.error = error
            raise StopIteration from None
        self.states.append(self._states())
        return batch

    def _states(self) -> Dict[str, Any]:
        return {name: take() for name, take in self.methods.items()}

    def close(self) -> None:
        self.ended = True
        close = getattr(self.iterator, "close", None)
        if close is not None:
            close()
