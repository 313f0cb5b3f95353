"""The device contract shared by every mode, and the stage that applies it to each batch.

``DeviceStage(device)`` resolves and checks ``device`` in the thread that builds
it (the caller of ``prefetch()`` or ``create_prefetch_stream``), then is called
on each batch in a worker thread. It promises:

* ``device=None`` means what it means to ``jax.device_put(x)``: *uncommitted*
  arrays on the default device of the building thread (JAX's default device
  is thread-local, so ``with jax.default_device(d):`` around the call is
  honoured). A jitted step fed by the stage compiles once, as with NumPy
  batches, and the arrays combine with parameters placed anywhere.
* A ``jax.Device``, a ``Sharding``, or a pytree of Devices and Shardings
  matching the batches gives committed arrays there. A ``NamedSharding`` is
  fitted to each leaf: leaves with fewer dimensions than its spec (scalars)
  are replicated instead of failing.
* When the target's devices span several processes (``jax.distributed``), each
  process's batch is its own slice and the stage assembles global arrays with
  ``jax.make_array_from_process_local_data``.
* The returned arrays are ready (``block_until_ready``), and never share memory
  with a NumPy buffer the source may refill: on CPU, where JAX aliases
  64-byte-aligned NumPy buffers, each NumPy leaf is copied once into an
  aligned buffer that JAX then aliases, so a leaf costs one copy, never two.
* Every error from placing a batch names the leaf's path (``['x'][0]``): a
  leaf JAX cannot hold (``TypeError``), a Python int out of int32 range
  (``OverflowError``), a leaf the sharding cannot split (``ValueError``), and
  a ragged nested list of numbers (``ValueError``; JAX would otherwise treat
  it as a pytree and return nested 0-d arrays).

A stage holds no mutable state after construction: one stage may be called
from several threads at once.
"""

from typing import Any, Callable, Iterator, List, Optional, Tuple

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec, Sharding, SingleDeviceSharding

from prefetch_generator._background import find_state_methods

DEVICE_CONTRACT = (
    "None, a jax.Device, a jax.sharding.Sharding, or a pytree of Devices and Shardings"
)
ALIGNMENT = 64  # bytes: JAX on CPU aliases a NumPy buffer only at this alignment


def default_device() -> jax.Device:
    """The calling thread's default device: ``jax.default_device`` if set, else the first."""
    configured = jax.config.jax_default_device
    if isinstance(configured, jax.Device):
        return configured
    if isinstance(configured, str):
        return jax.local_devices(backend=configured)[0]
    return jax.local_devices()[0]


def _is_target_leaf(node: Any) -> bool:
    return isinstance(node, (jax.Device, Sharding))


def resolve_device(device: Any) -> Any:
    """``device`` as a pytree of Shardings, or None: TypeError if it is none of the contract.

    Devices become ``SingleDeviceSharding``; the error names the offending leaf
    of a pytree and is the same in every mode.
    """
    if device is None:
        return None
    flat, treedef = jax.tree_util.tree_flatten_with_path(device, is_leaf=_is_target_leaf)
    if not flat:
        raise TypeError(f"device must be {DEVICE_CONTRACT}; got an empty {type(device).__name__}")
    for path, leaf in flat:
        if not _is_target_leaf(leaf):
            where = f" at {jax.tree_util.keystr(path)}" if path else ""
            raise TypeError(
                f"device must be {DEVICE_CONTRACT}; got {type(leaf).__name__} {leaf!r}{where}"
            )
    return jax.tree_util.tree_unflatten(
        treedef,
        [SingleDeviceSharding(x) if isinstance(x, jax.Device) else x for _, x in flat],
    )


class DeviceStage:
    """Callable: batch -> the same pytree of ready ``jax.Array`` on the target.

    Construction resolves ``device`` (see ``resolve_device``; None is the
    building thread's default device) and raises TypeError for a bad one.
    Calling it blocks until the batch is on the device.
    """

    def __init__(self, device: Any = None) -> None:
        self.shardings = resolve_device(device)
        if self.shardings is None:
            self.default: Optional[jax.Device] = default_device()
            devices = {self.default}
            self.multi_process = False
        else:
            self.default = None
            leaves: List[Sharding] = jax.tree.leaves(self.shardings, is_leaf=_is_target_leaf)
            devices = {d for s in leaves for d in s.device_set}
            self.multi_process = not all(s.is_fully_addressable for s in leaves)
        self.copies_host_buffers = any(d.platform == "cpu" for d in devices)

    def __call__(self, batch: Any) -> Any:
        return self.place(self.own(batch))

    def own(self, batch: Any) -> Any:
        """The batch with its leaves checked and, where JAX would alias them, copied.

        Call it before the source can refill its buffers: a pipeline that
        queues batches before placing them (Grain's) calls this first.
        """
        return jax.tree_util.tree_map_with_path(
            self._checked_leaf, batch, is_leaf=_is_nested_number_list
        )

    def place(self, batch: Any) -> Any:
        """Put a batch from ``own`` on the target; returns ready arrays."""
        if self.shardings is None:
            fitted = None
        else:
            try:
                fitted = jax.tree.map(
                    _fit_to_subtree, self.shardings, batch, is_leaf=_is_target_leaf
                )
            except ValueError as error:
                raise ValueError(
                    f"the batch does not match the pytree of device shardings: {error}"
                ) from error
        try:
            placed = self._put(batch, fitted)
        except (OverflowError, TypeError, ValueError) as error:
            raise self._naming_the_bad_leaf(batch, fitted, error) from error
        return jax.block_until_ready(placed)

    def _checked_leaf(self, path: Tuple[Any, ...], leaf: Any) -> Any:
        if _is_nested_number_list(leaf):
            try:
                np.array(leaf)
            except ValueError:
                raise ValueError(
                    f"leaf {_where(path)} is a ragged list of numbers; JAX would return it "
                    "as nested 0-d arrays: pad it into a rectangular NumPy array"
                ) from None
            return leaf
        if self.copies_host_buffers and _jax_would_alias(leaf):
            return _aligned_copy(leaf)
        return leaf

    def _put(self, tree: Any, shardings: Any) -> Any:
        if shardings is None:
            with jax.default_device(self.default):
                return jax.device_put(tree)  # no target given: uncommitted
        if self.multi_process:
            return jax.tree.map(_assemble_global, shardings, tree, is_leaf=_is_target_leaf)
        return jax.device_put(tree, shardings)

    def _naming_the_bad_leaf(self, batch: Any, fitted: Any, error: Exception) -> Exception:
        leaves = jax.tree_util.tree_flatten_with_path(batch)[0]
        if fitted is None:
            shardings: List[Any] = [None] * len(leaves)
        else:
            shardings = jax.tree.leaves(fitted, is_leaf=_is_target_leaf)
        for (path, leaf), sharding in zip(leaves, shardings):
            try:
                self._put(leaf, sharding)
            except type(error) as leaf_error:
                message = (
                    f"cannot put leaf {_where(path)} ({type(leaf).__name__}) on the device: "
                    f"{leaf_error}"
                )
                kind = next(
                    k for k in (OverflowError, TypeError, ValueError) if isinstance(error, k)
                )
                return kind(message)
        return error


def _where(path: Tuple[Any, ...]) -> str:
    return jax.tree_util.keystr(path) or "(the batch itself)"


def _is_nested_number_list(node: Any) -> bool:
    # Only lists: a tuple such as (images, labels) is the usual pytree of leaves.
    return (
        isinstance(node, list)
        and any(isinstance(item, list) for item in node)
        and all(_is_number_or_number_list(item) for item in node)
    )


def _is_number_or_number_list(node: Any) -> bool:
    if isinstance(node, list):
        return all(_is_number_or_number_list(item) for item in node)
    return isinstance(node, (bool, int, float, complex))


def _jax_would_alias(leaf: Any) -> bool:
    # A dtype JAX converts (float64 with x64 off, say) is copied by JAX anyway.
    return (
        isinstance(leaf, np.ndarray)
        and not leaf.dtype.hasobject
        and jax.dtypes.canonicalize_dtype(leaf.dtype) == leaf.dtype
    )


def _aligned_copy(array: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``array`` whose buffer starts at a 64-byte boundary."""
    raw = np.empty(array.nbytes + ALIGNMENT, np.uint8)
    offset = -raw.ctypes.data % ALIGNMENT
    copy = raw[offset : offset + array.nbytes].view(array.dtype).reshape(array.shape)
    np.copyto(copy, array, casting="no")
    return copy


def _fit_to_subtree(sharding: Sharding, subtree: Any) -> Any:
    return jax.tree.map(lambda leaf: _fit_to_leaf(sharding, leaf), subtree)


def _fit_to_leaf(sharding: Sharding, leaf: Any) -> Sharding:
    if isinstance(sharding, NamedSharding) and np.ndim(leaf) < len(sharding.spec):
        return NamedSharding(sharding.mesh, PartitionSpec())
    return sharding


def _assemble_global(sharding: Sharding, local_leaf: Any) -> jax.Array:
    return jax.make_array_from_process_local_data(sharding, np.asarray(local_leaf))


class Mapped:
    """``function(item)`` for each item of ``iterator``; closing it closes ``iterator`` too.

    Has the iterator's checkpoint methods (``state_dict``, ``get_state``) when
    the iterator has them, so a stage over a checkpointable source stays
    checkpointable: called after a batch, they give the source's state as of
    that batch.
    """

    def __init__(self, iterator: Iterator[Any], function: Callable[[Any], Any]) -> None:
        self._iterator = iterator
        self._function = function
        for name, method in find_state_methods(iterator, iterator).items():
            setattr(self, name, method)

    def __iter__(self) -> "Mapped":
        return self

    def __next__(self) -> Any:
        return self._function(next(self._iterator))

    def close(self) -> None:
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()
