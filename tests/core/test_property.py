"""For any source, bound, failure point and early stop: exactly the source's prefix."""

from hypothesis import given, settings
from hypothesis import strategies as st

from prefetch_generator import BackgroundGenerator


class Failure(Exception):
    pass


def source(items, fail_at, finished):
    try:
        for index, item in enumerate(items):
            if index == fail_at:
                raise Failure(index)
            yield item
        if fail_at == len(items):
            raise Failure(fail_at)
    finally:
        finished.append(True)


@settings(max_examples=150, deadline=None)
@given(
    items=st.lists(st.integers(), max_size=40),
    max_prefetch=st.integers(min_value=-2, max_value=8),
    fail_at=st.none() | st.integers(min_value=0, max_value=40),
    stop_after=st.none() | st.integers(min_value=0, max_value=40),
)
def test_consumer_sees_the_sources_prefix_then_its_error_or_end(
    items, max_prefetch, fail_at, stop_after
):
    finished = []
    bg = BackgroundGenerator(source(items, fail_at, finished), max_prefetch)
    produced = items if fail_at is None else items[:fail_at]
    fails = fail_at is not None and fail_at <= len(items)
    received, error = [], None
    try:
        for item in bg:
            if len(received) == stop_after:
                break
            received.append(item)
    except Failure as caught:
        error = caught
    stopped_early = stop_after is not None and stop_after < len(produced)
    expected = produced[:stop_after] if stopped_early else produced
    assert received == expected
    if stopped_early or not fails:
        assert error is None
    else:
        assert error is not None and error.args == (fail_at,)
    worker = bg._worker.thread
    del bg  # dropping requests the stop without waiting for it
    worker.join(10)
    assert not worker.is_alive()
    assert finished == [True]
