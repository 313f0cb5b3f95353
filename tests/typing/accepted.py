"""A program that uses the public API as its documentation says: type checkers must accept it."""

from typing import Iterator, List, Literal

from prefetch_generator import BackgroundGenerator, Stats, background, prefetch


@background
def squares(count: int) -> Iterator[int]:
    for number in range(count):
        yield number * number


@background(max_prefetch=4)
def words(text: str, *, upper: bool = False) -> Iterator[str]:
    for word in text.split():
        yield word.upper() if upper else word


class Dataset:
    def __init__(self, size: int) -> None:
        self.size = size

    @prefetch(2)
    def batches(self, batch_size: int) -> Iterator[List[int]]:
        for start in range(0, self.size, batch_size):
            yield list(range(start, min(start + batch_size, self.size)))


def main() -> None:
    total: int = sum(squares(4))
    shouted: List[str] = list(words("a b c", upper=True))
    with Dataset(10).batches(batch_size=4) as batches:
        sizes = [len(batch) for batch in batches]
    stream: BackgroundGenerator[float] = BackgroundGenerator([0.5, 1.5], max_prefetch=2)
    halves = list(stream)
    stats: Stats = stream.stats()
    verdict: Literal["producer", "consumer", "balanced"] = stats.bottleneck
    running: bool = stream.is_running()
    print(total, shouted, sizes, halves, verdict in ("producer", "consumer", "balanced"))
    print(f"worker running: {running}")


if __name__ == "__main__":
    main()
