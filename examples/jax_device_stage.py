"""The JAX device stage: batches are loaded and put on the device ahead of the step.

    pip install ".[jax]"
    python examples/jax_device_stage.py

``Prefetcher(4)`` runs the loader in one background thread, 4 batches ahead;
``DevicePrefetcher(2)`` puts each batch on the default device in a second one,
so 2 batches wait on the device, ready, while the jitted step runs.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

from prefetch_generator_jax import DevicePrefetcher, Prefetcher


def batches(count, batch_size=64, features=16):
    """A loader: NumPy batches of a noisy linear problem, with some latency."""
    rng = np.random.default_rng(0)
    true_w = np.arange(features, dtype=np.float32) / features
    for _ in range(count):
        time.sleep(0.002)  # reading and decoding, outside the GIL
        x = rng.standard_normal((batch_size, features), dtype=np.float32)
        y = x @ true_w + 0.01 * rng.standard_normal(batch_size, dtype=np.float32)
        yield {"x": x, "y": y}


@jax.jit
def train_step(w, batch):
    def loss_fn(w):
        return jnp.mean((batch["x"] @ w - batch["y"]) ** 2)

    loss, grad = jax.value_and_grad(loss_fn)(w)
    return w - 0.1 * grad, loss


def main():
    w = jnp.zeros(16)
    stream = DevicePrefetcher(2).prefetch(Prefetcher(4).prefetch(batches(200)))
    with stream:  # closes both stages, also on an early exit
        for step, batch in enumerate(stream):  # dicts of jax.Array, already on the device
            w, loss = train_step(w, batch)
            if step % 50 == 0:
                print(f"step {step:3d}: loss {float(loss):.4f}")
    device = next(iter(w.devices()))
    print(f"final loss {float(loss):.4f} after {step + 1} steps on {device}")


if __name__ == "__main__":
    main()
