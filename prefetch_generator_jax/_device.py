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
  fitted to each leaf: a 0-d leaf (a scalar) is replicated; any other leaf
  with fewer dimensions than the spec names raises ``ValueError``.
* When the target's devices span several processes (``jax.distributed``), each
  process's batch is its own slice and the stage assembles global arrays with
  ``jax.make_array_from_process_local_data``. A leaf whose sharding would
  replicate it across processes (a scalar, a ``P()`` leaf) raises
  ``ValueError``: each process would contribute its own value to what JAX
  treats as one, and nothing checks that they agree.
* The returned arrays are ready (``block_until_ready``) and hold the values
  the source's leaves had when it yielded the batch, even if the source
  refills its buffers: on CPU, where JAX aliases 64-byte-aligned NumPy
  buffers, each NumPy leaf is copied once into an aligned buffer that JAX then
  aliases (one copy, never two); no copy is taken where JAX copies anyway (a
  dtype it converts, a device that is not the host) or where the leaves are
  already private (a ``Prefetcher`` stream took the copy).
* Nothing is narrowed silently: an integer leaf (Python or NumPy) whose values
  do not fit the dtype JAX gives it (int32 for int64 while ``jax_enable_x64``
  is off) raises ``OverflowError``, as does a finite float64 value beyond
  float32's range.
* Every error from placing a batch names the leaf's path (``['x'][0]``): a
  leaf JAX cannot hold (``TypeError``: a string, bytes, an object array), an
  out-of-range value (``OverflowError``), a leaf the sharding cannot place
  (``ValueError``), and a ragged nested list of numbers (``ValueError``; JAX
  would otherwise treat it as a pytree and return nested 0-d arrays).

A stage holds no mutable state after construction: one stage may be called
from several threads at once.
"""

import functools
import math
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec, Sharding, SingleDeviceSharding

from prefetch_generator._extension_api import find_state_methods

DEVICE_CONTRACT = (
    "None, a jax.Device, a jax.sharding.Sharding, or a pytree of Devices and Shardings"
)
ALIGNMENT = 64  # bytes: JAX on CPU aliases a NumPy buffer only at this alignment
PYTHON_NUMBERS = (bool, int, float, complex)
FLOAT32_MAX = float(np.finfo(np.float32).max)


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
    ``private_leaves=True`` says the batches' NumPy leaves are already copies
    no one else writes to (a ``Prefetcher`` stream's), so none is copied
    again. Calling it blocks until the batch is on the device.
    """

    def __init__(self, device: Any = None, *, private_leaves: bool = False) -> None:
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
        self.copies_host_buffers = not private_leaves and any(d.platform == "cpu" for d in devices)

    def __call__(self, batch: Any) -> Any:
        return self.place(self.own(batch))

    def own(self, batch: Any) -> Any:
        """The batch checked leaf by leaf and, where JAX would alias a leaf, copied.

        Call it before the source can refill its buffers: a pipeline that
        queues batches before placing them (Grain's) calls this first. The
        containers are rebuilt, so a source that refills its dict in place
        cannot change a batch already taken either.
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
                per_leaf = jax.tree.map(
                    _broadcast_to_subtree, self.shardings, batch, is_leaf=_is_target_leaf
                )
            except ValueError as error:
                raise ValueError(
                    f"the batch does not match the pytree of device shardings: {error}"
                ) from error
            fitted = jax.tree_util.tree_map_with_path(self._fitted, batch, per_leaf)
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
            for inner_path, number in jax.tree_util.tree_flatten_with_path(leaf)[0]:
                check_leaf(path + inner_path, number)
            return jax.tree.map(_same, leaf)  # a new list: the source may refill its own
        check_leaf(path, leaf)
        if self.copies_host_buffers and _jax_would_alias(leaf):
            return aligned_copy(leaf)
        return leaf

    def _fitted(self, path: Tuple[Any, ...], leaf: Any, sharding: Sharding) -> Sharding:
        ndim = np.ndim(leaf)
        if isinstance(sharding, NamedSharding) and ndim < len(sharding.spec):
            if ndim > 0:
                raise ValueError(
                    f"leaf {_where(path)} has shape {np.shape(leaf)}, fewer dimensions than "
                    f"the sharding's spec {sharding.spec} names; only 0-d leaves are "
                    "replicated: give this leaf its own sharding in a pytree of shardings"
                )
            sharding = NamedSharding(sharding.mesh, PartitionSpec())
        if self.multi_process and _replicated_across_processes(sharding, ndim):
            raise ValueError(
                f"leaf {_where(path)} would be replicated across processes under {sharding}: "
                "each process's own value would become what JAX takes to be one value, and "
                "nothing checks that the processes agree; shard it over an axis that spans "
                "the processes (a leading batch axis) or keep it out of the batch"
            )
        return sharding

    def _put(self, tree: Any, shardings: Any) -> Any:
        if shardings is None:
            with jax.default_device(self.default):
                return jax.device_put(tree)  # no target given: uncommitted
        if self.multi_process:
            return jax.tree.map(_assemble_global, tree, shardings)
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
                return _kind_of(error)(_cannot_put(path, leaf, leaf_error))
        return error


def check_leaf(path: Tuple[Any, ...], leaf: Any) -> None:
    """Raise, naming the leaf, if JAX cannot hold it or would change its values.

    TypeError (or JAX's ValueError) for a leaf JAX does not take; OverflowError
    for a value outside the dtype JAX would give it. Cheap for the usual
    leaves (a NumPy array of a dtype JAX keeps costs a dict look-up); exact
    for the rest (``jax.typeof``).
    """
    if type(leaf) is np.ndarray or isinstance(leaf, np.generic):
        narrowed = _narrowed(leaf.dtype, jax.config.jax_enable_x64)
        if narrowed is UNSUPPORTED:
            raise TypeError(_cannot_put(path, leaf, f"dtype {leaf.dtype} is not a JAX dtype"))
        if narrowed is not None:
            _check_fits(path, leaf, narrowed)
        return
    if isinstance(leaf, jax.Array):
        return
    if type(leaf) is float:
        if abs(leaf) > FLOAT32_MAX and abs(leaf) != math.inf and not jax.config.jax_enable_x64:
            raise OverflowError(
                f"leaf {_where(path)} (float) is {leaf}, beyond float32, the dtype JAX gives "
                "it while jax_enable_x64 is off; JAX would make it infinite"
            )
        return
    try:
        jax.typeof(leaf)
    except (OverflowError, TypeError, ValueError) as error:
        raise _kind_of(error)(_cannot_put(path, leaf, error)) from None


UNSUPPORTED = np.dtype([("unsupported", np.uint8)])  # a marker: no JAX dtype is structured


@functools.lru_cache(maxsize=None)
def _narrowed(dtype: np.dtype, x64: bool) -> Optional[np.dtype]:
    """The dtype JAX gives ``dtype`` if it differs, None if it keeps it, or ``UNSUPPORTED``."""
    try:
        jax.typeof(np.empty(0, dtype))
    except TypeError:
        return UNSUPPORTED
    canonical = jax.dtypes.canonicalize_dtype(dtype)
    return None if canonical == dtype else canonical


def _check_fits(path: Tuple[Any, ...], leaf: Any, narrowed: np.dtype) -> None:
    """OverflowError if ``leaf`` holds a value JAX would wrap (ints) or make infinite (floats)."""
    if leaf.size == 0:
        return
    if leaf.dtype.kind in "iu":
        info = np.iinfo(narrowed)
        low, high = leaf.min(), leaf.max()
        if info.min <= low and high <= info.max:
            return
        what = "would wrap them"
    else:
        limit = np.finfo(narrowed).max
        parts = (leaf.real, leaf.imag) if leaf.dtype.kind == "c" else (leaf,)
        # fmin/fmax skip NaN; an infinity in the leaf stays infinite, so only
        # then is the exact (slower) test needed.
        low = min(np.fmin.reduce(part, axis=None) for part in parts)
        high = max(np.fmax.reduce(part, axis=None) for part in parts)
        if -limit <= low and high <= limit:
            return
        if not any(np.any(np.isfinite(part) & (np.abs(part) > limit)) for part in parts):
            return
        what = "would make them infinite"
    raise OverflowError(
        f"leaf {_where(path)} ({type(leaf).__name__} of {leaf.dtype}) holds values from {low} to "
        f"{high}, outside {narrowed}, the dtype JAX gives it while jax_enable_x64 is off; "
        f"JAX {what}: convert the leaf to a dtype that holds them, or enable jax_enable_x64"
    )


def _cannot_put(path: Tuple[Any, ...], leaf: Any, reason: object) -> str:
    return f"cannot put leaf {_where(path)} ({type(leaf).__name__}) on the device: {reason}"


def _kind_of(error: Exception) -> Callable[[str], Exception]:
    return next(k for k in (OverflowError, TypeError, ValueError) if isinstance(error, k))


def _where(path: Tuple[Any, ...]) -> str:
    return jax.tree_util.keystr(path) or "(the batch itself)"


def _same(value: Any) -> Any:
    return value


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
    return isinstance(node, PYTHON_NUMBERS)


def _jax_would_alias(leaf: Any) -> bool:
    # A dtype JAX converts (float64 with x64 off, say) is copied by JAX anyway.
    return (
        type(leaf) is np.ndarray
        and not leaf.dtype.hasobject
        and jax.dtypes.canonicalize_dtype(leaf.dtype) == leaf.dtype
    )


def aligned_copy(array: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``array`` whose buffer starts at a 64-byte boundary."""
    raw = np.empty(array.nbytes + ALIGNMENT, np.uint8)
    offset = -raw.ctypes.data % ALIGNMENT
    copy = raw[offset : offset + array.nbytes].view(array.dtype).reshape(array.shape)
    np.copyto(copy, array, casting="no")
    return copy


def private_copy(batch: Any) -> Any:
    """``batch`` with new containers and a copy of every NumPy array in it.

    What ``Prefetcher`` hands on instead of what the source yielded, so a
    source that refills its buffers cannot change a batch already taken.
    Arrays of the exact ``np.ndarray`` type are copied 64-byte aligned (a
    device stage downstream then lets JAX alias them: still one copy);
    subclasses keep their type (``ndarray.copy``). Leaves of other types are
    passed as they are.
    """
    return jax.tree.map(_private_leaf, batch)


def _private_leaf(leaf: Any) -> Any:
    if type(leaf) is np.ndarray:
        return aligned_copy(leaf)
    if isinstance(leaf, np.ndarray):
        return leaf.copy()
    return leaf


def _broadcast_to_subtree(sharding: Sharding, subtree: Any) -> Any:
    return jax.tree.map(lambda _: sharding, subtree)


def _assemble_global(local_leaf: Any, sharding: Sharding) -> jax.Array:
    return jax.make_array_from_process_local_data(sharding, np.asarray(local_leaf))


@functools.lru_cache(maxsize=256)
def _replicated_across_processes(sharding: Sharding, ndim: int) -> bool:
    """Whether some part of an ``ndim``-d array under ``sharding`` lives in several processes."""
    # Any size divisible by every shard count gives the same layout; the
    # device count is one, whatever the spec.
    shape = (len(sharding.device_set),) * ndim
    holders: Dict[Tuple[Any, ...], set] = {}
    for device, index in sharding.devices_indices_map(shape).items():
        key = tuple((part.start, part.stop) for part in index)
        holders.setdefault(key, set()).add(device.process_index)
    return any(len(processes) > 1 for processes in holders.values())


class Mapped:
    """``function(item)`` for each item of ``iterator``; closing it closes ``iterator`` too.

    ``iterable`` is what ``iterator`` came from: the source has its length and
    its checkpoint methods (``state_dict``, ``get_state``), looked up on the
    iterator first, so a stage over a checkpointable source stays
    checkpointable: called after a batch, they give the source's state as of
    that batch.
    """

    def __init__(
        self, iterable: Iterable[Any], iterator: Iterator[Any], function: Callable[[Any], Any]
    ) -> None:
        self.source = iterable
        self._iterator = iterator
        self._function = function
        for name, method in find_state_methods(iterator, iterable).items():
            setattr(self, name, method)

    def __iter__(self) -> "Mapped":
        return self

    def __next__(self) -> Any:
        return self._function(next(self._iterator))

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]

    def close(self) -> None:
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()
