"""What a wake-up costs the thread that sends it.

One thread sleeps in ``Lock.acquire()``; after it has slept a set time, the
other thread times its ``release()``, the call that wakes it. Every hand-off
sends such wake-ups (the consumer wakes a parked producer, the producer wakes
a waiting consumer, 1.0.3's Conditions do the same), so this is part of the
round trip in the cost model (docs/handoff.md). For comparison, the same
``release()`` with nobody waiting.

A second table gives the whole round trip (two threads waking each other in
turn) when each sleeps on a ``Lock`` and when each sleeps on a
``queue.SimpleQueue``: consumers of this package sleep on a ``Lock`` of their
own, because on free-threaded builds its ``acquire()`` spins briefly before
it sleeps and so often catches a prompt wake-up without sleeping at all. The
package's sleeps pass a timeout, so that they re-check their condition (a
lost wake-up costs a bounded delay): the row with the timeout is what that
costs, as a timed wait arms a kernel timer.

On bare metal a wake-up is one futex call. In a virtual machine, waking a
thread whose vCPU has gone idle can also mean an inter-processor interrupt
that exits to the hypervisor, and the waker's vCPU stalls meanwhile.

    python benchmarks/wake_cost.py          # quick (a few seconds)
    python benchmarks/wake_cost.py --long   # 10x the wake-ups
"""

import argparse
import statistics
import threading
from queue import SimpleQueue
from time import perf_counter

from peers import median_and_p90, python_version
from prefetch_generator._channel import RECHECK_S


def spin_until(deadline):
    while perf_counter() < deadline:
        pass


def release_cost_us(slept_s, wakes):
    """Median and p90 of ``release()`` waking a thread that slept ``slept_s``."""
    wake, back = threading.Lock(), threading.Lock()
    wake.acquire()
    back.acquire()
    asleep = threading.Event()

    def sleeper():
        for _ in range(wakes):
            asleep.set()
            wake.acquire()  # with the GIL, the waker runs only once this sleeps
            back.release()

    thread = threading.Thread(target=sleeper)
    thread.start()
    costs = []
    for _ in range(wakes):
        asleep.wait()
        asleep.clear()
        spin_until(perf_counter() + slept_s)
        started = perf_counter()
        wake.release()
        costs.append(perf_counter() - started)
        back.acquire()
    thread.join()
    median, p90 = median_and_p90(costs)
    return median * 1e6, p90 * 1e6


def idle_release_us(times):
    lock = threading.Lock()
    costs = []
    for _ in range(times):
        lock.acquire()
        started = perf_counter()
        lock.release()
        costs.append(perf_counter() - started)
    return statistics.median(costs) * 1e6


def lock_sleep_and_wake():
    lock = threading.Lock()
    lock.acquire()
    return lock.acquire, lock.release


def timed_lock_sleep_and_wake():
    """As the package's sleeps: a ``Lock`` acquired with a timeout, to re-check."""
    lock = threading.Lock()
    lock.acquire()
    return lambda: lock.acquire(timeout=RECHECK_S), lock.release


def queue_sleep_and_wake():
    queue = SimpleQueue()
    return queue.get, lambda: queue.put(None)


def round_trip_us(sleep_and_wake, rounds):
    """Mean round trip of two threads that wake each other in turn."""
    sleep_here, wake_here = sleep_and_wake()
    sleep_there, wake_there = sleep_and_wake()

    def other():
        for _ in range(rounds):
            sleep_there()
            wake_here()

    thread = threading.Thread(target=other)
    thread.start()
    started = perf_counter()
    for _ in range(rounds):
        wake_there()
        sleep_here()
    elapsed = perf_counter() - started
    thread.join()
    return elapsed / rounds * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--long", action="store_true", help="10x the wake-ups")
    args = parser.parse_args()
    wakes = 20_000 if args.long else 2_000
    print(f"{python_version()}; {wakes} wake-ups per row\n")
    print(f"{'release() that':<34} | {'median us':>9} | {'p90 us':>7}")
    print("-" * 57)
    print(f"{'wakes nobody':<34} | {idle_release_us(wakes):>9.2f} |")
    for slept_us in (0, 20, 100, 1000):
        median, p90 = release_cost_us(slept_us / 1e6, wakes)
        label = f"wakes a thread asleep {slept_us} us"
        print(f"{label:<34} | {median:>9.2f} | {p90:>7.2f}")
    print(f"\n{'round trip, both sleeping on a':<34} | {'median us':>9} (of 7 runs)")
    print("-" * 57)
    kinds = {
        "Lock": lock_sleep_and_wake,
        f"Lock, acquire(timeout={RECHECK_S})": timed_lock_sleep_and_wake,
        "SimpleQueue": queue_sleep_and_wake,
    }
    runs = {name: [] for name in kinds}
    for _ in range(7):  # in turn, so that a change in the machine's load hits each alike
        for name, sleep_and_wake in kinds.items():
            runs[name].append(round_trip_us(sleep_and_wake, wakes))
    for name in kinds:
        print(f"{name:<34} | {statistics.median(runs[name]):>9.2f}")


if __name__ == "__main__":
    main()
