"""async for: items arrive in order and the event loop keeps running while we wait."""

import asyncio
import threading

from prefetch_generator import BackgroundGenerator


def test_async_for_yields_every_item_in_order():
    async def main():
        return [item async for item in BackgroundGenerator(range(1000), max_prefetch=4)]

    assert asyncio.run(main()) == list(range(1000))


def test_async_for_does_not_block_the_event_loop_while_waiting():
    release = threading.Event()

    def gated():
        release.wait(30)
        yield "item"

    async def main():
        bg = BackgroundGenerator(gated())

        async def release_from_the_loop():
            release.set()  # runs only if the loop is free while the consumer waits
            return "released"

        async def consume():
            return [item async for item in bg]

        return await asyncio.gather(consume(), release_from_the_loop())

    assert asyncio.run(main()) == [["item"], "released"]


def test_async_for_delivers_the_source_error():
    def failing():
        yield 1
        raise LookupError("async")

    async def main():
        seen = []
        try:
            async for item in BackgroundGenerator(failing()):
                seen.append(item)
        except LookupError as error:
            return seen, str(error)

    assert asyncio.run(main()) == ([1], "async")
