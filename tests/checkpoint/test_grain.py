"""Exact resume through the prefetch and the JAX device stage over Grain iterators."""

import copy
import threading

import pytest

grain = pytest.importorskip("grain", reason="grain is not installed (CPython >= 3.11)")
np = pytest.importorskip("numpy")

from prefetch_generator import BackgroundGenerator  # noqa: E402

BOUND_S = 30
ROWS, BATCH = 24, 2
ALL = [[row, row + 1] for row in range(0, ROWS, BATCH)]
CONSUMED = 5


class Pipeline:
    """A Grain pipeline over rows ``0..ROWS-1`` in batches of two.

    Grain computes elements in the thread that calls ``next()`` (no threads
    of its own), so once a batch's rows are computed the iterator has
    returned every batch before it: ``reached`` is set when batch
    ``ahead_of + 1`` is begun, when the live state is past batch ``ahead_of``.
    """

    def __init__(self, ahead_of=None):
        self.at = None if ahead_of is None else (ahead_of + 1) * BATCH
        self.reached = threading.Event()
        self.dataset = (
            grain.MapDataset.range(ROWS)
            .map(self.signal)
            .batch(BATCH)
            .to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
        )

    def signal(self, row):
        if row == self.at:
            self.reached.set()
        return row

    def iterator(self, state=None):
        iterator = iter(self.dataset)
        if state is not None:
            iterator.set_state(state)
        return iterator


def values(batches):
    return [np.asarray(batch).tolist() for batch in batches]


def take(bg, count):
    return [next(bg) for _ in range(count)]


@pytest.mark.parametrize("max_prefetch", [1, 8, 64])
def test_resume_gives_every_batch_once_in_order(max_prefetch):
    pipeline = Pipeline(ahead_of=CONSUMED)
    source = pipeline.iterator()
    bg = BackgroundGenerator(source, max_prefetch)
    seen = take(bg, CONSUMED)
    assert pipeline.reached.wait(BOUND_S)
    state = bg.get_state()
    assert source.get_state() != state  # the iterator itself is past the batches seen
    saved = copy.deepcopy(state)
    assert values(seen) + values(bg) == ALL
    assert state == saved  # the snapshot did not change as the iterator went on

    resumed = BackgroundGenerator(Pipeline().iterator(state), max_prefetch)
    assert values(seen) + values(resumed) == ALL


def test_state_before_the_first_batch_resumes_from_the_start():
    pipeline = Pipeline(ahead_of=0)
    with BackgroundGenerator(pipeline.iterator(), 4) as bg:
        assert pipeline.reached.wait(BOUND_S)
        state = bg.get_state()
    assert values(BackgroundGenerator(Pipeline().iterator(state))) == ALL


class TestDeviceStage:
    """``DevicePrefetcher(Prefetcher(...))`` and ``mode="thread"``: Grain's state survives."""

    @pytest.fixture(autouse=True)
    def jax_stages(self):
        pytest.importorskip("jax", reason="jax is not installed (CPython >= 3.11)")
        from prefetch_generator_jax import DevicePrefetcher, Prefetcher, create_prefetch_stream

        self.device = DevicePrefetcher
        self.host = Prefetcher
        self.stream = create_prefetch_stream

    def stacked(self, iterator):
        return self.device(2).prefetch(self.host(4).prefetch(iterator))

    def test_resume_through_both_stages(self):
        pipeline = Pipeline(ahead_of=CONSUMED + 2)
        bg = self.stacked(pipeline.iterator())
        seen = take(bg, CONSUMED)
        assert pipeline.reached.wait(BOUND_S)
        state = bg.get_state()
        assert state == {"next_index": CONSUMED}
        with pytest.raises(TypeError, match="has none; it has get_state"):
            bg.state_dict()
        bg.close()
        resumed = self.stacked(Pipeline().iterator(state))
        assert values(seen) + values(resumed) == ALL

    def test_state_before_the_first_batch_through_both_stages(self):
        pipeline = Pipeline(ahead_of=2)
        with self.stacked(pipeline.iterator()) as bg:
            assert pipeline.reached.wait(BOUND_S)
            assert bg.get_state() == {"next_index": 0}

    def test_thread_mode_stream_resumes_exactly(self):
        pipeline = Pipeline(ahead_of=CONSUMED)
        stream = self.stream(pipeline.iterator(), mode="thread", size=2)
        seen = take(stream, CONSUMED)
        assert pipeline.reached.wait(BOUND_S)
        state = stream.get_state()
        stream.close()
        resumed = self.stream(Pipeline().iterator(state), mode="thread", size=2)
        assert values(seen) + values(resumed) == ALL

    def test_after_the_end_the_state_is_the_iterators_own_after_its_end(self):
        plain = Pipeline().iterator()
        assert values(plain) == ALL
        bg = self.stacked(Pipeline().iterator())
        assert values(bg) == ALL
        assert bg.get_state() == plain.get_state()
