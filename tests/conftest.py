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


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "cuts_wake_ups: the test interrupts a wake-up on purpose, so a sleeper may find "
        "work no wake-up announced (the bounded re-check is what it proves)",
    )


@pytest.fixture(autouse=True)
def no_wake_up_is_lost(request, monkeypatch):
    """Without interrupts that cut a wake-up short, no sleep may end by its re-check.

    The re-check is a net for wake-ups lost to what nobody foresaw; the protocol
    itself must lose none, so no channel may count a missed wake-up.
    """
    from prefetch_generator._channel import Channel

    missed = []
    count = Channel.count_missed_wakeup

    def counted(self):
        count(self)
        missed.append(None)

    monkeypatch.setattr(Channel, "count_missed_wakeup", counted)
    yield
    if request.node.get_closest_marker("cuts_wake_ups") is None:
        assert not missed, f"{len(missed)} sleep(s) ended by a re-check with no wake-up"
