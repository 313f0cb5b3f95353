"""async for: waits on the event loop itself, cancellation-safe, never blocks the loop."""

import asyncio
import queue
import threading
import time

import pytest

from conftest import live_workers
from prefetch_generator import BackgroundGenerator
from prefetch_generator._background import CLOSE_TIMEOUT_S


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 30))


def gated(release, item="item"):
    def source():
        assert release.wait(30), "never released"
        yield item

    return source()


def test_async_for_yields_every_item_in_order():
    async def main():
        return [item async for item in BackgroundGenerator(range(1000), max_prefetch=4)]

    assert run(main()) == list(range(1000))


def test_waiting_does_not_block_the_event_loop():
    release = threading.Event()

    async def main():
        bg = BackgroundGenerator(gated(release))

        async def release_from_the_loop():
            await asyncio.sleep(0)
            release.set()  # runs only if the loop is free while the consumer waits

        consumer = asyncio.ensure_future(bg.__anext__())
        await release_from_the_loop()
        return await consumer

    assert run(main()) == "item"


def test_waiting_uses_no_executor_thread():
    release = threading.Event()

    async def main():
        bg = BackgroundGenerator(gated(release))
        consumer = asyncio.ensure_future(bg.__anext__())
        await asyncio.sleep(0)
        others = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        release.set()
        await consumer
        return [t.name for t in others]

    before = set(threading.enumerate())
    assert run(main()) == ["prefetch_generator"]


def gated_then_held(release, hold, item):
    """Yields ``item`` once released, then holds: no ending comes to wake anyone."""
    assert release.wait(30), "never released"
    yield item
    assert hold.wait(30), "never let go"


def test_a_cancelled_wait_loses_no_item_and_no_wake_up():
    release, hold = threading.Event(), threading.Event()

    async def main():
        bg = BackgroundGenerator(gated_then_held(release, hold, "kept"))
        for _ in range(5):
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(bg.__anext__(), 0.001)
        live_waiter = asyncio.ensure_future(bg.__anext__())
        await asyncio.sleep(0)
        release.set()
        result = await asyncio.wait_for(live_waiter, 10), len(bg._channel.waiters)
        hold.set()
        bg.close()
        return result

    assert run(main()) == ("kept", 0)


def test_a_waiter_cancelled_after_its_wake_up_hands_the_wake_up_on():
    release, hold = threading.Event(), threading.Event()

    async def main():
        bg = BackgroundGenerator(gated_then_held(release, hold, "item"))
        first = asyncio.ensure_future(bg.__anext__())
        second = asyncio.ensure_future(bg.__anext__())
        deadline = time.monotonic() + 10
        while len(bg._channel.waiters) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0)
        woken_first = bg._channel.waiters[0]
        release.set()
        while not woken_first.future.done() and time.monotonic() < deadline:
            await asyncio.sleep(0)
        first.cancel()  # woken, not yet run: its wake-up must reach the other waiter
        result = await asyncio.wait_for(second, 10)
        hold.set()
        bg.close()
        return result, first.cancelled()

    assert run(main()) == ("item", True)


def test_many_cancelled_waits_leave_the_default_executor_free():
    release = threading.Event()

    async def main():
        bg = BackgroundGenerator(gated(release))
        for _ in range(50):
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(bg.__anext__(), 0.0001)
        answer = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, int), 5)
        release.set()
        return answer, [item async for item in bg]

    assert run(main()) == (0, ["item"])


def test_leaving_async_for_early_does_not_block_the_loop_on_a_stuck_source():
    release = threading.Event()

    def stuck_after_one():
        yield 1
        release.wait(30)
        yield 2

    async def main():
        bg = BackgroundGenerator(stuck_after_one())
        async for _ in bg:
            break
        worker = bg._worker.thread
        started = time.monotonic()
        del bg  # the finaliser must not join the worker on the loop's thread
        dropped_in = time.monotonic() - started
        release.set()
        worker.join(10)
        return dropped_in

    assert run(main()) < CLOSE_TIMEOUT_S / 2


def test_async_with_and_aclose_close_the_source_without_blocking_the_loop():
    closed = threading.Event()

    def endless():
        try:
            while True:
                yield 0
        finally:
            closed.set()

    async def main():
        async with BackgroundGenerator(endless()) as bg:
            await bg.__anext__()
        return closed.is_set(), bg.is_running()

    assert run(main()) == (True, False)


def test_the_source_error_reaches_async_for():
    def failing():
        yield 1
        raise LookupError("async")

    async def main():
        seen = []
        with pytest.raises(LookupError, match="async"):
            async for item in BackgroundGenerator(failing()):
                seen.append(item)
        return seen

    assert run(main()) == [1]


def test_queue_empty_raised_by_the_source_is_raised_not_taken_for_waiting():
    def source():
        yield 1
        raise queue.Empty

    async def main():
        seen = []
        with pytest.raises(queue.Empty):
            async for item in BackgroundGenerator(source()):
                seen.append(item)
        return seen

    assert run(main()) == [1]


def test_stop_async_iteration_raised_by_the_source_becomes_runtime_error():
    class Source:
        def __iter__(self):
            return self

        def __next__(self):
            raise StopAsyncIteration

    async def main():
        with pytest.raises(RuntimeError, match="StopAsyncIteration"):
            async for _ in BackgroundGenerator(Source()):
                pass

    run(main())


def test_asyncio_run_returns_after_cancelled_waits_on_a_stuck_source():
    release = threading.Event()

    async def main():
        bg = BackgroundGenerator(gated(release))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(bg.__anext__(), 0.01)
        bg.close(timeout=0)

    run(main())  # returns: no executor thread is left waiting
    release.set()
    for thread in live_workers():
        thread.join(10)


def test_aclose_after_the_worker_finished_returns_at_once():
    async def main():
        bg = BackgroundGenerator(range(3), max_prefetch=8)
        bg._worker.thread.join(10)  # the source is exhausted, the worker has ended
        await asyncio.wait_for(bg.aclose(timeout=None), 5)
        return bg.is_running()

    assert run(main()) is False
