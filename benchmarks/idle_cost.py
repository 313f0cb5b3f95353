"""Idle cost: what the bounded re-checks of sleeping threads cost while nothing moves.

Every sleep in the package re-checks its condition each ``RECHECK_S`` (0.1 s),
so a lost wake-up costs a bounded delay, never a hang. This measures what those
re-checks cost when nothing happens: ``--generators`` BackgroundGenerators,
each with one consumer thread blocked in ``next()`` on a source that yields
nothing (the consumer re-checks) and one worker parked on a full buffer that
nobody reads (the producer re-checks). It reports the process's CPU time per
idle minute and its voluntary context switches per second, against the same
number of threads blocked on a plain ``threading.Event`` (no re-check at all).

    python benchmarks/idle_cost.py
    python benchmarks/idle_cost.py --generators 100 --seconds 20
"""

import argparse
import resource
import threading
import time

from peers import python_version
from prefetch_generator import BackgroundGenerator


def idle_for(seconds: float) -> "tuple[float, float]":
    """CPU seconds per minute and voluntary context switches per second, over ``seconds``."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    time.sleep(seconds)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return cpu_s * 60 / elapsed, (after.ru_nvcsw - before.ru_nvcsw) / elapsed


def measure_plain_threads(count: int, seconds: float) -> "tuple[float, float]":
    release = threading.Event()
    threads = [threading.Thread(target=release.wait, daemon=True) for _ in range(2 * count)]
    for thread in threads:
        thread.start()
    try:
        return idle_for(seconds)
    finally:
        release.set()
        for thread in threads:
            thread.join()


def measure_generators(count: int, seconds: float) -> "tuple[float, float]":
    release = threading.Event()

    def nothing_yet():
        release.wait()
        yield from ()

    waiting = [BackgroundGenerator(nothing_yet()) for _ in range(count)]
    consumers = [threading.Thread(target=list, args=(bg,), daemon=True) for bg in waiting]
    for consumer in consumers:
        consumer.start()
    parked = [BackgroundGenerator(iter(int, 1)) for _ in range(count)]  # endless, unread
    deadline = time.monotonic() + 10
    while (
        not all(bg._channel.parked for bg in parked)
        or len([bg for bg in waiting if bg._channel.waiters]) < count
    ):
        if time.monotonic() > deadline:
            raise RuntimeError("the generators never all went idle")
        time.sleep(0.01)
    try:
        return idle_for(seconds)
    finally:
        release.set()
        for consumer in consumers:
            consumer.join()
        for bg in parked:
            bg.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generators", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    print(f"{python_version()}: {args.generators} idle consumers + {args.generators} parked")
    print(f"workers, {args.seconds:.0f} s each\n")
    print(f"{'threads blocked on':<34}{'CPU s per idle minute':>24}{'wake-ups per s':>16}")
    for name, measure in (
        ("threading.Event (no re-check)", measure_plain_threads),
        ("prefetch_generator", measure_generators),
    ):
        cpu, switches = measure(args.generators, args.seconds)
        print(f"{name:<34}{cpu:>24.4f}{switches:>16.1f}")


if __name__ == "__main__":
    main()
