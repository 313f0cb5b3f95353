"""Overlap and wake latency, against the two-free-threads limit and a bare SimpleQueue.

Overlap: producer and consumer each sleep P ms per item (a GIL-releasing load
and step). The limit is two free threads doing the same sleeps with no
hand-off at all; a perfect prefetcher matches it.

Wake latency: the consumer is blocked in ``next()``; the producer yields an
item stamped with ``perf_counter()``; the consumer measures how long the item
took to reach it. The reference is the same hand-off through a bare
``queue.SimpleQueue``.

    python benchmarks/overlap.py            # quick (about 30 s)
    python benchmarks/overlap.py --long
"""

import argparse
import statistics
import sys
import threading
import time
from queue import SimpleQueue

from peers import contenders

OURS, OLD = "prefetch_generator", "prefetch-generator 1.0.3"


def sleeping_source(items, seconds):
    for item in range(items):
        time.sleep(seconds)
        yield item


def overlapped_s(wrap, items, seconds):
    started = time.perf_counter()
    for _ in wrap(sleeping_source(items, seconds), 2):
        time.sleep(seconds)
    return time.perf_counter() - started


def two_free_threads_s(items, seconds):
    def sleeper():
        for _ in range(items):
            time.sleep(seconds)

    started = time.perf_counter()
    other = threading.Thread(target=sleeper)
    other.start()
    sleeper()
    other.join()
    return time.perf_counter() - started


def stamped_source(items, gap_s):
    for _ in range(items):
        time.sleep(gap_s)  # lets the consumer block before each item
        yield time.perf_counter()


def wake_latency_us(wrap, items, gap_s):
    return [(time.perf_counter() - stamp) * 1e6 for stamp in wrap(stamped_source(items, gap_s), 1)]


def simple_queue_latency_us(items, gap_s):
    queue = SimpleQueue()

    def producer():
        for stamp in stamped_source(items, gap_s):
            queue.put(stamp)

    thread = threading.Thread(target=producer)
    thread.start()
    latencies = []
    for _ in range(items):
        stamp = queue.get()
        latencies.append((time.perf_counter() - stamp) * 1e6)
    thread.join()
    return latencies


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--long", action="store_true", help="5x the items and rounds")
    args = parser.parse_args()
    scale = 5 if args.long else 1
    wraps = {name: wrap for name, wrap in contenders().items() if wrap is not None}
    print(f"Python {sys.version.split()[0]}\n")

    print("Overlap: both sides sleep P ms per item; time / two free threads' time (median)")
    print(f"{'P ms':>5} | {'items':>5} | " + " | ".join(f"{name[:24]:>24}" for name in wraps))
    verdicts = []
    for seconds, items in ((0.0002, 500 * scale), (0.001, 200 * scale)):
        ratios = {name: [] for name in wraps}
        for _ in range(9 * scale):
            for name, wrap in wraps.items():
                limit = two_free_threads_s(items, seconds)
                ratios[name].append(overlapped_s(wrap, items, seconds) / limit)
        medians = {name: statistics.median(values) for name, values in ratios.items()}
        print(
            f"{seconds * 1e3:>5} | {items:>5} | "
            + " | ".join(f"{medians[name]:>23.3f}x" for name in wraps)
        )
        verdicts.append(f"overlap at {seconds * 1e3} ms: {medians[OURS]:.3f}x the limit")

    print("\nWake latency, consumer blocked, us (median / p90)")
    items, gap_s = 300 * scale, 0.001
    latencies = {"bare SimpleQueue": simple_queue_latency_us(items, gap_s)}
    for name, wrap in wraps.items():
        latencies[name] = wake_latency_us(wrap, items, gap_s)
    for name, values in latencies.items():
        values.sort()
        p90 = values[int(0.9 * len(values))]
        print(f"{name:<26} {statistics.median(values):>8.1f} / {p90:.1f}")
    gap = statistics.median(latencies[OURS]) - statistics.median(latencies["bare SimpleQueue"])
    verdicts.append(f"wake latency: {gap:+.1f} us against a bare SimpleQueue")
    print("\n" + "\n".join(verdicts))


if __name__ == "__main__":
    main()
