"""Seeded lifecycle fuzzing: random sources, random consumers, random endings.

Each seed builds one case: a source (fast, slow, failing with a random
exception type at a random step, or endless), 1 to 4 consumer threads that may
stop early, maybe a closer thread that calls ``close()`` once some consumer has
taken a random number of items, and an ending by ``close()`` or by dropping
the object. After each case: every delivered item came from the source, in
source order within each consumer, none twice; the error was delivered at most
once, and exactly once when nothing stopped the stream early; with nothing
stopping it, every item was delivered; no worker thread is left; the source
was closed.
"""

import random
import threading
import time

import pytest

from conftest import live_workers
from prefetch_generator import BackgroundGenerator

ERRORS = [ValueError, KeyError, OSError, KeyboardInterrupt, SystemExit]
JOIN_S = 30


class Case:
    def __init__(self, seed):
        rng = random.Random(seed)
        self.kind = rng.choice(["fast", "slow", "failing", "endless"])
        self.length = rng.randint(0, 300)
        self.fail_at = rng.randint(0, self.length) if self.kind == "failing" else None
        self.error_type = rng.choice(ERRORS)
        self.max_prefetch = rng.choice([-1, 0, 1, 2, 8])
        consumers = rng.randint(1, 4)
        self.stop_after = [rng.choice([None, rng.randint(0, 60)]) for _ in range(consumers)]
        self.close_after = rng.choice([None, rng.randint(0, 60)])
        if self.kind == "endless" and self.close_after is None:
            self.stop_after = [rng.randint(0, 60) for _ in range(consumers)]
        self.drop = rng.random() < 0.5
        self.closed = threading.Event()

    def source(self):
        try:
            index = 0
            while self.kind == "endless" or index < self.length:
                if index == self.fail_at:
                    raise self.error_type(index)
                if self.kind == "slow":
                    time.sleep(0.0002)  # simulated loading work
                yield index
                index += 1
            if index == self.fail_at:
                raise self.error_type(index)
        finally:
            self.closed.set()

    @property
    def stopped_early(self):
        return self.close_after is not None or any(s is not None for s in self.stop_after)


def run_case(case):
    bg = BackgroundGenerator(case.source(), case.max_prefetch)
    received = [[] for _ in case.stop_after]
    errors = []
    close_now = threading.Event()

    def consume(into, stop_after):
        try:
            for item in bg:
                if len(into) == stop_after:
                    return
                into.append(item)
                if case.close_after is not None and len(into) >= case.close_after:
                    close_now.set()
        except BaseException as error:  # the source's error, whatever its type
            errors.append(error)
        finally:
            close_now.set()  # a finished consumer lets the closer go too

    threads = [
        threading.Thread(target=consume, args=(into, stop_after))
        for into, stop_after in zip(received, case.stop_after)
    ]
    if case.close_after is not None:
        threads.append(threading.Thread(target=lambda: close_now.wait(JOIN_S) and bg.close()))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_S)
    assert not any(thread.is_alive() for thread in threads), "a consumer hung"
    if case.drop:
        del bg
    else:
        bg.close()
    return received, errors


@pytest.mark.parametrize("block", range(10))
def test_random_lifecycles_lose_nothing_duplicate_nothing_and_leak_nothing(block, long_run):
    per_block = 100 if long_run else 20
    for seed in range(block * per_block, (block + 1) * per_block):
        case = Case(seed)
        received, errors = run_case(case)
        context = f"seed {seed}: {vars(case)}"
        produced = case.length if case.fail_at is None else case.fail_at
        delivered = [item for into in received for item in into]
        for into in received:
            assert into == sorted(set(into)), context
        assert len(delivered) == len(set(delivered)), context
        if case.kind != "endless":
            assert all(0 <= item < produced for item in delivered), context
        assert len(errors) <= 1, context
        if errors:
            assert type(errors[0]) is case.error_type and errors[0].args == (case.fail_at,)
        if not case.stopped_early:
            assert sorted(delivered) == list(range(produced)), context
            assert len(errors) == (case.fail_at is not None), context
        assert case.closed.wait(JOIN_S), context
        # The source's finally runs in the worker, which still has to end after it; and a
        # dropped object's worker stops without anyone waiting for it.
        for thread in live_workers():
            thread.join(JOIN_S)
        assert live_workers() == [], context
