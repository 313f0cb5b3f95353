"""``Prefetcher`` and ``DevicePrefetcher``: the core engine, fed by a copying or a device stage.

Both return a ``StageStream``, a ``prefetch_generator.BackgroundGenerator``,
so every lifecycle guarantee of the core holds: ``close()`` and ``with``
(bounded; the source is closed in the worker thread), clean-up when dropped or
at interpreter exit, every exception from the source or the transfer re-raised
in the consumer, ``stats()``. ``buffer_size`` batches wait ready, plus the one
being received. ``len()`` is the source's.

No silent wrong data: a delivered batch holds the values the source's leaves
had when it yielded, even if the source refills one buffer before each yield.
``Prefetcher`` copies each NumPy array as it leaves the source, in its worker,
before it queues the batch; ``DevicePrefetcher`` over a ``Prefetcher`` stream
takes no second copy, and over anything else takes its own where JAX would
alias the buffer (see ``DeviceStage``).

Checkpointing passes through both: over a source with ``state_dict()`` or
``get_state()`` (a Grain ``DatasetIterator``, a ``StatefulDataLoader``), the
returned stream's method of that name gives the source's state as of the last
batch it delivered, however many stages are stacked; over a source without it,
the method raises TypeError naming the source's type.
"""

import operator
from typing import Any, Iterable, Optional

from prefetch_generator import BackgroundGenerator
from prefetch_generator._extension_api import iterate

from ._device import DeviceStage, Mapped, private_copy, resolve_device


def checked_size(name: str, value: object) -> int:
    """``value`` as an int >= 1: TypeError or ValueError naming ``name`` otherwise."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got bool")
    try:
        size = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None
    if size < 1:
        raise ValueError(f"{name} must be >= 1, got {size}")
    return size


def source_name(iterable: Iterable[Any]) -> str:
    """The type name of the user's source under any stacked stages."""
    while isinstance(iterable, StageStream):
        iterable = iterable.source
    return type(iterable).__name__


def no_state_error(name: str, iterable: Iterable[Any], other: Optional[str] = None) -> TypeError:
    """The TypeError every mode raises when asked for a state its source does not have."""
    has = f"; it has {other}()" if other else ""
    return TypeError(
        f"{name}() needs a source with a {name}() method, and {source_name(iterable)} has none{has}"
    )


class StageStream(BackgroundGenerator):
    """A ``BackgroundGenerator`` over a stage applied to each batch of ``source``.

    ``len()`` is the source's; asking for a state (``get_state()``,
    ``state_dict()``) that the source does not have raises TypeError naming
    the source's type, not the stage's.
    """

    def __init__(self, mapped: Mapped, buffer_size: int) -> None:
        super().__init__(mapped, buffer_size)
        self.source = mapped.source
        self._state_names = [n for n in ("state_dict", "get_state") if hasattr(mapped, n)]

    def state_dict(self) -> Any:
        self._require("state_dict")
        return super().state_dict()

    def get_state(self) -> Any:
        self._require("get_state")
        return super().get_state()

    def _require(self, name: str) -> None:
        if name not in self._state_names:
            other = self._state_names[0] if self._state_names else None
            raise no_state_error(name, self.source, other)


class Prefetcher:
    """Prefetch any iterable's items in a background thread, ``buffer_size`` ahead.

    Each item is rebuilt as it leaves the source, with a copy of every NumPy
    array in it (``private_copy``): a source that refills its buffers cannot
    change an item already taken. Leaves of other types pass as they are.
    """

    def __init__(self, buffer_size: int = 2) -> None:
        self.buffer_size = checked_size("buffer_size", buffer_size)

    def prefetch(self, iterator: Iterable[Any]) -> StageStream:
        """Start prefetching now; returns the closeable iterator of the items."""
        source = iterate(iterator, "iterator")
        return StageStream(Mapped(iterator, source, private_copy), self.buffer_size)


class DevicePrefetcher:
    """Put each batch on ``device`` in a background thread, ``buffer_size`` ahead.

    ``device``: None (uncommitted arrays on the default device of the thread
    that calls ``prefetch``, as ``jax.device_put(x)`` gives), a
    ``jax.Device``, a ``jax.sharding.Sharding``, or a pytree of Devices and
    Shardings matching the batches; anything else raises TypeError here. The
    consumer receives pytrees of ready ``jax.Array``; the transfer of the
    next batches overlaps its compute. See ``DeviceStage`` for the contract.
    """

    def __init__(self, buffer_size: int = 2, device: Optional[Any] = None) -> None:
        self.buffer_size = checked_size("buffer_size", buffer_size)
        self.device = device
        resolve_device(device)  # a bad device fails here, not in the first prefetch

    def prefetch(self, iterator: Iterable[Any]) -> StageStream:
        """Start transferring now; returns the closeable iterator of device batches.

        The target is resolved in this (the calling) thread, and ``iterator``
        is checked before it is touched. Does not block. The result is a
        ``BackgroundGenerator``: ``close()`` stops the worker and closes the
        source in the worker thread.
        """
        stage = DeviceStage(self.device, private_leaves=isinstance(iterator, StageStream))
        source = iterate(iterator, "iterator")
        return StageStream(Mapped(iterator, source, stage), self.buffer_size)

    start_prefetch = prefetch
