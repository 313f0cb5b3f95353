"""``Stats``: an immutable snapshot of a BackgroundGenerator's counters.

The verdict in ``bottleneck`` compares how long each side spent blocked on the
other: a consumer that keeps finding the buffer empty is waiting on the
producer (the loader is the slow side); a producer that keeps finding it full
is waiting on the consumer (the step is the slow side).
"""

from typing import Literal, NamedTuple

# A side counts as the bottleneck when the other spent at least this share of
# the elapsed time waiting on it, and longer than it waited itself.
BOTTLENECK_SHARE = 0.1

Bottleneck = Literal["producer", "consumer", "balanced"]


class Stats(NamedTuple):
    """Counters of one BackgroundGenerator, taken at one moment."""

    produced: int
    """Items the worker took from the source and buffered."""
    consumed: int
    """Items handed to consumers."""
    buffered: int
    """Items buffered now, waiting for a consumer."""
    consumer_wait_s: float
    """Seconds consumers spent blocked on an empty buffer (summed over threads)."""
    producer_wait_s: float
    """Seconds the worker spent blocked on a full buffer."""
    elapsed_s: float
    """Seconds since the BackgroundGenerator was created."""

    @property
    def bottleneck(self) -> Bottleneck:
        """``"producer"``, ``"consumer"`` or ``"balanced"``: the side the other waits on."""
        threshold = BOTTLENECK_SHARE * self.elapsed_s
        if self.consumer_wait_s > max(threshold, self.producer_wait_s):
            return "producer"
        if self.producer_wait_s > max(threshold, self.consumer_wait_s):
            return "consumer"
        return "balanced"

    def __str__(self) -> str:
        return (
            f"{self.consumed} consumed, {self.buffered} buffered; consumer waited "
            f"{self.consumer_wait_s:.3f} s, producer waited {self.producer_wait_s:.3f} s "
            f"of {self.elapsed_s:.3f} s: bottleneck is {self.bottleneck}"
        )
