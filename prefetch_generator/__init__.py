"""Run a generator in a background thread, so loading overlaps compute.

A drop-in replacement for ``prefetch-generator`` 1.0.3 that never leaks a
thread, never hangs, and never loses an item or an error::

    from prefetch_generator import BackgroundGenerator, background

    for batch in BackgroundGenerator(loader, max_prefetch=4):
        train_step(batch)

    @background(max_prefetch=4)
    def batches():
        while True:
            yield read_batch()

A worker thread takes items from the source while you work on the previous
ones. It helps when the source or the consumer releases the GIL (file and
network I/O, decompression in C, a DataLoader's worker processes, GPU work);
two pure-Python sides cannot run at once in one process.

Beyond 1.0.3: ``close()`` and ``with`` (bounded, the source's ``finally`` runs
in the worker), automatic clean-up when the object is dropped or the
interpreter exits, every ``BaseException`` from the source re-raised in the
consumer, several consumer threads, ``async for``, and ``stats()``, which says
whether the producer or the consumer is the bottleneck.
"""

from ._background import BackgroundGenerator
from ._decorator import background, prefetch
from ._stats import Stats

__all__ = ["BackgroundGenerator", "Stats", "background", "prefetch"]
__version__ = "2.0.0"
