"""The device stage: put each batch (any pytree) on a device, a sharding, or a global mesh.

``DeviceStage(device)`` is built in the consumer's thread and called on each
batch in the worker thread. It promises:

* The target is resolved when it is built: ``None`` means the default device of
  the *building* thread (JAX's default device is thread-local, so
  ``with jax.default_device(d):`` around ``prefetch()`` is honoured).
* A ``NamedSharding`` splits every leaf along its spec; leaves with fewer
  dimensions than the spec (scalars) are replicated instead of failing.
* When the target's devices span several processes (``jax.distributed``), each
  process's batch is its own slice and the stage assembles global arrays with
  ``jax.make_array_from_process_local_data``.
* The returned arrays are ready (``block_until_ready``), and never share memory
  with a NumPy buffer the source may refill: on CPU, where JAX aliases aligned
  NumPy buffers, NumPy leaves are copied first.
* A leaf JAX cannot hold (a string, an object array) raises ``TypeError``
  naming the leaf's path in the batch.
"""

from typing import Any, Callable, Iterator, List

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec, Sharding, SingleDeviceSharding


def default_device() -> jax.Device:
    """The calling thread's default device: ``jax.default_device`` if set, else the first."""
    configured = jax.config.jax_default_device
    if isinstance(configured, jax.Device):
        return configured
    if isinstance(configured, str):
        return jax.local_devices(backend=configured)[0]
    return jax.local_devices()[0]


def _is_sharding(node: Any) -> bool:
    return isinstance(node, Sharding)


class DeviceStage:
    """Callable: batch -> the same pytree of ready ``jax.Array`` on the target."""

    def __init__(self, device: Any = None) -> None:
        if device is None:
            device = default_device()
        if isinstance(device, jax.Device):
            device = SingleDeviceSharding(device)
        shardings: List[Any] = jax.tree.leaves(device, is_leaf=_is_sharding)
        if not shardings or not all(map(_is_sharding, shardings)):
            raise TypeError(
                "device must be None, a jax.Device, a jax.sharding.Sharding or a pytree "
                f"of Shardings, got {type(device).__name__}"
            )
        self.target = device
        self.multi_process = not all(s.is_fully_addressable for s in shardings)
        self.copies_host_buffers = any(d.platform == "cpu" for s in shardings for d in s.device_set)

    def __call__(self, batch: Any) -> Any:
        if self.copies_host_buffers:
            batch = jax.tree.map(_private_copy, batch)
        shardings = jax.tree.map(_fit_to_subtree, self.target, batch, is_leaf=_is_sharding)
        try:
            if self.multi_process:
                placed = jax.tree.map(_assemble_global, shardings, batch, is_leaf=_is_sharding)
            else:
                placed = jax.device_put(batch, shardings)
        except TypeError as error:
            raise _naming_the_bad_leaf(batch, error) from error
        return jax.block_until_ready(placed)


def _private_copy(leaf: Any) -> Any:
    return np.array(leaf, copy=True) if isinstance(leaf, np.ndarray) else leaf


def _fit_to_subtree(sharding: Sharding, subtree: Any) -> Any:
    return jax.tree.map(lambda leaf: _fit_to_leaf(sharding, leaf), subtree)


def _fit_to_leaf(sharding: Sharding, leaf: Any) -> Sharding:
    if isinstance(sharding, NamedSharding) and np.ndim(leaf) < len(sharding.spec):
        return NamedSharding(sharding.mesh, PartitionSpec())
    return sharding


def _assemble_global(sharding: Sharding, local_leaf: Any) -> jax.Array:
    return jax.make_array_from_process_local_data(sharding, np.asarray(local_leaf))


def _naming_the_bad_leaf(batch: Any, error: TypeError) -> TypeError:
    for path, leaf in jax.tree_util.tree_flatten_with_path(batch)[0]:
        try:
            jax.device_put(leaf)
        except TypeError as leaf_error:
            where = jax.tree_util.keystr(path) or "the batch itself"
            return TypeError(
                f"cannot put leaf {where} ({type(leaf).__name__}) on the device: {leaf_error}"
            )
    return error


def mapped(iterator: Iterator[Any], function: Callable[[Any], Any]) -> Iterator[Any]:
    """``function(item)`` for each item; closing it closes ``iterator`` too."""
    try:
        for item in iterator:
            yield function(item)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
