"""``python -m prefetch_generator_jax``: a jitted training loop, with and without prefetch."""

import argparse
import math
import statistics
import time
from typing import Any, Callable, Dict, Iterator, List, Optional

import jax
import jax.numpy as jnp
import numpy as np

from . import DevicePrefetcher, Prefetcher


def loader(batches: int, batch_size: int, features: int, load_s: float) -> Iterator[Dict]:
    """Synthetic batches after ``load_s`` of GIL-releasing "disk" latency each."""
    rng = np.random.default_rng(0)
    pool = [rng.standard_normal((batch_size, features), dtype=np.float32) for _ in range(4)]
    for index in range(batches):
        time.sleep(load_s)
        x = pool[index % len(pool)]
        yield {"x": x, "y": x.sum(axis=1, keepdims=True)}


def init_params(features: int, hidden: int) -> Dict[str, Any]:
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    return {
        "w1": jax.random.normal(keys[0], (features, hidden)) / np.sqrt(features),
        "w2": jax.random.normal(keys[1], (hidden, 1)) / np.sqrt(hidden),
    }


@jax.jit
def train_step(params: Dict[str, Any], batch: Dict[str, Any]) -> Any:
    def loss(p: Dict[str, Any]) -> Any:
        prediction = jnp.tanh(batch["x"] @ p["w1"]) @ p["w2"]
        return jnp.mean((prediction - batch["y"]) ** 2)

    value, grads = jax.value_and_grad(loss)(params)
    return jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads), value


def run(stream: Iterator[Dict], params: Dict[str, Any]) -> float:
    """Seconds for the loop; it waits for each step's loss, as a loop that logs it does."""
    started = time.perf_counter()
    for batch in stream:
        params, loss = train_step(params, batch)
        loss.block_until_ready()
    return time.perf_counter() - started


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not 0 <= value < math.inf:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m prefetch_generator_jax",
        description="Train a small jitted MLP on synthetic batches, without and with "
        "the background loader and device stage. Every case is warmed up first, then "
        "the cases are timed in interleaved rounds and the medians printed.",
    )
    option = parser.add_argument
    option("--batches", type=positive_int, default=60, help="batches per run (default 60)")
    option("--batch-size", type=positive_int, default=256, help="rows per batch (default 256)")
    option("--features", type=positive_int, default=512, help="features per row (default 512)")
    option("--hidden", type=positive_int, default=1024, help="hidden units (default 1024)")
    option("--load-ms", type=non_negative_float, default=3.0, help="loader latency (default 3)")
    option("--rounds", type=positive_int, default=5, help="timed rounds (default 5)")
    args = parser.parse_args(argv)

    params = init_params(args.features, args.hidden)
    on_device = list(DevicePrefetcher(1).prefetch(loader(1, args.batch_size, args.features, 0.0)))

    def source() -> Iterator[Dict]:
        return loader(args.batches, args.batch_size, args.features, args.load_ms / 1e3)

    def staged() -> float:
        with DevicePrefetcher(2).prefetch(Prefetcher(4).prefetch(source())) as stream:
            return run(stream, params)

    cases: Dict[str, Callable[[], float]] = {
        "pure compute": lambda: run(iter(on_device * args.batches), params),
        "no prefetch": lambda: run(source(), params),
        "Prefetcher + device": staged,
    }
    for case in cases.values():
        case()  # compiles the step, starts the threads' machinery, fills caches
    times: Dict[str, List[float]] = {name: [] for name in cases}
    for round_index in range(args.rounds):
        names = list(cases)
        shift = round_index % len(names)  # each case leads in turn
        for name in names[shift:] + names[:shift]:
            times[name].append(cases[name]() / args.batches)
    step_ms = {name: statistics.median(values) * 1e3 for name, values in times.items()}

    shape = f"{args.batch_size}x{args.features}"
    print(
        f"device: {jax.devices()[0]}; {args.batches} batches of {shape}, "
        f"loader latency {args.load_ms} ms/batch"
    )
    print(f"median of {args.rounds} interleaved rounds after a warm-up round:")
    for name, value in step_ms.items():
        print(f"  {name + ':':<22}{value:8.2f} ms/step")
    speedup = step_ms["no prefetch"] / step_ms["Prefetcher + device"]
    print(f"Prefetcher + device is {speedup:.2f}x faster than no prefetch")


if __name__ == "__main__":
    main()
