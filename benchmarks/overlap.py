"""Overlap: how close loading and compute come to running fully in parallel.

Producer and consumer each sleep P ms per item (a GIL-releasing load and
step). The limit is two free threads doing the same sleeps with no hand-off
at all; a perfect prefetcher matches it. Wake latency has its own script,
``wake_latency.py``.

    python benchmarks/overlap.py            # quick (about 30 s)
    python benchmarks/overlap.py --long
"""

import argparse
import statistics
import threading
import time

from peers import contenders, python_version

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--long", action="store_true", help="5x the items and rounds")
    args = parser.parse_args()
    scale = 5 if args.long else 1
    wraps = {name: wrap for name, wrap in contenders().items() if wrap is not None}
    print(f"{python_version()}\n")

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

    print("\n" + "\n".join(verdicts))


if __name__ == "__main__":
    main()
