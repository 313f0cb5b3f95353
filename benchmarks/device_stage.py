"""The device stage: its overhead per batch, and a training loop under each prefetch mode.

1. Overhead: N batches put on the device and made ready, one at a time by a
   bare ``jax.block_until_ready(jax.device_put(batch))`` loop, and through
   ``DevicePrefetcher`` with a consumer that does nothing else.
2. Training loop: a jitted MLP step on image batches from a loader with
   latency (a GIL-releasing sleep), under ``create_prefetch_stream`` modes
   none, thread, flax and grain, side by side in this one process, against
   the pure compute time (the same step on a batch already on the device).
   Each step waits for its loss, as a loop that logs it does.

    python benchmarks/device_stage.py                      # CPU-sized defaults
    python benchmarks/device_stage.py --image 224 --hidden 4096 --batches 200   # a GPU
"""

import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import peers  # noqa: F401  (puts this checkout first on sys.path)
from prefetch_generator_jax import DevicePrefetcher, create_prefetch_stream


def loader(batches, pool, load_s):
    for index in range(batches):
        time.sleep(load_s)
        yield pool[index % len(pool)]


def make_pool(batch_size, image, rng):
    return [
        {
            "image": rng.integers(0, 256, (batch_size, image, image, 3), dtype=np.uint8),
            "label": rng.integers(0, 10, (batch_size,), dtype=np.int32),
        }
        for _ in range(4)
    ]


def make_step(features, hidden):
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    params = {
        "w1": jax.random.normal(keys[0], (features, hidden)) / np.sqrt(features),
        "w2": jax.random.normal(keys[1], (hidden, 10)) / np.sqrt(hidden),
    }

    @jax.jit
    def step(params, batch):
        def loss(p):
            x = batch["image"].reshape(batch["image"].shape[0], -1).astype(jnp.float32) / 255
            logits = jnp.tanh(x @ p["w1"]) @ p["w2"]
            picked = jnp.take_along_axis(logits, batch["label"][:, None], axis=1)
            return jnp.mean(jax.nn.logsumexp(logits, axis=1) - picked[:, 0])

        value, grads = jax.value_and_grad(loss)(params)
        return jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads), value

    return params, step


def train_s(stream, params, step):
    started = time.perf_counter()
    for batch in stream:
        params, loss = step(params, batch)
        loss.block_until_ready()
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image", type=int, default=64, help="image side (default 64)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--load-ms", type=float, default=2.0, help="loader latency per batch")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    device = jax.devices()[0]
    pool = make_pool(args.batch_size, args.image, np.random.default_rng(0))
    n = args.batches
    print(f"Python {sys.version.split()[0]}, jax {jax.__version__}, device {device}")
    print(f"{n} batches of {args.batch_size}x{args.image}x{args.image}x3 uint8 + labels\n")

    bare, staged = [], []
    for _ in range(args.rounds):
        started = time.perf_counter()
        for batch in loader(n, pool, 0.0):
            jax.block_until_ready(jax.device_put(batch, device))
        bare.append((time.perf_counter() - started) / n)
        started = time.perf_counter()
        for _ in DevicePrefetcher(2, device).prefetch(loader(n, pool, 0.0)):
            pass
        staged.append((time.perf_counter() - started) / n)
    bare_ms, staged_ms = statistics.median(bare) * 1e3, statistics.median(staged) * 1e3
    print(f"bare device_put + ready:   {bare_ms:8.3f} ms/batch")
    print(
        f"DevicePrefetcher(2):       {staged_ms:8.3f} ms/batch  "
        f"(overhead {staged_ms - bare_ms:+.3f} ms/batch)\n"
    )

    params, step = make_step(args.image * args.image * 3, args.hidden)
    on_device = jax.device_put(pool[0], device)
    train_s([on_device], params, step)  # compile
    load_s = args.load_ms / 1e3
    modes = ["none", "thread", "flax", "grain"]
    times = {name: [] for name in ["pure compute", *modes]}
    for _ in range(args.rounds):
        times["pure compute"].append(train_s([on_device] * n, params, step) / n)
        for mode in modes:
            stream = create_prefetch_stream(
                loader(n, pool, load_s), mode=mode, size=2, device=device
            )
            times[mode].append(train_s(stream, params, step) / n)
            close = getattr(stream, "close", None)
            if close is not None:
                close()
    compute = statistics.median(times["pure compute"])
    print(f"training loop, loader latency {args.load_ms} ms/batch, hidden {args.hidden}")
    print(f"{'mode':<14} | {'ms/step':>8} | {'x pure compute':>14}")
    print("-" * 42)
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<14} | {median * 1e3:>8.3f} | {median / compute:>13.3f}x")
    thread = statistics.median(times["thread"])
    print(
        f"\nthread mode: {thread / compute:.3f}x pure compute; "
        f"flax {statistics.median(times['flax']) / thread:.2f}x and "
        f"grain {statistics.median(times['grain']) / thread:.2f}x the thread mode's time"
    )


if __name__ == "__main__":
    main()
