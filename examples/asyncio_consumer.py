"""Consume a BackgroundGenerator from asyncio without blocking the event loop.

    pip install .
    python examples/asyncio_consumer.py

``async for`` awaits the next item on the loop, so other tasks (here a
heartbeat) keep running while the worker thread produces. ``async with``
closes the generator on exit, also when the block ends early or is cancelled.
"""

import asyncio
import time

from prefetch_generator import BackgroundGenerator


def slow_source(count):
    for index in range(count):
        time.sleep(0.01)  # blocking I/O: would freeze the loop if called on it
        yield index


async def heartbeat(beats):
    while True:
        await asyncio.sleep(0.02)
        beats.append(time.perf_counter())


async def main():
    beats = []
    ticker = asyncio.create_task(heartbeat(beats))

    total = 0
    async for item in BackgroundGenerator(slow_source(20), max_prefetch=2):
        total += item
    print(f"async for: sum {total}, heartbeats meanwhile: {len(beats)}")

    first = []
    async with BackgroundGenerator(slow_source(1000), max_prefetch=2) as items:
        async for item in items:
            first.append(item)
            if len(first) == 5:
                break  # the source had 995 more: closing stops it at once
    rest = [item async for item in items]  # a closed stream ends at once
    print(f"async with: took {first}, then closed; items after closing: {rest}")

    ticker.cancel()


if __name__ == "__main__":
    asyncio.run(main())
