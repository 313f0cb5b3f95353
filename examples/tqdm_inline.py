"""Wrap a loader inline; tqdm shows the total without ``total=``.

    pip install . tqdm
    python examples/tqdm_inline.py

``len(BackgroundGenerator(loader))`` is ``len(loader)`` when the loader has a
length (a list, a ``range``, a torch DataLoader): the number of items it gives
in all, not the number left. A generator has no length: then ``len()`` raises
TypeError and tqdm shows a count with no total.
"""

import sys
import time

from tqdm import tqdm

from prefetch_generator import BackgroundGenerator


class Loader:
    """A sized iterable, like a DataLoader: ``len()`` is the number of batches."""

    def __init__(self, batches):
        self.batches = batches

    def __len__(self):
        return self.batches

    def __iter__(self):
        for index in range(self.batches):
            time.sleep(0.004)  # reading and decoding a batch, outside the GIL
            yield [index] * 100


def train_step(batch):
    time.sleep(0.004)  # the step, also outside the GIL (a GPU, NumPy, ...)
    return sum(batch)


def main():
    loader = Loader(100)
    start = time.perf_counter()
    for batch in tqdm(BackgroundGenerator(loader), file=sys.stdout, ascii=True, mininterval=0.25):
        train_step(batch)
    elapsed = time.perf_counter() - start
    print(f"{len(loader)} batches in {elapsed:.2f} s (about 0.80 s without prefetching)")


if __name__ == "__main__":
    main()
