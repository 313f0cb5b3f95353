"""Abandonment: create, take 3 items, drop. What it costs and what it leaves running.

For each contender, N iterators over an endless generator are created, partly
consumed and dropped (the ``for ...: break`` of a training loop); then
``gc.collect()``. Reported: the median cost of one create-consume-drop, the
threads still alive, and how many sources had their ``finally`` run.

    python benchmarks/abandon.py            # quick
    python benchmarks/abandon.py --long
"""

import argparse
import gc
import itertools
import statistics
import threading
import time

from peers import contenders, python_version


def endless(closed):
    try:
        yield from itertools.count()
    finally:
        closed.append(1)


def abandon(wrap, iterators):
    closed, costs = [], []
    threads_before = threading.active_count()
    for _ in range(iterators):
        started = time.perf_counter()
        iterator = wrap(endless(closed), 1)
        for _, _ in zip(range(3), iterator):
            pass
        del iterator
        costs.append(time.perf_counter() - started)
    gc.collect()
    return statistics.median(costs), threading.active_count() - threads_before, len(closed)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--long", action="store_true", help="10x the iterators")
    args = parser.parse_args()
    iterators = 1000 if args.long else 100
    print(f"{python_version()}; {iterators} iterators each\n")
    header = ("contender", "ms per iterator", "threads left", "sources closed")
    print("{:<26} | {:>15} | {:>12} | {:>14}".format(*header))
    print("-" * 78)
    verdict = ""
    for name, wrap in contenders().items():
        if wrap is None:
            continue
        cost_s, threads_left, closed = abandon(wrap, iterators)
        print(f"{name:<26} | {cost_s * 1e3:>15.3f} | {threads_left:>12} | {closed:>14}")
        if name == "prefetch_generator":
            verdict = (
                f"prefetch_generator: {cost_s * 1e3:.3f} ms per abandoned iterator, "
                f"{threads_left} threads left, {closed}/{iterators} sources closed"
            )
    print("\n" + verdict)


if __name__ == "__main__":
    main()
