"""Wake latency: how long a ready item takes to reach a consumer blocked in ``next()``.

The producer stamps each item with ``perf_counter()`` as it yields it; the
consumer, which does nothing else and so is always waiting, measures the age
of each item it receives. Two producers:

* busy: about 1 ms of pure-Python work per item, holding the GIL. A woken
  consumer then also needs the GIL, which a busy producer keeps until it
  blocks or the switch interval (5 ms) forces a switch (docs/handoff.md);
* idle: sleeps 1 ms per item (I/O), so the GIL is free when the item lands.

The reference is the same hand-off through a bare ``queue.SimpleQueue``.
Every contender runs once per round, in an order rotated each round, all in
this one process; the table shows the median and p90 over all items.

    python benchmarks/wake_latency.py            # quick (about 30 s)
    python benchmarks/wake_latency.py --long
"""

import argparse
import threading
import time
from queue import SimpleQueue

from peers import contenders, median_and_p90, python_version, rotated

OURS, OLD = "prefetch_generator", "prefetch-generator 1.0.3"


def busy_work_loops(seconds):
    """How many iterations of ``busy`` take about ``seconds``."""
    loops = 10_000
    while True:
        started = time.perf_counter()
        busy(loops)
        elapsed = time.perf_counter() - started
        if elapsed > 0.01:
            return int(loops * seconds / elapsed)
        loops *= 2


def busy(loops):
    total = 0
    for i in range(loops):
        total += i
    return total


def stamped(items, work):
    for _ in range(items):
        work()
        yield time.perf_counter()


def latencies_us(wrap, k, items, work):
    return [(time.perf_counter() - stamp) * 1e6 for stamp in wrap(stamped(items, work), k)]


def simple_queue(iterator, k):
    queue = SimpleQueue()
    end = object()

    def producer():
        for item in iterator:
            queue.put(item)
        queue.put(end)

    threading.Thread(target=producer, daemon=True).start()
    return iter(queue.get, end)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--long", action="store_true", help="5x the items and rounds")
    args = parser.parse_args()
    scale = 5 if args.long else 1
    items, rounds = 60 * scale, 3 * scale
    wraps = {"bare SimpleQueue": simple_queue}
    wraps.update((name, wrap) for name, wrap in contenders().items() if wrap is not None)
    loops = busy_work_loops(0.001)
    producers = {"busy": lambda: busy(loops), "idle": lambda: time.sleep(0.001)}
    print(f"{python_version()}; {items} items x {rounds} rounds per cell\n")
    print(f"{'producer':>8} | {'k':>2} | {'contender':<26} | {'median us':>9} | {'p90 us':>8}")
    print("-" * 66)
    verdicts = []
    for producer, work in producers.items():
        for k in (1, 8):
            samples = {name: [] for name in wraps}
            for round_ in range(rounds):
                for name in rotated(list(wraps), round_):
                    samples[name].extend(latencies_us(wraps[name], k, items, work))
            medians = {}
            for name, values in samples.items():
                medians[name], p90 = median_and_p90(values)
                print(f"{producer:>8} | {k:>2} | {name:<26} | {medians[name]:>9.0f} | {p90:>8.0f}")
            print("-" * 66)
            if OLD in medians:
                verdicts.append(
                    f"{producer} producer, max_prefetch={k}: median {medians[OURS]:.0f} us, "
                    f"{medians[OLD] / medians[OURS]:.1f}x lower than 1.0.3"
                )
    print("\n".join(verdicts))


if __name__ == "__main__":
    main()
