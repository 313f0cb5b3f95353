"""The JAX device stage for prefetch_generator: batches land on the device ahead of the step.

    from prefetch_generator_jax import DevicePrefetcher, Prefetcher

    batches = DevicePrefetcher(2).prefetch(Prefetcher(4).prefetch(loader))
    for batch in batches:          # pytrees of ready jax.Array
        state = train_step(state, batch)

``Prefetcher`` runs the loader in a background thread; ``DevicePrefetcher``
puts each batch on a device, a ``Sharding`` (split across local devices), or a
mesh spanning several processes, in its own background thread, so the transfer
overlaps the step. Both are the core ``BackgroundGenerator`` engine: closeable,
cleaned up when dropped or at exit, errors re-raised in the consumer.
``create_prefetch_stream`` picks between no prefetch, this thread stage, Grain's
``device_put`` and Flax's ``prefetch_to_device``.

Needs jax and numpy (``pip install "prefetch_generator[jax]"``; without
them, importing this package raises ImportError saying so); grain and flax
only for their modes.

No silent wrong data: a batch the step receives holds exactly the values the
source yielded, in every composition and mode and in every process, or an
error names the leaf, the argument or the source (see ``DeviceStage``).
"""

try:
    import jax  # noqa: F401
    import numpy  # noqa: F401
except ImportError as error:
    raise ImportError(
        f'prefetch_generator_jax needs jax and numpy: pip install "prefetch_generator[jax]" '
        f"({error})"
    ) from error

from ._device import DeviceStage
from ._modes import MODES, create_prefetch_stream
from ._prefetchers import DevicePrefetcher, Prefetcher

__all__ = ["MODES", "DevicePrefetcher", "DeviceStage", "Prefetcher", "create_prefetch_stream"]
