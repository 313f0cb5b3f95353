"""A torch DataLoader whose batches are prefetched in a background thread.

    pip install . torch==2.13.0
    python examples/dataloaderx_torch.py

(``torch==2.13.0`` is the CPU build the test extra installs on CPython 3.11; a bare
``torch`` can bring the CUDA build, gigabytes of it. Any recent torch runs this.)

``DataLoaderX`` is the pattern most users of prefetch-generator copy: each
epoch's ``iter()`` gets a fresh BackgroundGenerator, which takes batches from
the DataLoader while the training step works on the previous one. ``len()``
still gives the number of batches, because BackgroundGenerator passes
``len()`` through to the iterable it wraps.
"""

import torch
from torch.utils.data import DataLoader, TensorDataset

from prefetch_generator import BackgroundGenerator


class DataLoaderX(DataLoader):
    def __iter__(self):
        return BackgroundGenerator(super().__iter__(), max_prefetch=4)


def main():
    torch.manual_seed(0)
    features = torch.randn(256, 8)
    targets = features @ torch.arange(1.0, 9.0) + 0.5
    loader = DataLoaderX(TensorDataset(features, targets), batch_size=32, shuffle=True)

    model = torch.nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for epoch in range(3):
        total, batches = 0.0, 0
        for x, y in loader:  # a new BackgroundGenerator each epoch
            loss = torch.nn.functional.mse_loss(model(x).squeeze(1), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
            batches += 1
        print(f"epoch {epoch}: {batches}/{len(loader)} batches, mean loss {total / batches:.3f}")


if __name__ == "__main__":
    main()
