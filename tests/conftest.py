import threading

import pytest

WORKER_NAME = "prefetch_generator"


def live_workers():
    return [t for t in threading.enumerate() if t.name == WORKER_NAME and t.is_alive()]


@pytest.fixture(autouse=True)
def no_worker_outlives_its_test():
    """Every test must leave no worker thread behind (joined with a bound)."""
    before = set(live_workers())
    yield
    leaked = [t for t in live_workers() if t not in before]
    for thread in leaked:
        thread.join(5)
    assert not [t for t in leaked if t.is_alive()], "a worker thread outlived its test"


def pytest_addoption(parser):
    parser.addoption(
        "--long", action="store_true", help="run the soak and fuzz tests at full length"
    )


@pytest.fixture
def long_run(request):
    """True under --long: soak and fuzz tests use their full sizes."""
    return request.config.getoption("--long")
