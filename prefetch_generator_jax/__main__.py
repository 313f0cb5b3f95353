"""``python -m prefetch_generator_jax``: a jitted training loop, with and without prefetch."""

import argparse
import time
from typing import Any, Dict, Iterator, List, Optional

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


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m prefetch_generator_jax",
        description="Train a small jitted MLP on synthetic batches, without and with "
        "the background loader and device stage.",
    )
    option = parser.add_argument
    option("--batches", type=int, default=60, help="batches per run (default 60)")
    option("--batch-size", type=int, default=256, help="rows per batch (default 256)")
    option("--features", type=int, default=512, help="features per row (default 512)")
    option("--hidden", type=int, default=1024, help="hidden units (default 1024)")
    option("--load-ms", type=float, default=3.0, help="loader latency per batch (default 3)")
    args = parser.parse_args(argv)

    params = init_params(args.features, args.hidden)
    warm = list(DevicePrefetcher(1).prefetch(loader(1, args.batch_size, args.features, 0.0)))
    run(iter(warm), params)  # compiles the step and warms the device stage up
    step_s = run(iter(warm * args.batches), params) / args.batches
    shape = f"{args.batch_size}x{args.features}"
    print(f"device: {jax.devices()[0]}; {args.batches} batches of {shape}")
    print(f"pure compute:           {step_s * 1e3:7.2f} ms/step")

    def source() -> Iterator[Dict]:
        return loader(args.batches, args.batch_size, args.features, args.load_ms / 1e3)

    plain = run(source(), params) / args.batches
    print(f"no prefetch:            {plain * 1e3:7.2f} ms/step")
    with DevicePrefetcher(2).prefetch(Prefetcher(4).prefetch(source())) as stream:
        staged = run(stream, params) / args.batches
        stats = stream.stats()
    print(f"Prefetcher + device:    {staged * 1e3:7.2f} ms/step  ({plain / staged:.2f}x faster)")
    print(f"device stage stats: {stats}")


if __name__ == "__main__":
    main()
