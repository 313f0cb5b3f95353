"""The most common client: a DataLoaderX subclass over a real torch DataLoader."""

import pytest

torch = pytest.importorskip(
    "torch", reason="torch is not installed (CI installs torch==2.13.0, the CPU build)"
)
tqdm = pytest.importorskip("tqdm").tqdm

from torch.utils.data import DataLoader, Dataset  # noqa: E402

from prefetch_generator import BackgroundGenerator  # noqa: E402

ROWS, BATCH = 96, 8


class Squares(Dataset):
    def __len__(self):
        return ROWS

    def __getitem__(self, index):
        return torch.full((3,), float(index)), torch.tensor(index * index)


def make_loader_x(max_prefetch):
    class DataLoaderX(DataLoader):
        def __iter__(self):
            return BackgroundGenerator(super().__iter__(), max_prefetch=max_prefetch)

    return DataLoaderX


def loader_options(num_workers):
    # Worker processes come from a fork server: forking this test process
    # directly could copy a lock held by one of JAX's threads (other tests
    # import JAX) into a worker and deadlock it.
    if num_workers == 0:
        return {}
    return {"num_workers": num_workers, "multiprocessing_context": "forkserver"}


def expected_batch(number):
    indices = torch.arange(number * BATCH, (number + 1) * BATCH)
    return indices.float().unsqueeze(1).expand(BATCH, 3), indices * indices


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("max_prefetch", [1, 8, -1])
def test_every_batch_arrives_once_in_order_for_several_epochs(num_workers, max_prefetch):
    loader_x = make_loader_x(max_prefetch)
    loader = loader_x(Squares(), batch_size=BATCH, **loader_options(num_workers))
    for _ in range(3):
        batches = list(tqdm(loader, total=len(loader), disable=True))
        assert len(batches) == len(loader) == ROWS // BATCH
        for number, (features, targets) in enumerate(batches):
            want_features, want_targets = expected_batch(number)
            assert torch.equal(features, want_features)
            assert torch.equal(targets, want_targets)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_inline_wrap_with_tqdm_and_an_early_break_each_epoch(num_workers):
    loader = DataLoader(Squares(), batch_size=BATCH, **loader_options(num_workers))
    for _ in range(3):
        seen = []
        for step, (features, _) in tqdm(
            enumerate(BackgroundGenerator(loader, max_prefetch=2)), total=len(loader), disable=True
        ):
            seen.append(int(features[0, 0]))
            if step == 4:
                break
        assert seen == [0, 8, 16, 24, 32]
