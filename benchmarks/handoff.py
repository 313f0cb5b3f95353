"""Per-item cost of the hand-off, against the floor and the peers.

A trivial producer (ints from ``range``) and a trivial consumer (does nothing),
at max_prefetch 1, 8 and 64. Every contender runs once per round, in an order
rotated each round, all in this one process; the table shows medians over the
rounds.

The floor is what any thread hand-off must pay (docs/handoff.md): the
single-threaded data path (a Python loop appending the source's items to a
deque, plus a Python-level ``__next__`` popping them), plus one thread round
trip (a two-lock ping-pong, measured in the same rounds) per max_prefetch + 1
items, because with the GIL each side runs dry once per buffer.

    python benchmarks/handoff.py            # quick (about a minute)
    python benchmarks/handoff.py --long     # more items and rounds
    python benchmarks/handoff.py --cpu 0    # both threads on one CPU (Linux)
"""

import argparse
import itertools
import os
import statistics
import threading
import timeit
from collections import deque
from time import perf_counter

from peers import contenders, ping_pong_round_trip_s, python_version, rotated
from prefetch_generator._channel import GIL_ENABLED, Channel, _tally

OURS, OLD = "prefetch_generator", "prefetch-generator 1.0.3"


def per_item_ns(wrap, k, items):
    started = perf_counter()
    for _ in wrap(iter(range(items)), k):
        pass
    return (perf_counter() - started) / items * 1e9


class Drain:
    """A Python-level ``__next__`` popping a deque: the consumer's share of the floor."""

    def __init__(self, items):
        self.items = items

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return self.items.popleft()
        except IndexError:
            raise StopIteration from None


def data_path_ns(items):
    """The single-threaded data path: append every item, then pop every item."""
    buffer = deque()
    append = buffer.append
    started = perf_counter()
    for item in iter(range(items)):
        append(item)
    for _ in Drain(buffer):
        pass
    return (perf_counter() - started) / items * 1e9


def shared_data_path_ns(items):
    """The data path split over two threads that run at once and never sleep:
    what sharing the deque costs when nothing waits (free-threaded builds)."""
    buffer = deque()
    pop = buffer.popleft
    start = threading.Barrier(2)

    def produce():
        append = buffer.append
        start.wait()
        for item in iter(range(items)):
            append(item)

    thread = threading.Thread(target=produce)
    thread.start()
    start.wait()
    started = perf_counter()
    left = items
    while left:
        try:
            pop()
            left -= 1
        except IndexError:
            pass
    elapsed = perf_counter() - started
    thread.join()
    return elapsed / items * 1e9


def measure(k, items, rounds, wraps):
    samples = {name: [] for name in ["data path", "floor", *wraps]}
    for round_ in range(rounds):
        names = rotated(list(wraps), round_)
        data_path = data_path_ns(items)
        samples["data path"].append(data_path)
        samples["floor"].append(data_path + ping_pong_round_trip_s(2000) * 1e9 / (k + 1))
        for name in names:
            samples[name].append(per_item_ns(wraps[name], k, items))
    return {name: statistics.median(values) for name, values in samples.items()}


def stats_bookkeeping_ns(k):
    """What stats() costs per item: the producer's tally (its loop over
    ``zip(bound, map(append, source), tally)`` against ``map(append, source)``),
    plus the wait accounting (two perf_counter() calls and an add) on both sides
    once per k + 1 items."""
    channel = Channel(k + 1)
    items, rounds = 1_000_000, 5
    names = {"deque": deque, "n": items, "repeat": itertools.repeat, "tally": _tally}
    tallied = "for step in zip(repeat(None, n), map(deque().append, range(n)), tally()): del step"
    untallied = "for step in map(deque().append, range(n)): del step"
    times = {tallied: [], untallied: []}
    for _ in range(rounds):
        for loop, samples in times.items():
            samples.append(timeit.timeit(loop, globals=names, number=1))
    counter = (min(times[tallied]) - min(times[untallied])) / items
    repeat = 1_000_000
    accounting = timeit.timeit(
        "s = p()\nc.producer_wait_s += p() - s",
        globals={"c": channel, "p": perf_counter},
        number=repeat,
    )
    return (counter + 2 * accounting / repeat / (k + 1)) * 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--long", action="store_true", help="10x the items, 3x the rounds")
    parser.add_argument(
        "--cpu", type=int, help="run every thread on this one CPU (Linux); default: any"
    )
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    items, rounds = (200_000, 15) if args.long else (20_000, 5)
    found = contenders()
    wraps = {name: wrap for name, wrap in found.items() if wrap is not None}
    where = "any CPU" if args.cpu is None else f"all threads on CPU {args.cpu}"
    print(f"{python_version()}; {where}; {items} items x {rounds} rounds per cell")
    missing = [name for name, wrap in found.items() if wrap is None]
    if missing:
        print("not installed:", ", ".join(missing))
    print()
    print(
        f"{'max_prefetch':>12} | {'contender':<24} | {'ns/item':>9} | "
        f"{'1.0.3 / it':>10} | {'it / floor':>10}"
    )
    print("-" * 78)
    verdicts = []
    for k in (1, 8, 64):
        medians = measure(k, items, rounds, wraps)
        for name, ns in medians.items():
            speedup = medians[OLD] / ns if OLD in medians else float("nan")
            print(
                f"{k:>12} | {name:<24} | {ns:>9.0f} | {speedup:>9.2f}x | "
                f"{ns / medians['floor']:>9.2f}x"
            )
        print("-" * 78)
        if OLD in medians:
            verdicts.append(
                f"max_prefetch={k}: {medians[OLD] / medians[OURS]:.2f}x faster than 1.0.3, "
                f"{medians[OURS] / medians['floor']:.2f}x the floor"
            )
    bookkeeping = stats_bookkeeping_ns(64)
    verdicts.append(
        f"stats() bookkeeping at max_prefetch=64: {bookkeeping:.0f} ns/item, "
        f"{bookkeeping / medians[OURS]:.1%} of the per-item cost"
    )
    if not GIL_ENABLED:
        alone = statistics.median(data_path_ns(items) for _ in range(rounds))
        shared = statistics.median(shared_data_path_ns(items) for _ in range(rounds))
        verdicts.append(
            f"no GIL: the data path over two threads at once, never sleeping: "
            f"{shared:.0f} ns/item, against {alone:.0f} in one thread"
        )
    print("\n".join(verdicts))


if __name__ == "__main__":
    main()
