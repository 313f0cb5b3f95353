"""``create_prefetch_stream``: one call, four ways to feed a JAX training loop."""

import importlib
from types import ModuleType
from typing import Any, Generator, Iterable, Iterator, Optional

import jax

from prefetch_generator._extension_api import check_iterable, find_state_methods, iterate

from ._device import DeviceStage, default_device, resolve_device
from ._flax import FlaxStream
from ._prefetchers import DevicePrefetcher, StageStream, checked_size, no_state_error

MODES = ("none", "thread", "grain", "flax")


def create_prefetch_stream(
    iterator: Iterable[Any], *, mode: str, size: int, device: Optional[Any] = None
) -> Iterable[Any]:
    """Return ``iterator``'s batches, prefetched as ``mode`` says.

    ``device`` follows one contract in every mode (see ``DeviceStage``), and is
    resolved and checked here, at the call, before the source is touched:
    None means uncommitted arrays on the calling thread's default device, as
    ``jax.device_put(x)`` gives; a ``jax.Device``, a ``Sharding`` or a pytree
    of them gives committed arrays there, 0-d leaves replicated under a
    ``NamedSharding``. The same mistake raises the same TypeError in every mode.

    No silent wrong data, in every mode but ``"none"``: a delivered batch
    holds the values the source's leaves had when it yielded (a source may
    refill its buffers); a leaf JAX cannot hold or would narrow raises the
    same error, naming the leaf's path; an exception from the source reaches
    the consumer after every batch the source produced before it; asking a
    stream for a state (``get_state()``, ``state_dict()``) its source does not
    have raises TypeError naming the source, when it is asked.

    - ``"none"``: ``iterator`` itself, untouched (``device`` is checked, not used).
    - ``"thread"``: ``DevicePrefetcher(size, device).prefetch(iterator)``: a
      background thread; a ``BackgroundGenerator`` (one pass, closeable,
      thread-safe ``next()``, ``len()`` of the source; ``get_state()``/
      ``state_dict()`` give the source's state as of the last batch delivered).
    - ``"grain"``: Grain's own prefetch threads, laid out as
      ``grain.experimental.device_put`` lays them out (a CPU buffer of
      ``2 * size`` elements, then ``size`` on the device), with this package's
      device stage doing the transfer. Given a ``grain.IterDataset`` (or a
      ``MapDataset``, converted with ``to_iter_dataset()``), it returns a
      ``grain.IterDataset``: every ``iter()`` is a fresh pass, as with the
      dataset itself. Given any other iterable, it returns one pass: a Grain
      ``DatasetIterator`` over a lazy adapter (an endless generator works).
      Each Grain iterator runs two threads until ``close()`` (which joins them
      and closes the source) or interpreter exit, where it is closed before
      JAX is torn down.
    - ``"flax"``: ``flax.jax_utils.prefetch_to_device(iterator, size,
      devices=[device])`` inside a ``FlaxStream``. No thread: it keeps
      ``size`` batches in flight through JAX's asynchronous dispatch, so the
      loader runs in your loop. Only None (the calling thread's default
      device) or a ``jax.Device`` is meaningful; its arrays are committed.
      Flax splits each leaf's leading axis, so a 0-d leaf raises ValueError.

    Raises ValueError for ``size < 1`` or an unknown mode, TypeError for a bad
    ``device`` or a non-iterable ``iterator``, ImportError naming the extra to
    install when the mode's library is missing.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}; got {mode!r}")
    size = checked_size("size", size)
    if mode == "none":
        resolve_device(device)
        check_iterable(iterator, "iterator")
        return iterator
    if mode == "thread":
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


def _grain_stream(iterable: Iterable[Any], size: int, device: Optional[Any]) -> Iterable[Any]:
    grain = _import_for_mode("grain", "grain")
    from ._grain import ClosedAtExitDataset, IteratorDataset

    stage = DeviceStage(device, private_leaves=isinstance(iterable, StageStream))
    check_iterable(iterable, "iterator")
    if isinstance(iterable, grain.MapDataset):
        iterable = iterable.to_iter_dataset()
    reiterable = isinstance(iterable, grain.IterDataset)
    if reiterable:
        dataset, missing_state = iterable, None
    else:
        iterator = iterate(iterable, "iterator")
        get_state = find_state_methods(iterator, iterable).get("get_state")
        set_state = getattr(iterator, "set_state", None)
        dataset = IteratorDataset(iterator, get_state, set_state if callable(set_state) else None)
        no_state = str(no_state_error("get_state", iterable))
        missing_state = None if get_state is not None else no_state
    prefetch = grain.experimental.ThreadPrefetchIterDataset
    # The private copy is taken as each item leaves the source: Grain's host
    # prefetch queues items, and a source may refill its buffer meanwhile.
    on_host = prefetch(dataset.map(stage.own), prefetch_buffer_size=2 * size)
    on_device = ClosedAtExitDataset(
        prefetch(on_host.map(stage.place), prefetch_buffer_size=size), missing_state
    )
    return on_device if reiterable else iter(on_device)


def _flax_stream(iterable: Iterable[Any], size: int, device: Optional[Any]) -> Iterable[Any]:
    jax_utils = _import_for_mode("flax", "flax.jax_utils")
    resolve_device(device)
    if device is not None and not isinstance(device, jax.Device):
        raise TypeError(
            "mode='flax' takes device=None or a jax.Device: Flax's prefetch_to_device "
            f"splits each batch over a list of devices and cannot use a {type(device).__name__}; "
            "use mode='thread' or mode='grain' for a Sharding or a pytree of them"
        )
    target = default_device() if device is None else device
    source = iterate(iterable, "iterator")
    stage = DeviceStage(target, private_leaves=True)  # Flax's np.stack copies each leaf

    def prefetch(held: Iterator[Any]) -> Generator[Any, None, None]:
        return jax_utils.prefetch_to_device(held, size, devices=[target])

    return FlaxStream(iterable, source, prefetch, stage)
