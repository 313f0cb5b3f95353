"""Wrap a loader inline; tqdm shows the total without ``total=``.

    pip install . tqdm
    python examples/tqdm_inline.py

The same epoch runs twice, once over the loader itself and once through a
BackgroundGenerator, and the program prints both times: loading overlaps the
step only in the second.

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


def timed_epoch(batches):
    start = time.perf_counter()
    for batch in tqdm(batches, file=sys.stdout, ascii=True, mininterval=0.25):
        train_step(batch)
    return time.perf_counter() - start


def main():
    loader = Loader(100)
    plain = timed_epoch(loader)
    prefetched = timed_epoch(BackgroundGenerator(loader))
    print(f"{len(loader)} batches in {prefetched:.2f} s ({plain:.2f} s without prefetching)")


if __name__ == "__main__":
    main()
