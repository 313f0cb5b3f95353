"""Wrong uses of the public API: type checkers must flag every line marked ``# rejected``."""

from typing import Iterator, List

from prefetch_generator import BackgroundGenerator, background, prefetch


@background
def squares(count: int) -> Iterator[int]:
    for number in range(count):
        yield number * number


@background(max_prefetch=4)
def words(text: str, *, upper: bool = False) -> Iterator[str]:
    for word in text.split():
        yield word.upper() if upper else word


class Dataset:
    @prefetch(2)
    def batches(self, batch_size: int) -> Iterator[List[int]]:
        yield list(range(batch_size))


squares("three")  # rejected
squares(3, 4)  # rejected
words("a b", True)  # rejected
words("a b", uppr=True)  # rejected
Dataset().batches("4")  # rejected
strings: BackgroundGenerator[str] = squares(3)  # rejected
squares(3).is_alive()  # rejected
BackgroundGenerator(squares(3), max_prefetch="2")  # rejected
