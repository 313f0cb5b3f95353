"""Exact resume through the prefetch with torchdata's StatefulDataLoader (torch CPU)."""

import copy
import threading

import pytest

torch = pytest.importorskip(
    "torch", reason="torch is not installed (CI installs torch==2.13.0, the CPU build)"
)
stateful_dataloader = pytest.importorskip(
    "torchdata.stateful_dataloader", reason="torchdata is not installed (CI installs 0.11.0)"
)
StatefulDataLoader = stateful_dataloader.StatefulDataLoader

from torch.utils.data import SequentialSampler  # noqa: E402

from prefetch_generator import BackgroundGenerator  # noqa: E402

BOUND_S = 60
ROWS, BATCH = 24, 2
BATCHES = ROWS // BATCH
CONSUMED = 5
# Worker processes come from a fork server that has imported torch once,
# rather than each importing it anew (seconds each on a 2-core machine); if
# an earlier test started the server, it is reused as it is.
torch.multiprocessing.get_context("forkserver").set_forkserver_preload(["torch"])

# Worker processes fetch this many batches ahead of the loader's iterator:
# its prefetch_factor (2) times num_workers (2).
PROCESS_LEAD = 4


class Rows(torch.utils.data.Dataset):
    def __len__(self):
        return ROWS

    def __getitem__(self, index):
        return torch.tensor(index)


class SignallingSampler(SequentialSampler):
    """In order, as the default sampler; ``reached`` is set once row ``at`` is drawn.

    Rows are drawn in the thread that calls ``next()`` on the loader's
    iterator, so once a batch's rows are drawn the iterator has returned
    every batch before it.
    """

    def __init__(self, data, at=None):
        super().__init__(data)
        self.at = at
        self.reached = threading.Event()

    def __iter__(self):
        for index in super().__iter__():
            if index == self.at:
                self.reached.set()
            yield index


def make_loader(num_workers, ahead_of=None, loader_class=StatefulDataLoader):
    """A loader over Rows; with ``ahead_of``, its sampler signals once the
    iterator has returned batch ``ahead_of``, so its live state is past it."""
    options = {}
    lead = 0
    if num_workers:
        # A fork server, not fork: forking a process with threads can copy a held lock.
        options = {"num_workers": num_workers, "multiprocessing_context": "forkserver"}
        lead = PROCESS_LEAD
    at = None if ahead_of is None else (ahead_of + 1 + lead) * BATCH
    sampler = SignallingSampler(range(ROWS), at)
    return loader_class(Rows(), batch_size=BATCH, sampler=sampler, **options), sampler


def values(batches):
    return [batch.tolist() for batch in batches]


ALL = [[row, row + 1] for row in range(0, ROWS, BATCH)]


def take(bg, count):
    return [next(bg) for _ in range(count)]


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("max_prefetch", [1, 8, 64])
def test_resume_gives_every_batch_once_in_order(num_workers, max_prefetch):
    loader, sampler = make_loader(num_workers, ahead_of=CONSUMED)
    bg = BackgroundGenerator(loader, max_prefetch)
    seen = take(bg, CONSUMED)
    assert sampler.reached.wait(BOUND_S)
    state = bg.state_dict()
    assert loader.state_dict() != state  # the loader itself is past the batches seen
    saved = copy.deepcopy(state)
    assert values(seen) + values(bg) == ALL
    assert state == saved  # the snapshot did not change as the loader went on

    restored, _ = make_loader(num_workers)
    restored.load_state_dict(state)
    assert values(seen) + values(BackgroundGenerator(restored, max_prefetch)) == ALL


@pytest.mark.parametrize("num_workers", [0, 2])
def test_state_before_the_first_batch_resumes_from_the_start(num_workers):
    loader, sampler = make_loader(num_workers, ahead_of=0)
    with BackgroundGenerator(loader, 4) as bg:
        assert sampler.reached.wait(BOUND_S)
        state = bg.state_dict()
    restored, _ = make_loader(num_workers)
    restored.load_state_dict(state)
    assert values(BackgroundGenerator(restored, 4)) == ALL


def test_two_stacked_stages_resume_exactly():
    loader, sampler = make_loader(0, ahead_of=CONSUMED)
    bg = BackgroundGenerator(BackgroundGenerator(loader, 2), 2)
    seen = take(bg, CONSUMED)
    assert sampler.reached.wait(BOUND_S)
    state = bg.state_dict()
    bg.close()
    restored, _ = make_loader(0)
    restored.load_state_dict(state)
    resumed = BackgroundGenerator(BackgroundGenerator(restored, 2), 2)
    assert values(seen) + values(resumed) == ALL


class DataLoaderX(StatefulDataLoader):
    """The recipe in docs/checkpointing.md: a StatefulDataLoader that prefetches, checkpointable."""

    _prefetched = None

    def __iter__(self):
        self._prefetched = BackgroundGenerator(super().__iter__(), max_prefetch=4)
        return self._prefetched

    def state_dict(self):
        if self._prefetched is None:
            return super().state_dict()
        return self._prefetched.state_dict()

    def load_state_dict(self, state):
        self._prefetched = None
        super().load_state_dict(state)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataloaderx_recipe_resumes_mid_epoch_and_at_an_epoch_end(num_workers):
    loader, sampler = make_loader(num_workers, ahead_of=CONSUMED, loader_class=DataLoaderX)
    epoch = iter(loader)
    seen = take(epoch, CONSUMED)
    assert sampler.reached.wait(BOUND_S)
    mid_epoch = loader.state_dict()
    rest = list(epoch)
    end_of_epoch = loader.state_dict()

    restored, _ = make_loader(num_workers, loader_class=DataLoaderX)
    restored.load_state_dict(mid_epoch)
    assert values(seen) + values(restored) == ALL
    assert values(seen) + values(rest) == ALL
    # Saved after the epoch: the next epoch is a whole one, not an empty pass.
    restored.load_state_dict(end_of_epoch)
    assert values(restored) == ALL
