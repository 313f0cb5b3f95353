"""``create_prefetch_stream``: one call, four ways to feed a JAX training loop."""

import importlib
from types import ModuleType
from typing import Any, Iterable, Iterator, Optional

import jax

from ._device import default_device
from ._prefetchers import DevicePrefetcher, Prefetcher, checked_size

MODES = ("none", "thread", "grain", "flax")


def create_prefetch_stream(
    iterator: Iterable[Any], *, mode: str, size: int, device: Optional[Any] = None
) -> Iterator[Any]:
    """Return an iterator over ``iterator``'s batches, prefetched as ``mode`` says.

    - ``"none"``: ``iterator`` itself, untouched.
    - ``"thread"``: ``Prefetcher(size)`` without a device, ``DevicePrefetcher(size,
      device)`` with one (a background thread; closeable).
    - ``"grain"``: ``grain.experimental.device_put(ds, device,
      cpu_buffer_size=2 * size, device_buffer_size=size)``, where ``ds`` is
      ``iterator`` if it is a ``grain.IterDataset``, else a lazy one-pass
      adapter (an endless generator works). The result is a Grain
      ``DatasetIterator``: ``close()`` it to stop Grain's threads and close the
      source.
    - ``"flax"``: ``flax.jax_utils.prefetch_to_device(iterator, size,
      devices=[device] if device else None)``. No thread: it keeps ``size``
      batches in flight through JAX's asynchronous dispatch, and splits each
      leaf's leading axis across the devices (all local devices by default),
      so it must divide evenly; scalar leaves fail. ``device`` must be a
      ``jax.Device``.

    ``device`` None means the calling thread's default device. Raises
    ValueError for ``size < 1`` or an unknown mode, ImportError naming the
    extra to install when the mode's library is missing.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}; got {mode!r}")
    size = checked_size("size", size)
    if mode == "none":
        return iterator  # type: ignore[return-value]
    if mode == "thread":
        if device is None:
            return Prefetcher(size).prefetch(iterator)
        return DevicePrefetcher(size, device).prefetch(iterator)
    if mode == "grain":
        return _grain_stream(iterator, size, device)
    return _flax_stream(iterator, size, device)


def _import_for_mode(mode: str, module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"mode={mode!r} needs {mode}: pip install 'prefetch_generator[{mode}]'"
        ) from error


def _grain_stream(iterator: Iterable[Any], size: int, device: Optional[Any]) -> Iterator[Any]:
    grain = _import_for_mode("grain", "grain")
    from ._grain import IteratorDataset

    if not isinstance(iterator, grain.IterDataset):
        iterator = IteratorDataset(iter(iterator))
    on_device = grain.experimental.device_put(
        iterator,
        default_device() if device is None else device,
        cpu_buffer_size=2 * size,
        device_buffer_size=size,
    )
    return iter(on_device)


def _flax_stream(iterator: Iterable[Any], size: int, device: Optional[Any]) -> Iterator[Any]:
    jax_utils = _import_for_mode("flax", "flax.jax_utils")
    if device is not None and not isinstance(device, jax.Device):
        raise TypeError(f"mode='flax' takes a jax.Device as device, got {type(device).__name__}")
    return jax_utils.prefetch_to_device(
        iter(iterator), size, devices=[device] if device is not None else None
    )
