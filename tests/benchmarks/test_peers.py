"""The benchmarks' contenders run, and each passes on exactly what it was given.

A ratio against a peer means nothing if the peer crashes or reorders items:
every contender ``benchmarks/peers.py`` offers (those that load here) carries
a short stream through, in order.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from peers import contenders  # noqa: E402


@pytest.mark.parametrize("name", sorted(contenders()))
def test_every_contender_carries_a_stream_through_in_order(name):
    wrap = contenders()[name]
    if wrap is None:
        pytest.skip(f"{name} is not available here")
    for max_prefetch in (1, 8):
        assert list(wrap(iter(range(50)), max_prefetch)) == list(range(50))
