"""The device stage: its cost per batch, and training loops under each prefetch mode.

0. Cost per batch (``--sections cost``): one batch at a time, synchronously,
   what the stage does on the host: the private copy (the leaves JAX would
   alias: the uint8 image), the leaf checks (types; int64 and float64 leaves
   that JAX narrows checked for values that would not survive), both
   together (``DeviceStage.own``), the whole stage (own + ``device_put`` +
   ready), and a bare ``device_put`` (no copy, no check). Median and p95 per
   batch, and the checks' cost as a share of the copy's.
1. Overhead: N batches put on the device and made ready, one at a time by a
   bare ``jax.block_until_ready(jax.device_put(batch))`` loop, and through
   ``DevicePrefetcher`` with a consumer that does nothing else.
2. Training loop: a jitted MLP step on image batches from a loader with
   latency (a GIL-releasing sleep), under ``create_prefetch_stream`` modes
   none, thread, flax and grain, side by side in this one process, against
   the pure compute time (the same step on a batch already on the device).
   Each step waits for its loss, as a loop that logs it does.

3. A real training loop (``--sections cnn``; needs flax and optax): a Flax
   nnx CNN with optax on uint8 images, int labels and a Python int step per
   batch, for ``--epochs`` epochs under every mode with ``device=None``, and
   with ``NamedSharding(mesh, P("batch"))`` for the modes that take one when
   there are several devices. Per case: XLA compilations during the loop,
   the first epoch's time (compilation included), the median ms/step of the
   later epochs, the batches in the second epoch, the final loss, or the
   error that ended the case. Several CPU devices:
   ``XLA_FLAGS=--xla_force_host_platform_device_count=4``.

    python benchmarks/device_stage.py                      # CPU-sized defaults
    python benchmarks/device_stage.py --image 224 --hidden 4096 --batches 200   # a GPU
"""

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import peers  # noqa: F401  (puts this checkout first on sys.path)
from prefetch_generator_jax import DevicePrefetcher, DeviceStage, create_prefetch_stream

SECTIONS = ("cost", "overhead", "modes", "cnn")


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


def percentile_ms(values, q):
    return float(np.percentile(values, q)) * 1e3


def cost_section(args, device):
    """Per-batch cost of what the stage does on the host: the private copy and the checks."""
    from prefetch_generator_jax._device import _jax_would_alias, aligned_copy, check_leaf

    shape = (args.batch_size, args.cost_image, args.cost_image, 3)
    rng = np.random.default_rng(1)
    print(
        f"cost per batch: {args.cost_batches} fresh batches, one at a time: image {shape} uint8 "
        f"({np.prod(shape) / 2**20:.2f} MiB), label ({args.batch_size},) int64, "
        f"tokens ({args.batch_size}, 512) int64, weight ({args.batch_size},) float64\n"
    )

    def fresh_batch():  # a new allocation each time, as a loader makes
        return {
            "image": rng.integers(0, 256, shape, dtype=np.uint8),
            "label": rng.integers(0, 10, (args.batch_size,), dtype=np.int64),
            "tokens": rng.integers(0, 50_000, (args.batch_size, 512), dtype=np.int64),
            "weight": rng.random(args.batch_size),
        }

    def copy_pass(batch):  # DeviceStage.own without the checks: walk the batch, copy
        return jax.tree.map(
            lambda leaf: aligned_copy(leaf) if _jax_would_alias(leaf) else leaf, batch
        )

    def check_only(batch):
        for path, leaf in jax.tree_util.tree_flatten_with_path(batch)[0]:
            check_leaf(path, leaf)

    stage = DeviceStage(device)
    variants = {
        "copy pass (walk + private copy)": copy_pass,
        "leaf checks alone": check_only,
        "DeviceStage.own (checks + copy)": stage.own,
        "DeviceStage (own + put + ready)": stage,
        "bare device_put + ready": lambda b: jax.device_put(b, device),
    }
    times = {name: [] for name in variants}
    names = list(variants)
    for index in range(args.cost_batches):
        batch = fresh_batch()
        shift = index % len(names)  # each variant goes first in turn
        for name in names[shift:] + names[:shift]:
            put = variants[name]
            started = time.perf_counter()
            jax.block_until_ready(put(batch))
            times[name].append(time.perf_counter() - started)
    print(f"{'variant':<34} | {'median ms':>9} | {'p95 ms':>7}")
    print("-" * 56)
    for name, values in times.items():
        print(f"{name:<34} | {percentile_ms(values, 50):>9.3f} | {percentile_ms(values, 95):>7.3f}")
    copies, owned = (
        times["copy pass (walk + private copy)"],
        times["DeviceStage.own (checks + copy)"],
    )
    for name, share in (
        ("checks alone / copy pass", lambda q: np.percentile(times["leaf checks alone"], q)),
        (
            "(own - copy pass) / copy pass",
            lambda q: np.percentile(owned, q) - np.percentile(copies, q),
        ),
    ):
        print(
            f"{name}: {share(50) / np.percentile(copies, 50):.1%} at the median, "
            f"{share(95) / np.percentile(copies, 95):.1%} at p95"
        )
    print()


def overhead_section(args, device, pool):
    n = args.batches
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


def modes_section(args, device, pool):
    n = args.batches
    params, step = make_step(args.image * args.image * 3, args.hidden)
    on_device = jax.device_put(pool[0], device)
    train_s([on_device], params, step)  # compile
    load_s = args.load_ms / 1e3
    modes = ["none", "thread", "flax", "grain"]
    for mode in modes:  # warm-up round: every mode's first batches and threads
        stream = create_prefetch_stream(loader(2, pool, 0.0), mode=mode, size=2, device=device)
        train_s(stream, params, step)
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
        f"grain {statistics.median(times['grain']) / thread:.2f}x the thread mode's time\n"
    )


def cnn_section(args):
    """A Flax nnx CNN with optax under every mode: compilations, epochs, errors."""
    import grain
    import optax
    from flax import nnx
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    class CNN(nnx.Module):
        def __init__(self, rngs):
            self.conv1 = nnx.Conv(3, 16, (3, 3), strides=2, rngs=rngs)
            self.conv2 = nnx.Conv(16, 32, (3, 3), strides=2, rngs=rngs)
            self.head = nnx.Linear(32, 10, rngs=rngs)

        def __call__(self, x):
            x = nnx.relu(self.conv2(nnx.relu(self.conv1(x))))
            return self.head(x.mean(axis=(1, 2)))

    @nnx.jit
    def train_step(model, optimizer, batch):
        def loss_fn(model):
            logits = model(batch["image"].astype(jnp.float32) / 255)
            losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
            return losses.mean() + 0 * batch["step"]

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    rng = np.random.default_rng(0)
    shape = (args.batch_size, args.cnn_image, args.cnn_image, 3)
    batches = [
        {
            "image": rng.integers(0, 256, shape, dtype=np.uint8),
            "label": rng.integers(0, 10, (args.batch_size,), dtype=np.int64),
            "step": index,
        }
        for index in range(args.cnn_batches)
    ]
    compiles = []

    def count_compiles(event, duration_s, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(duration_s)

    jax.monitoring.register_event_duration_secs_listener(count_compiles)
    cases = [(mode, "None", None) for mode in ("none", "thread", "grain", "flax")]
    if jax.device_count() > 1:
        mesh = jax.make_mesh((jax.device_count(),), ("batch",), (jax.sharding.AxisType.Auto,))
        sharding = NamedSharding(mesh, P("batch"))
        cases += [(mode, 'NamedSharding P("batch")', sharding) for mode in ("thread", "grain")]
    print(
        f"Flax nnx CNN + optax adam, {jax.device_count()} device(s), {args.epochs} epochs of "
        f"{len(batches)} batches of {shape} uint8 + int labels + a Python int step"
    )
    header = (
        f"{'mode':<7} | {'device':<24} | {'compiles':>8} | {'epoch 1 s':>9} | "
        f"{'later ms/step':>13} | {'epoch 2 batches':>15} | {'final loss':>10}"
    )
    print(header)
    print("-" * len(header))
    for mode, device_name, device in cases:
        model = CNN(nnx.Rngs(0))
        optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
        dataset = grain.MapDataset.source(batches).to_iter_dataset()
        del compiles[:]
        epoch_s, epoch_batches, loss, stream = [], [], None, None
        try:
            if mode == "grain":  # one stream over a Grain dataset, iterated per epoch
                stream = create_prefetch_stream(dataset, mode=mode, size=2, device=device)
            for _ in range(args.epochs):
                epoch = stream
                if mode != "grain":
                    epoch = create_prefetch_stream(iter(batches), mode=mode, size=2, device=device)
                started, count = time.perf_counter(), 0
                for batch in epoch:
                    loss = train_step(model, optimizer, batch)
                    loss.block_until_ready()
                    count += 1
                epoch_s.append(time.perf_counter() - started)
                epoch_batches.append(count)
        except Exception as error:
            message = f"{type(error).__name__}: {str(error).splitlines()[0]}"
            print(f"{mode:<7} | {device_name:<24} | fails: {message[:90]}")
            continue
        later = [s / c * 1e3 for s, c in zip(epoch_s[1:], epoch_batches[1:]) if c]
        later_ms = f"{statistics.median(later):.2f}" if later else "n/a"
        print(
            f"{mode:<7} | {device_name:<24} | {len(compiles):>8} | {epoch_s[0]:>9.2f} | "
            f"{later_ms:>13} | {epoch_batches[1]:>15} | {float(loss):>10.6f}"
        )
    jax.monitoring.unregister_event_duration_listener(count_compiles)
    print()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image", type=int, default=64, help="image side (default 64)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--load-ms", type=float, default=2.0, help="loader latency per batch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cost-image", type=int, default=224, help="image side for cost")
    parser.add_argument("--cost-batches", type=int, default=200)
    parser.add_argument("--cnn-image", type=int, default=32, help="image side for cnn")
    parser.add_argument("--cnn-batches", type=int, default=32, help="batches per epoch")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    sections = args.sections.split(",")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    device = jax.devices()[0]
    pool = make_pool(args.batch_size, args.image, np.random.default_rng(0))
    print(f"Python {sys.version.split()[0]}, jax {jax.__version__}, device {device}")
    flags = os.environ.get("XLA_FLAGS")
    prefix = f"XLA_FLAGS={flags} " if flags else ""
    print(f"command: {prefix}python benchmarks/device_stage.py {' '.join(sys.argv[1:])}\n")
    if "cost" in sections:
        cost_section(args, device)
    if "overhead" in sections or "modes" in sections:
        print(f"{args.batches} batches of {args.batch_size}x{args.image}x{args.image}x3 uint8")
    if "overhead" in sections:
        overhead_section(args, device, pool)
    if "modes" in sections:
        modes_section(args, device, pool)
    if "cnn" in sections:
        cnn_section(args)


if __name__ == "__main__":
    main()
