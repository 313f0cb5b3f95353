"""prefetch_generator_jax against the real jax, grain and flax (CPU)."""

import itertools
import threading
import time

import pytest
from devices import run_with_devices

jax = pytest.importorskip("jax")
np = pytest.importorskip("numpy")

from prefetch_generator import BackgroundGenerator  # noqa: E402
from prefetch_generator_jax import (  # noqa: E402
    DevicePrefetcher,
    Prefetcher,
    create_prefetch_stream,
)


def batches(n, rows=8):
    for i in range(n):
        yield {"x": np.full((rows, 3), i, np.float32), "step": i, "label": np.arange(rows) + i}


# -- Prefetcher ---------------------------------------------------------------


def test_prefetcher_is_the_core_engine_with_buffer_size_as_an_attribute():
    prefetcher = Prefetcher(buffer_size=3)
    assert prefetcher.buffer_size == 3
    stream = prefetcher.prefetch(iter(range(10)))
    assert isinstance(stream, BackgroundGenerator)
    assert list(stream) == list(range(10))


def test_prefetcher_stream_is_a_closeable_context_manager():
    closed = threading.Event()

    def endless():
        try:
            yield from itertools.count()
        finally:
            closed.set()

    with Prefetcher(2).prefetch(endless()) as stream:
        assert next(stream) == 0
    assert closed.is_set()


@pytest.mark.parametrize("cls", [Prefetcher, DevicePrefetcher])
def test_buffer_size_below_one_raises_value_error(cls):
    with pytest.raises(ValueError, match="buffer_size must be >= 1"):
        cls(0)
    with pytest.raises(TypeError, match="buffer_size must be an int"):
        cls(2.5)


# -- DevicePrefetcher ---------------------------------------------------------


def test_device_batches_are_ready_jax_arrays_with_the_same_tree_and_values():
    received = list(DevicePrefetcher(2).prefetch(batches(5)))
    assert len(received) == 5
    for i, batch in enumerate(received):
        assert set(batch) == {"x", "step", "label"}
        for leaf in jax.tree.leaves(batch):
            assert isinstance(leaf, jax.Array) and leaf.is_ready()
        np.testing.assert_array_equal(batch["x"], np.full((8, 3), i))
        assert int(batch["step"]) == i


def test_start_prefetch_is_prefetch_and_work_starts_at_once():
    started = threading.Event()

    def source():
        started.set()
        yield np.zeros(2)

    stream = DevicePrefetcher(1).start_prefetch(source())
    assert started.wait(30)  # before any next()
    assert DevicePrefetcher.start_prefetch is DevicePrefetcher.prefetch
    assert len(list(stream)) == 1


def test_composes_with_a_prefetcher():
    stream = DevicePrefetcher(2).prefetch(Prefetcher(4).prefetch(batches(6)))
    assert [int(b["step"]) for b in stream] == list(range(6))


def test_a_leaf_jax_cannot_hold_raises_type_error_naming_its_path():
    bad = [{"ok": np.zeros(2), "names": ["a", np.array(["text"])]}]
    stream = DevicePrefetcher(1).prefetch(iter(bad))
    with pytest.raises(TypeError, match=r"\['names'\]\[0\]"):
        next(stream)


def test_an_error_in_the_source_reaches_the_consumer_after_earlier_batches():
    def failing():
        yield np.ones(2)
        raise OSError("disk")

    stream = DevicePrefetcher(2).prefetch(failing())
    assert next(stream).shape == (2,)
    with pytest.raises(OSError, match="disk"):
        next(stream)


def test_closing_the_device_stream_closes_the_source_in_the_worker():
    closed_in = []

    def endless():
        try:
            while True:
                yield np.zeros(4)
        finally:
            closed_in.append(threading.current_thread().name)

    stream = DevicePrefetcher(2).prefetch(endless())
    next(stream)
    stream.close()
    assert closed_in == ["prefetch_generator"]


def test_a_bad_device_raises_type_error_at_construction():
    with pytest.raises(TypeError, match="device must be None, a jax.Device"):
        DevicePrefetcher(2, device="gpu:0")


def test_a_non_iterable_raises_type_error_at_the_call():
    with pytest.raises(TypeError, match="iterator must be an iterable"):
        DevicePrefetcher(2).prefetch(42)


def test_default_device_is_the_callers_thread_local_default():
    run_with_devices("""
        import jax, numpy as np
        from prefetch_generator_jax import DevicePrefetcher
        target = jax.devices()[2]
        with jax.default_device(target):
            stream = DevicePrefetcher(2).prefetch(iter([np.zeros(3), {"s": 1.0}]))
        for batch in stream:
            for leaf in jax.tree.leaves(batch):
                assert leaf.devices() == {target}, leaf.devices()
        explicit = next(DevicePrefetcher(1, jax.devices()[3]).prefetch(iter([np.ones(2)])))
        assert explicit.devices() == {jax.devices()[3]}
    """)


def test_named_sharding_splits_the_batch_and_replicates_scalars():
    run_with_devices("""
        import jax, numpy as np
        from jax.sharding import NamedSharding, PartitionSpec as P
        from prefetch_generator_jax import DevicePrefetcher
        mesh = jax.make_mesh((4,), ("batch",))
        sharding = NamedSharding(mesh, P("batch"))
        source = ({"x": np.arange(32 * 5.0).reshape(32, 5) + i, "step": i} for i in range(3))
        for i, batch in enumerate(DevicePrefetcher(2, sharding).prefetch(source)):
            assert batch["x"].sharding == sharding
            assert [s.data.shape for s in batch["x"].addressable_shards] == [(8, 5)] * 4
            assert batch["step"].sharding.is_fully_replicated and int(batch["step"]) == i
            total = float(jax.jit(lambda x: x.sum())(batch["x"]))
            assert total == float((np.arange(160.0) + i).sum())
    """)


def test_a_pytree_of_shardings_places_each_leaf():
    run_with_devices("""
        import jax, numpy as np
        from jax.sharding import NamedSharding, PartitionSpec as P
        from prefetch_generator_jax import DevicePrefetcher
        mesh = jax.make_mesh((4,), ("batch",))
        shardings = {"x": NamedSharding(mesh, P("batch")), "y": NamedSharding(mesh, P())}
        batch = {"x": np.zeros((8, 2)), "y": np.ones((8, 2))}
        placed = next(DevicePrefetcher(1, shardings).prefetch(iter([batch])))
        assert placed["x"].sharding == shardings["x"]
        assert placed["y"].sharding.is_fully_replicated
    """)


# -- create_prefetch_stream ---------------------------------------------------


def test_mode_none_returns_the_iterator_untouched():
    source = iter(range(3))
    assert create_prefetch_stream(source, mode="none", size=2) is source


def test_mode_thread_without_device_puts_batches_on_the_default_device():
    stream = create_prefetch_stream(iter(range(5)), mode="thread", size=2)
    assert isinstance(stream, BackgroundGenerator)
    received = list(stream)
    assert all(isinstance(b, jax.Array) for b in received)
    assert [int(b) for b in received] == list(range(5))


def test_mode_thread_with_a_device_puts_batches_on_it():
    device = jax.devices()[0]
    stream = create_prefetch_stream(batches(3), mode="thread", size=2, device=device)
    assert all(b["x"].devices() == {device} for b in stream)


@pytest.mark.parametrize("size", [0, -1])
def test_size_below_one_raises_value_error(size):
    with pytest.raises(ValueError, match="size must be >= 1"):
        create_prefetch_stream(iter([]), mode="thread", size=size)


def test_unknown_mode_raises_value_error_listing_the_modes():
    with pytest.raises(ValueError, match="'none', 'thread', 'grain', 'flax'"):
        create_prefetch_stream(iter([]), mode="threads", size=2)


def test_mode_grain_adapts_an_endless_generator_without_draining_it():
    pytest.importorskip("grain")
    closed = threading.Event()

    def endless():
        try:
            for i in itertools.count():
                yield {"x": np.full((4,), i, np.float32)}
        finally:
            closed.set()

    stream = create_prefetch_stream(endless(), mode="grain", size=2)
    assert [float(next(stream)["x"][0]) for _ in range(5)] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert isinstance(next(stream)["x"], jax.Array)
    stream.close()
    assert closed.wait(30)


def small_grain_dataset(n=6):
    grain = pytest.importorskip("grain")
    return grain.MapDataset.range(n).map(lambda i: np.full((2,), i)).to_iter_dataset()


def test_mode_grain_over_an_iter_dataset_gives_a_fresh_pass_per_iter():
    stream = create_prefetch_stream(small_grain_dataset(), mode="grain", size=2)
    first = [int(b[0]) for b in stream]
    second = [int(b[0]) for b in stream]
    assert first == second == list(range(6))


def test_mode_grain_over_a_generator_is_one_pass():
    pytest.importorskip("grain")
    stream = create_prefetch_stream((np.full(2, i) for i in range(3)), mode="grain", size=2)
    assert [int(b[0]) for b in stream] == [0, 1, 2]
    assert list(stream) == []
    stream.close()


def test_mode_grain_closing_a_pass_mid_epoch_leaves_the_next_pass_whole():
    stream = create_prefetch_stream(small_grain_dataset(), mode="grain", size=2)
    first = iter(stream)
    assert int(next(first)[0]) == 0
    first.close()
    assert [int(b[0]) for b in stream] == list(range(6))


def test_mode_flax_delegates_to_prefetch_to_device():
    pytest.importorskip("flax")
    device = jax.devices()[0]
    stream = create_prefetch_stream(
        ({"x": np.full((4, 2), i)} for i in range(4)), mode="flax", size=2, device=device
    )
    received = list(stream)
    assert [int(b["x"][0, 0]) for b in received] == [0, 1, 2, 3]
    assert received[0]["x"].devices() == {device}


def test_mode_flax_rejects_a_sharding_naming_the_modes_that_take_one():
    pytest.importorskip("flax")
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    with pytest.raises(TypeError, match="mode='flax' takes device=None or a jax.Device.*'thread'"):
        create_prefetch_stream(iter([]), mode="flax", size=2, device=sharding)


# -- item: device=None gives uncommitted arrays ----------------------------------

DEVICE_MODES = ["thread", "grain", "flax"]


def needs_library(mode):
    if mode in ("grain", "flax"):
        pytest.importorskip(mode)


def one_batch(mode, batch, device=None):
    needs_library(mode)
    stream = create_prefetch_stream(iter([batch]), mode=mode, size=1, device=device)
    try:
        return next(iter(stream))
    finally:
        getattr(stream, "close", lambda: None)()


@pytest.mark.parametrize("mode", ["thread", "grain"])
def test_device_none_gives_uncommitted_arrays_like_device_put(mode):
    batch = one_batch(mode, {"x": np.zeros((4, 3), np.float32), "step": 7})
    assert not batch["x"].committed and not batch["step"].committed
    assert batch["x"].devices() == {jax.devices()[0]}


def test_device_prefetcher_default_gives_uncommitted_arrays():
    batch = next(DevicePrefetcher(1).prefetch(iter([np.zeros(3, np.float32)])))
    assert not batch.committed


@pytest.fixture
def backend_compiles():
    """The names of the XLA compilations JAX runs during the test, as a growing list."""
    compiled = []

    def listener(event, duration_s, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiled.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    yield compiled
    jax.monitoring.unregister_event_duration_listener(listener)


@pytest.mark.parametrize("mode", ["thread", "grain"])
def test_a_jitted_step_fed_by_the_stage_then_by_numpy_compiles_once(mode, backend_compiles):
    # Counted as XLA compilations: _cache_size() also counts a dispatch-cache
    # entry per argument type (np.ndarray, jax.Array) that shares the executable.
    step = jax.jit(lambda params, batch: params * batch["x"].sum() + batch["step"])
    params = jax.numpy.ones(())  # fresh parameters are uncommitted
    source = [{"x": np.full((4, 3), i, np.float32), "step": i} for i in range(3)]
    stream = create_prefetch_stream(iter(source), mode=mode, size=2)
    del backend_compiles[:]
    for batch in stream:
        params = step(params, batch)
    for batch in source:
        params = step(params, batch)
    getattr(stream, "close", lambda: None)()
    assert len(backend_compiles) == 1


def test_default_device_batches_combine_with_parameters_on_a_mesh():
    run_with_devices("""
        import jax, numpy as np
        from jax.sharding import NamedSharding, PartitionSpec as P
        from prefetch_generator_jax import DevicePrefetcher
        mesh = jax.make_mesh((4,), ("batch",))
        params = jax.device_put(np.ones((3,), np.float32), NamedSharding(mesh, P()))
        step = jax.jit(lambda p, b: (b["x"] @ p).sum())
        source = ({"x": np.full((8, 3), i, np.float32)} for i in range(3))
        assert [float(step(params, b)) for b in DevicePrefetcher(2).prefetch(source)] == [
            0.0, 24.0, 48.0
        ]
    """)


# -- item: one device contract in every mode ---------------------------------------


class RecordsIter:
    """An iterable that records whether anything called its ``__iter__``."""

    touched = False

    def __iter__(self):
        self.touched = True
        return iter([])


@pytest.mark.parametrize("mode", DEVICE_MODES)
@pytest.mark.parametrize(
    "device, found", [("gpu:0", r"got str 'gpu:0'$"), ({"x": 0}, r"got int 0 at \['x'\]$")]
)
def test_a_bad_device_raises_the_same_type_error_at_the_call_in_every_mode(mode, device, found):
    needs_library(mode)
    source = RecordsIter()
    with pytest.raises(TypeError, match=r"^device must be None, a jax.Device, .*" + found):
        create_prefetch_stream(source, mode=mode, size=2, device=device)
    assert not source.touched


@pytest.mark.parametrize("mode", ["thread", "grain"])
def test_a_pytree_of_devices_is_accepted_like_a_pytree_of_shardings(mode):
    device = jax.devices()[0]
    targets = {"x": device, "step": jax.sharding.SingleDeviceSharding(device)}
    batch = one_batch(mode, {"x": np.zeros(2, np.float32), "step": 1}, device=targets)
    assert batch["x"].committed and batch["x"].devices() == {device}
    assert batch["step"].committed


def test_a_batch_not_matching_the_device_pytree_raises_value_error():
    device = jax.devices()[0]
    stream = DevicePrefetcher(1, {"x": device}).prefetch(iter([{"y": np.zeros(2)}]))
    with pytest.raises(ValueError, match="does not match the pytree of device shardings"):
        next(stream)


def test_device_none_is_the_callers_default_device_in_every_mode():
    run_with_devices("""
        import jax, numpy as np
        from prefetch_generator_jax import create_prefetch_stream
        target = jax.devices()[2]
        for mode in ("thread", "grain", "flax"):
            with jax.default_device(target):
                stream = create_prefetch_stream(
                    iter([{"x": np.zeros((4, 3), np.float32)}]), mode=mode, size=1
                )
            batch = next(stream)
            assert batch["x"].devices() == {target}, (mode, batch["x"].devices())
            assert batch["x"].shape == (4, 3), (mode, batch["x"].shape)
            getattr(stream, "close", lambda: None)()
    """)


def test_a_named_sharding_replicates_scalars_in_thread_and_grain_modes():
    run_with_devices("""
        import jax, numpy as np
        from jax.sharding import NamedSharding, PartitionSpec as P
        from prefetch_generator_jax import create_prefetch_stream
        sharding = NamedSharding(jax.make_mesh((4,), ("batch",)), P("batch"))
        for mode in ("thread", "grain"):
            source = iter([{"x": np.zeros((8, 2), np.float32), "step": 3}])
            stream = create_prefetch_stream(source, mode=mode, size=1, device=sharding)
            batch = next(stream)
            assert batch["x"].sharding == sharding, mode
            assert batch["step"].sharding.is_fully_replicated and int(batch["step"]) == 3, mode
            stream.close()
    """)


# -- item: every error from placing a batch names the leaf ----------------------------


@pytest.mark.parametrize("mode", ["thread", "grain"])
def test_a_python_int_too_large_for_int32_raises_overflow_error_naming_its_path(mode):
    with pytest.raises(OverflowError, match=r"leaf \['meta'\]\['seed'\] \(int\).*int32"):
        one_batch(mode, {"x": np.zeros(2), "meta": {"seed": 2**40}})


@pytest.mark.parametrize("mode", ["thread", "grain"])
def test_a_ragged_list_leaf_raises_value_error_naming_its_path(mode):
    with pytest.raises(ValueError, match=r"leaf \['boxes'\] is a ragged list"):
        one_batch(mode, {"x": np.zeros(2), "boxes": [[1, 2], [3]]})


def test_a_leaf_the_sharding_cannot_split_raises_value_error_naming_its_path():
    run_with_devices("""
        import jax, numpy as np
        from jax.sharding import NamedSharding, PartitionSpec as P
        from prefetch_generator_jax import DevicePrefetcher
        sharding = NamedSharding(jax.make_mesh((4,), ("batch",)), P("batch"))
        batch = {"x": np.zeros((8, 2), np.float32), "y": np.zeros((6,), np.float32)}
        try:
            next(DevicePrefetcher(1, sharding).prefetch(iter([batch])))
        except ValueError as error:
            assert str(error).startswith("cannot put leaf ['y'] (ndarray)"), error
        else:
            raise AssertionError("no error")
    """)


# -- item: the private copy is aligned, so JAX aliases it ----------------------------


@pytest.mark.parametrize("offset", [0, 1, 8, 16, 33, 63])
def test_the_private_copy_is_64_byte_aligned_and_aliased_by_jax(offset):
    from prefetch_generator_jax._device import aligned_copy

    raw = np.zeros(4096 * 4 + 128, np.uint8)
    start = offset - raw.ctypes.data % 64 + 64
    source = raw[start : start + 4096 * 4].view(np.float32)
    source[:] = np.arange(4096)
    copy = aligned_copy(source)
    assert copy.ctypes.data % 64 == 0 and not np.shares_memory(copy, source)
    np.testing.assert_array_equal(copy, source)
    assert jax.device_put(copy).unsafe_buffer_pointer() == copy.ctypes.data


@pytest.mark.parametrize("offset", [0, 4], ids=["64-byte aligned", "unaligned"])
def test_a_source_refilling_one_buffer_never_changes_a_delivered_batch(offset):
    # JAX aliases an aligned buffer on CPU; an unaligned one it copies later.
    raw = np.zeros(64 * 16 * 4 + 64, np.uint8)
    start = (offset - raw.ctypes.data) % 64
    buffer = raw[start : start + 64 * 16 * 4].view(np.float32).reshape(64, 16)

    def refilling():
        for i in range(8):
            buffer[:] = i
            yield buffer

    received = list(DevicePrefetcher(3).prefetch(refilling()))
    assert [float(b[0, 0]) for b in received] == [float(i) for i in range(8)]


@pytest.mark.parametrize("mode", DEVICE_MODES)
def test_a_source_refilling_its_buffer_never_changes_a_delivered_batch_in_any_mode(mode):
    needs_library(mode)

    def refilling():
        buffer = np.empty((4, 3), np.float32)
        for i in range(12):
            buffer[...] = i
            yield {"x": buffer}

    seen = []
    for batch in create_prefetch_stream(refilling(), mode=mode, size=2):
        time.sleep(0.01)  # a slow step: the pipeline's queues fill meanwhile
        seen.append(float(batch["x"][0, 0]))
    assert seen == [float(i) for i in range(12)]


def test_mode_grain_over_a_grain_iterator_keeps_its_checkpoint_state():
    grain = pytest.importorskip("grain")

    def stream():
        source = iter(grain.MapDataset.range(6).to_iter_dataset())
        return create_prefetch_stream(source, mode="grain", size=1)

    first = stream()
    assert int(next(first)) == 0
    state = first.get_state()
    first.close()
    resumed = stream()
    resumed.set_state(state)
    assert [int(x) for x in resumed] == [1, 2, 3, 4, 5]


# -- the shared iterable check ---------------------------------------------------------


class FailingIter:
    def __iter__(self):
        raise TypeError("broken inside __iter__")


@pytest.mark.parametrize("mode", DEVICE_MODES)
def test_a_type_error_inside_a_sources_iter_is_not_masked(mode):
    needs_library(mode)
    with pytest.raises(TypeError, match="broken inside __iter__"):
        create_prefetch_stream(FailingIter(), mode=mode, size=2)


@pytest.mark.parametrize("mode", ["none", *DEVICE_MODES])
def test_a_non_iterable_raises_type_error_naming_the_argument_in_every_mode(mode):
    needs_library(mode)
    with pytest.raises(TypeError, match="iterator must be an iterable, got int"):
        create_prefetch_stream(42, mode=mode, size=2)


# -- processes ----------------------------------------------------------------


def test_process_exits_cleanly_while_a_transfer_is_in_flight():
    result = run_with_devices(
        """
        import numpy as np
        from prefetch_generator_jax import DevicePrefetcher
        def big():
            while True:
                yield np.ones((2048, 2048), np.float32)
        stream = DevicePrefetcher(2).prefetch(big())
        next(stream)
        print("exiting", flush=True)
        """,
        devices=1,
    )
    assert result.stdout == "exiting\n" and result.stderr == ""


@pytest.mark.parametrize("devices", [1, 4])
@pytest.mark.parametrize("mode", DEVICE_MODES)
def test_every_mode_exits_cleanly_with_an_open_stream_and_closes_the_source(mode, devices):
    needs_library(mode)
    result = run_with_devices(
        f"""
        import numpy as np
        from prefetch_generator_jax import create_prefetch_stream
        def endless():
            try:
                while True:
                    yield {{"x": np.ones((256, 256), np.float32)}}
            finally:
                print("source closed", flush=True)
        stream = create_prefetch_stream(endless(), mode={mode!r}, size=2)
        next(stream)
        print("exiting", flush=True)
        """,
        devices=devices,
    )
    assert (result.stdout, result.stderr) == ("exiting\nsource closed\n", "")


def test_a_grain_dataset_pass_left_open_at_exit_exits_cleanly():
    pytest.importorskip("grain")
    result = run_with_devices("""
        import grain, numpy as np
        from prefetch_generator_jax import create_prefetch_stream
        dataset = grain.MapDataset.range(10**6).map(lambda i: np.ones((64, 64))).to_iter_dataset()
        stream = iter(create_prefetch_stream(dataset, mode="grain", size=2))
        next(stream)
        print("exiting", flush=True)
    """)
    assert (result.stdout, result.stderr) == ("exiting\n", "")


@pytest.mark.parametrize("mode, module", [("grain", "grain"), ("flax", "flax.jax_utils")])
def test_a_mode_whose_library_is_missing_names_the_extra_to_install(mode, module):
    result = run_with_devices(
        f"""
        import sys
        sys.modules[{module!r}] = None  # what Python does for a package that is not there
        from prefetch_generator_jax import create_prefetch_stream
        try:
            create_prefetch_stream(iter([]), mode={mode!r}, size=1)
        except ImportError as error:
            print(error)
        """,
        devices=1,
    )
    assert f"pip install 'prefetch_generator[{mode}]'" in result.stdout
