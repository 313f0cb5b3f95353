"""``Prefetcher`` and ``DevicePrefetcher``: the core engine, optionally fed by a device stage.

Both return a ``prefetch_generator.BackgroundGenerator``, so every lifecycle
guarantee of the core holds: ``close()`` and ``with`` (bounded; the source is
closed in the worker thread), clean-up when dropped or at interpreter exit,
every exception from the source or the transfer re-raised in the consumer,
``stats()``. ``buffer_size`` batches wait ready, plus the one being received.

Checkpointing passes through both: over a source with ``state_dict()`` or
``get_state()`` (a Grain ``DatasetIterator``, a ``StatefulDataLoader``), the
returned BackgroundGenerator's method of that name gives the source's state
as of the last batch it delivered, however many stages are stacked.
"""

import operator
from typing import Any, Iterable, Optional

from prefetch_generator import BackgroundGenerator
from prefetch_generator._checks import iterate

from ._device import DeviceStage, Mapped, resolve_device


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


class Prefetcher:
    """Prefetch any iterable's items in a background thread, ``buffer_size`` ahead."""

    def __init__(self, buffer_size: int = 2) -> None:
        self.buffer_size = checked_size("buffer_size", buffer_size)

    def prefetch(self, iterator: Iterable[Any]) -> BackgroundGenerator:
        """Start prefetching now; returns the closeable iterator of the items."""
        return BackgroundGenerator(iterator, self.buffer_size)


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

    def prefetch(self, iterator: Iterable[Any]) -> BackgroundGenerator:
        """Start transferring now; returns the closeable iterator of device batches.

        The target is resolved in this (the calling) thread, and ``iterator``
        is checked before it is touched. Does not block. The result is a
        ``BackgroundGenerator``: ``close()`` stops the worker and closes the
        source in the worker thread.
        """
        stage = DeviceStage(self.device)
        source = iterate(iterator, "iterator")
        return BackgroundGenerator(Mapped(source, stage), self.buffer_size)

    start_prefetch = prefetch
