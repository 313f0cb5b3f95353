"""No silent wrong data: the batch the step sees is the batch the source yielded, or an error.

In every composition the package documents (``Prefetcher``, ``Prefetcher``
into ``DevicePrefetcher``, ``DevicePrefetcher``, every mode of
``create_prefetch_stream``), with real JAX, Grain and Flax on CPU.
"""

import collections
import glob
import os
import subprocess
import threading

import pytest
from devices import REPO, run_with_devices

jax = pytest.importorskip("jax")
np = pytest.importorskip("numpy")

from prefetch_generator_jax import (  # noqa: E402
    DevicePrefetcher,
    DeviceStage,
    Prefetcher,
    create_prefetch_stream,
)

BOUND_S = 60


def needs(*modules):
    for module in modules:
        pytest.importorskip(module)


# Each composition: (how to build the stream, whether a thread runs ahead, libraries).
COMPOSITIONS = {
    "Prefetcher": (lambda s: Prefetcher(4).prefetch(s), True, ()),
    "Prefetcher into DevicePrefetcher": (
        lambda s: DevicePrefetcher(2).prefetch(Prefetcher(4).prefetch(s)),
        True,
        (),
    ),
    "DevicePrefetcher": (lambda s: DevicePrefetcher(2).prefetch(s), True, ()),
    "mode thread": (lambda s: create_prefetch_stream(s, mode="thread", size=2), True, ()),
    "mode grain": (lambda s: create_prefetch_stream(s, mode="grain", size=2), True, ("grain",)),
    "mode flax": (lambda s: create_prefetch_stream(s, mode="flax", size=2), False, ("flax",)),
    "Prefetcher into mode grain": (
        lambda s: create_prefetch_stream(Prefetcher(4).prefetch(s), mode="grain", size=2),
        True,
        ("grain",),
    ),
}
DEVICE_MODES = ["thread", "grain", "flax"]


def stream_for(composition, source):
    build, _, libraries = COMPOSITIONS[composition]
    needs(*libraries)
    return build(source)


def close(stream):
    getattr(stream, "close", lambda: None)()


def aligned_buffer(shape, offset):
    """A float32 buffer whose data starts ``offset`` bytes past a 64-byte boundary."""
    size = int(np.prod(shape)) * 4
    raw = np.zeros(size + 64, np.uint8)
    start = (offset - raw.ctypes.data) % 64
    return raw[start : start + size].view(np.float32).reshape(shape)


# -- item 1: a source that refills its buffers ----------------------------------------

REFILLS = 8
AHEAD = 3  # batches the shallowest composition (DevicePrefetcher(2)) takes with no consumer


@pytest.mark.parametrize("offset", [0, 4], ids=["aligned", "unaligned"])
@pytest.mark.parametrize("composition", list(COMPOSITIONS))
def test_a_source_refilling_its_buffers_never_changes_a_delivered_batch(composition, offset):
    buffer = aligned_buffer((64, 16), offset)
    ids = [np.zeros((2,), np.int32)]
    batch = {"x": buffer, "ids": ids, "view": buffer[::2, 1:3].T}
    refilled = threading.Event()

    def refilling():
        for i in range(REFILLS):
            buffer[...] = i
            ids[0] = np.full((2,), i, np.int32)  # a list refilled in place
            batch["step"] = np.full((2,), i, np.int32)  # the dict itself is refilled too
            if i == AHEAD - 1:
                refilled.set()
            yield batch

    def values(b):
        return (
            float(b["x"][5, 5]),
            [int(v) for v in b["ids"][0]],
            float(b["view"][1, 3]),
            int(b["step"][0]),
        )

    stream = iter(stream_for(composition, refilling()))
    seen = [values(next(stream))]  # Grain's threads start at the first next()
    # The stages ahead of the consumer hold batches taken before the source
    # refilled its buffers again, before the consumer looks at them.
    assert not COMPOSITIONS[composition][1] or refilled.wait(BOUND_S)
    seen += [values(b) for b in stream]
    close(stream)
    assert seen == [(i, [i, i], i, i) for i in range(REFILLS)]


def test_prefetcher_copies_each_numpy_leaf_aligned_so_a_device_stage_need_not_copy_again():
    buffer = aligned_buffer((32, 8), 8)
    masked = np.ma.array([1.0, 2.0], mask=[False, True])
    item = next(Prefetcher(1).prefetch(iter([{"x": buffer, "m": masked, "s": "text"}])))
    assert not np.shares_memory(item["x"], buffer) and item["x"].ctypes.data % 64 == 0
    assert jax.device_put(item["x"]).unsafe_buffer_pointer() == item["x"].ctypes.data
    assert isinstance(item["m"], np.ma.MaskedArray) and item["m"].mask.tolist() == [False, True]
    assert item["s"] == "text"
    stage = DeviceStage(private_leaves=True)
    assert stage.own({"x": item["x"]})["x"] is item["x"]


def test_a_device_stage_over_a_prefetcher_stream_takes_no_second_copy():
    # The stage's copy would be a new buffer: JAX aliasing the Prefetcher's
    # copy shows there was none.
    pointers = []

    def spy(batch):
        pointers.append(batch["x"].ctypes.data)
        return batch

    host = Prefetcher(2).prefetch(
        map(spy, ({"x": np.full((64, 64), i, np.float32)} for i in range(3)))
    )
    delivered = list(DevicePrefetcher(2).prefetch(host))
    assert [float(b["x"][0, 0]) for b in delivered] == [0.0, 1.0, 2.0]
    assert len(pointers) == 3  # the source's own arrays: each was copied once, by Prefetcher


# -- item 2: what a sharding cannot place raises, naming the leaf --------------------------


def test_only_0d_leaves_are_replicated_and_a_short_leaf_raises_naming_its_path():
    run_with_devices("""
        import jax, numpy as np
        from jax.sharding import NamedSharding, PartitionSpec as P
        from prefetch_generator_jax import create_prefetch_stream
        mesh = jax.make_mesh((2, 2), ("data", "model"))
        grid = NamedSharding(mesh, P("data", "model"))
        for mode in ("thread", "grain"):
            good = {"image": np.ones((8, 4), np.float32), "step": 3, "scale": np.float32(2)}
            stream = create_prefetch_stream(iter([good]), mode=mode, size=1, device=grid)
            batch = next(stream)
            assert batch["image"].sharding == grid, mode
            assert batch["step"].sharding.spec == P() and int(batch["step"]) == 3, mode
            assert float(batch["scale"]) == 2.0, mode
            stream.close()
            bad = {"image": np.ones((8, 4), np.float32), "label": np.arange(8)}
            stream = create_prefetch_stream(iter([bad]), mode=mode, size=1, device=grid)
            try:
                next(stream)
            except ValueError as error:
                assert str(error).startswith("leaf ['label'] has shape (8,), fewer"), error
            else:
                raise AssertionError(f"{mode}: a (8,) leaf under P('data', 'model') was placed")
            stream.close()
    """)


# -- item 3: values JAX would narrow -----------------------------------------------------

OUT_OF_RANGE = {
    "int64 ns timestamp": (np.array([1_700_000_000_000_000_000], np.int64), r"int64\).*int32"),
    "int64 id 2**40": (np.array([2**40, 1], np.int64), r"int64\).*int32"),
    "negative int64": (np.array([-(2**31) - 1], np.int64), r"int64\).*int32"),
    "uint64 2**33": (np.array([2**33], np.uint64), r"uint64\).*uint32"),
    "int64 scalar": (np.int64(2**40), r"int64 of int64\).*int32"),
    "float64 1e40": (np.array([1.0, 1e40]), r"float64\).*float32.*infinite"),
    "float64 beside inf": (np.array([np.inf, -1e39, np.nan]), r"float64\).*infinite"),
    "complex128": (np.array([1e40j]), r"complex128\).*complex64"),
    "Python float 1e40": (1e40, r"float\) is 1e\+40, beyond float32"),
}


@pytest.mark.parametrize("mode", DEVICE_MODES)
@pytest.mark.parametrize("case", list(OUT_OF_RANGE))
def test_a_numpy_value_jax_would_narrow_raises_overflow_error_naming_the_leaf(mode, case):
    needs(*([mode] if mode != "thread" else []))
    leaf, found = OUT_OF_RANGE[case]
    if np.ndim(leaf) == 0 and mode == "flax":
        pytest.skip("mode='flax' refuses 0-d leaves before their values")
    source = iter([{"x": np.zeros((2,), np.float32), "meta": {"t": leaf}}])
    stream = create_prefetch_stream(source, mode=mode, size=1)
    with pytest.raises(OverflowError, match=r"^leaf \['meta'\]\['t'\] \(" + ".*" + found):
        next(iter(stream))
    close(stream)


@pytest.mark.parametrize("mode", DEVICE_MODES)
def test_values_that_fit_arrive_exactly_and_infinities_and_nans_stay(mode):
    needs(*([mode] if mode != "thread" else []))
    batch = {
        "ids": np.array([2**31 - 1, -(2**31), 0], np.int64),
        "u": np.array([2**32 - 1], np.uint64),
        "f": np.array([np.inf, -np.inf, np.nan, 3.0e38]),
    }
    if mode != "flax":  # Flax cannot split an empty leading axis: that raises, naming the leaf
        batch["empty"] = np.zeros((0,), np.int64)
    stream = create_prefetch_stream(iter([batch]), mode=mode, size=1)
    got = next(iter(stream))
    close(stream)
    assert np.asarray(got["ids"]).tolist() == [2**31 - 1, -(2**31), 0]
    assert np.asarray(got["u"]).tolist() == [2**32 - 1]
    f = np.asarray(got["f"])
    assert np.isposinf(f[0]) and np.isneginf(f[1]) and np.isnan(f[2]) and np.isfinite(f[3])
    assert mode == "flax" or got["empty"].shape == (0,)


def test_with_x64_enabled_wide_integers_arrive_whole():
    run_with_devices(
        """
        import numpy as np
        from prefetch_generator_jax import DevicePrefetcher
        batch = {"t": np.array([1_700_000_000_000_000_000], np.int64), "u": np.uint64(2**63)}
        got = next(DevicePrefetcher(1).prefetch(iter([batch])))
        assert int(got["t"][0]) == 1_700_000_000_000_000_000, got
        assert int(got["u"]) == 2**63 and str(got["u"].dtype) == "uint64", got
        """,
        devices=1,
        env={"JAX_ENABLE_X64": "1"},
    )


# -- item 4: a failing source never costs a batch; the same leaf errors in every mode ------


@pytest.mark.parametrize("composition", list(COMPOSITIONS))
def test_a_failing_source_delivers_every_batch_before_its_error(composition):
    def failing():
        for i in range(5):
            yield {"x": np.full((4, 2), i, np.float32)}
        raise OSError("disk gone")

    stream = stream_for(composition, failing())
    seen = []
    with pytest.raises(OSError, match="disk gone"):
        for batch in stream:
            seen.append(int(batch["x"][0, 0]))
    assert seen == [0, 1, 2, 3, 4]
    assert list(stream) == []
    close(stream)


BAD_LEAVES = {
    "str": ("text", TypeError),
    "bytes": (b"\x01\x02", TypeError),
    "unicode array": (np.array(["a", "b"]), TypeError),
    "object array": (np.array([{}, None], dtype=object), TypeError),
    "datetime64": (np.array(["2024-01-01"], dtype="datetime64[ns]"), TypeError),
    "masked array": (np.ma.array([1.0, 2.0], mask=[False, True]), ValueError),
}


@pytest.mark.parametrize("mode", DEVICE_MODES)
@pytest.mark.parametrize("case", list(BAD_LEAVES))
def test_a_leaf_jax_cannot_hold_raises_the_same_error_naming_it_after_earlier_batches(mode, case):
    needs(*([mode] if mode != "thread" else []))
    leaf, kind = BAD_LEAVES[case]
    good = {"x": np.zeros((2, 2), np.float32), "extra": np.zeros((2,), np.float32)}
    source = iter([good, {"x": np.zeros((2, 2), np.float32), "extra": leaf}])
    stream = iter(create_prefetch_stream(source, mode=mode, size=2))
    assert next(stream)["x"].shape == (2, 2)
    with pytest.raises(kind, match=r"^cannot put leaf \['extra'\] \("):
        next(stream)
    close(stream)


def test_mode_flax_refuses_a_0d_leaf_naming_it_after_earlier_batches():
    needs("flax")
    source = iter([{"x": np.zeros((2,), np.float32)}, {"x": np.zeros((2,)), "step": 3}])
    stream = create_prefetch_stream(source, mode="flax", size=2)
    assert next(stream)["x"].shape == (2,)
    with pytest.raises(ValueError, match=r"^leaf \['step'\] has shape \(\): mode='flax'"):
        next(stream)


# -- item 5: len() and the state a source does not have --------------------------------------

LENGTHED = {
    "Prefetcher": lambda s: Prefetcher(2).prefetch(s),
    "DevicePrefetcher": lambda s: DevicePrefetcher(2).prefetch(s),
    "Prefetcher into DevicePrefetcher": lambda s: DevicePrefetcher(2).prefetch(
        Prefetcher(2).prefetch(s)
    ),
    "mode thread": lambda s: create_prefetch_stream(s, mode="thread", size=2),
    "mode flax": lambda s: create_prefetch_stream(s, mode="flax", size=2),
}


@pytest.mark.parametrize("composition", list(LENGTHED))
def test_len_is_the_sources_through_every_stage(composition):
    if composition == "mode flax":
        needs("flax")
    stream = LENGTHED[composition]([np.full((2,), i) for i in range(6)])
    assert len(stream) == 6
    assert [int(b[0]) for b in stream] == list(range(6))
    with pytest.raises(TypeError, match="'generator' has no len"):
        len(LENGTHED[composition](np.zeros((2,)) for _ in range(1)))


STATELESS = dict(LENGTHED)
STATELESS["mode grain"] = lambda s: create_prefetch_stream(s, mode="grain", size=2)


@pytest.mark.parametrize("name", ["get_state", "state_dict"])
@pytest.mark.parametrize("composition", list(STATELESS))
def test_asking_for_a_state_the_source_lacks_raises_type_error_naming_it_then(composition, name):
    if composition in ("mode grain", "mode flax"):
        needs(composition.split()[1])
    if composition == "mode grain" and name == "state_dict":
        pytest.skip("a Grain iterator has get_state only")
    stream = STATELESS[composition](np.full((2,), i) for i in range(3))
    next(stream)
    with pytest.raises(TypeError, match=rf"^{name}\(\) needs a source .* and generator has none$"):
        getattr(stream, name)()
    close(stream)


def test_mode_flax_gives_the_sources_state_as_of_the_last_batch_delivered():
    grain = pytest.importorskip("grain")
    needs("flax")
    dataset = (
        grain.MapDataset.range(6)
        .map(lambda i: np.full((2,), i))
        .to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
    )
    stream = create_prefetch_stream(iter(dataset), mode="flax", size=3)
    assert [int(next(stream)[0]) for _ in range(2)] == [0, 1]
    state = stream.get_state()  # Flax has taken 3 more from the source by now
    stream.close()
    resumed = iter(dataset)
    resumed.set_state(state)
    assert [int(x[0]) for x in resumed] == [2, 3, 4, 5]


# -- odd batches a demanding user feeds ---------------------------------------------------

Pair = collections.namedtuple("Pair", ["image", "label"])


@pytest.mark.parametrize("composition", list(COMPOSITIONS))
def test_odd_dtypes_ranks_and_pytrees_arrive_with_their_values(composition):
    bf16 = jax.numpy.bfloat16
    rng = np.random.default_rng(0)
    batches = [
        {
            "pair": Pair(rng.standard_normal((2, 3, 1, 2, 2)).astype(np.float32), np.arange(2)),
            "bf16": np.arange(4, dtype=bf16) + i,
            "half": np.full((2, 2), i, np.float16),
            "flags": np.array([True, False]),
            "u8": np.full((3,), 250 + i, np.uint8),
            "nothing": None,
            "nested": [(np.full((1,), -i, np.int8),)],
        }
        for i in range(3)
    ]
    stream = stream_for(composition, iter(batches))
    for expected, got in zip(batches, stream, strict=True):
        assert jax.tree.structure(got) == jax.tree.structure(expected)
        for want, have in zip(jax.tree.leaves(expected), jax.tree.leaves(got)):
            dtype = (
                want.dtype
                if isinstance(have, np.ndarray)
                else jax.dtypes.canonicalize_dtype(want.dtype)
            )
            assert have.dtype == dtype
            np.testing.assert_array_equal(np.asarray(have), want)
    close(stream)


# -- issue 20: importing without jax --------------------------------------------------------


def interpreter_without_jax():
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[0-3]*/bin/python")))
    for python in candidates:
        probe = subprocess.run([python, "-c", "import jax"], capture_output=True, timeout=60)
        if probe.returncode != 0:
            return python
    pytest.skip("no CPython >= 3.10 without jax on this machine")


def test_importing_without_jax_says_which_extra_to_install():
    result = subprocess.run(
        [interpreter_without_jax(), "-c", "import prefetch_generator_jax"],
        env=dict(os.environ, PYTHONPATH=REPO),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: prefetch_generator_jax needs jax and numpy: "), last
    assert 'pip install "prefetch_generator[jax]"' in last
