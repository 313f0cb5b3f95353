"""What the state snapshots cost per item, beside the time of a batch.

For a source with ``state_dict()`` or ``get_state()``, the worker calls it after
every item. This prints, for torchdata's ``StatefulDataLoader`` (num_workers 0
and 2) and a Grain iterator, all in one process:

- batch: the time per batch of the bare source (no prefetch);
- state call: the median time of one call of the source's state method, taken
  mid-epoch (what the worker adds per item);
- with / without: the time per batch through a ``BackgroundGenerator``
  (max_prefetch=4), with snapshots and with them turned off (the source seen
  through a generator, which has no state), interleaved rounds, medians.

Usage: python benchmarks/checkpoint.py [--batches 400] [--rounds 9]
"""

import argparse
import statistics
import sys
import warnings
from time import perf_counter

from peers import CACHE  # noqa: F401 (importing peers puts this checkout first on sys.path)
from prefetch_generator import BackgroundGenerator

ROWS_PER_BATCH = 32
ROW_SHAPE = (3, 32, 32)


class Images:
    """A map-style dataset of ``rows`` constant images (module level: workers unpickle it)."""

    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return self.rows

    def __getitem__(self, index):
        import torch

        return torch.full(ROW_SHAPE, float(index)), index


def torch_loader(num_workers, batches):
    import torch
    from torchdata.stateful_dataloader import StatefulDataLoader

    options = {}
    if num_workers:
        options = {"num_workers": num_workers, "multiprocessing_context": "forkserver"}
        # Workers fork from a server that has imported torch once.
        torch.multiprocessing.get_context("forkserver").set_forkserver_preload(
            ["__main__", "torch"]
        )
    loader = StatefulDataLoader(
        Images(batches * ROWS_PER_BATCH), batch_size=ROWS_PER_BATCH, **options
    )
    return (lambda: iter(loader)), "state_dict"


def grain_iterator(batches):
    import grain
    import numpy as np

    dataset = (
        grain.MapDataset.range(batches * ROWS_PER_BATCH)
        .map(lambda index: np.full(ROW_SHAPE, index, np.float32))
        .batch(ROWS_PER_BATCH)
    )
    return (lambda: iter(dataset.to_iter_dataset())), "get_state"


def per_batch(iterator, count):
    started = perf_counter()
    for _ in range(count):
        next(iterator)
    return (perf_counter() - started) / count


def timed_through_prefetch(make, hide_state, count):
    iterator = make()
    source = (item for item in iterator) if hide_state else iterator
    with BackgroundGenerator(source, 4) as bg:
        next(bg)
        seconds = per_batch(bg, count)
    close(iterator)
    return seconds


def close(iterator):
    # Grain iterators keep prefetch threads until closed; they would load the next round.
    getattr(iterator, "close", lambda: None)()


def measure(make, method, batches, rounds):
    bare, with_states, without, calls = [], [], [], []
    for round_number in range(rounds):
        iterator = make()
        next(iterator)  # worker processes and threads start here, not in the timing
        bare.append(per_batch(iterator, batches // 2))
        take = getattr(iterator, method)
        for _ in range(200):
            started = perf_counter()
            take()
            calls.append(perf_counter() - started)
        close(iterator)
        del iterator, take
        # Alternate which goes first, so neither always runs after the other's leftovers.
        for hide_state in (round_number % 2 == 0, round_number % 2 == 1):
            seconds = timed_through_prefetch(make, hide_state, batches // 2)
            (without if hide_state else with_states).append(seconds)
    return [statistics.median(x) for x in (bare, calls, with_states, without)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)  # torch's set_vital deprecation
    cases = [
        ("StatefulDataLoader, num_workers=0", lambda: torch_loader(0, args.batches)),
        ("StatefulDataLoader, num_workers=2", lambda: torch_loader(2, args.batches)),
        ("Grain iterator", lambda: grain_iterator(args.batches)),
    ]
    print(f"python {' '.join(sys.argv)}; CPython {sys.version.split()[0]}")
    print(f"batches of {ROWS_PER_BATCH} x {ROW_SHAPE} float32, max_prefetch=4, medians")
    print()
    print("| source | batch | state call | call / batch | with snapshots | without | difference |")
    print("|---|---|---|---|---|---|---|")
    for name, setup in cases:
        make, method = setup()
        bare, call, with_states, without = measure(make, method, args.batches, args.rounds)
        print(
            f"| {name} | {bare * 1e3:.3f} ms | {call * 1e6:.1f} us | {call / bare:.2%} "
            f"| {with_states * 1e3:.3f} ms | {without * 1e3:.3f} ms "
            f"| {(with_states - without) * 1e6:+.1f} us |"
        )


if __name__ == "__main__":
    main()
