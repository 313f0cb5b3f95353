"""``python -m prefetch_generator``: a loader and a training step, serial and overlapped."""

import argparse
import time
from typing import Iterator, List, Optional

from . import BackgroundGenerator


def simulated_loader(items: int, load_s: float) -> Iterator[int]:
    """Yield ``items`` batches, each after ``load_s`` of GIL-releasing "I/O"."""
    for batch in range(items):
        time.sleep(load_s)
        yield batch


def train(batches: Iterator[int], step_s: float) -> float:
    """Run a GIL-releasing "step" per batch; return the wall time."""
    started = time.perf_counter()
    for _ in batches:
        time.sleep(step_s)
    return time.perf_counter() - started


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m prefetch_generator",
        description="Time a simulated loader feeding a simulated training step, "
        "first serially, then through BackgroundGenerator.",
    )
    option = parser.add_argument
    option("--items", type=int, default=50, help="batches to load (default 50)")
    option("--load-ms", type=float, default=20.0, help="ms to load a batch (default 20)")
    option("--step-ms", type=float, default=20.0, help="ms per training step (default 20)")
    option("--max-prefetch", type=int, default=2, help="BackgroundGenerator bound (default 2)")
    args = parser.parse_args(argv)
    load_s, step_s = args.load_ms / 1000, args.step_ms / 1000

    serial = train(simulated_loader(args.items, load_s), step_s)
    print(f"serial:                 {serial:6.2f} s  (load then step, {args.items} batches)")
    with BackgroundGenerator(simulated_loader(args.items, load_s), args.max_prefetch) as batches:
        overlapped = train(batches, step_s)
        stats = batches.stats()
    print(f"BackgroundGenerator({args.max_prefetch}): {overlapped:6.2f} s  (load overlaps step)")
    print(f"speed-up:               {serial / overlapped:6.2f}x")
    print(f"stats: {stats}")


if __name__ == "__main__":
    main()
