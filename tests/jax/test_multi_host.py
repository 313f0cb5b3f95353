"""Two local processes joined by jax.distributed: global batches, and no replica that can differ."""

import os
import socket
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("jax")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROCESS = """
import sys
import jax, numpy as np
jax.config.update("jax_num_cpu_devices", 2)
port, process_id = sys.argv[1], int(sys.argv[2])
jax.distributed.initialize(
    coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=process_id
)
from jax.sharding import NamedSharding, PartitionSpec as P
from prefetch_generator_jax import DevicePrefetcher

mesh = jax.make_mesh((4,), ("batch",))
sharding = NamedSharding(mesh, P("batch"))
rows = np.arange(8 * process_id, 8 * process_id + 8, dtype=np.float32)

def my_slice_of_each_batch():
    for step in range(3):
        yield {"x": np.repeat(rows[:, None], 3, axis=1) + step, "label": rows.astype(np.int32)}

global_sum = jax.jit(lambda x: x.sum())
for step, batch in enumerate(DevicePrefetcher(2, sharding).prefetch(my_slice_of_each_batch())):
    assert batch["x"].shape == (16, 3), batch["x"].shape
    assert not batch["x"].is_fully_addressable
    expected = float((np.repeat(np.arange(16.0)[:, None], 3, axis=1) + step).sum())
    assert float(global_sum(batch["x"])) == expected
    assert int(global_sum(batch["label"])) == sum(range(16))

def first_error(device, batch):
    try:
        next(DevicePrefetcher(1, device).prefetch(iter([batch])))
    except ValueError as error:
        return str(error)
    raise AssertionError("no error")

# Each process's own value, which JAX would take to be one replicated value.
x = np.zeros((8, 3), np.float32)
message = first_error(sharding, {"x": x, "step": process_id})
assert message.startswith("leaf ['step'] would be replicated across processes"), message
explicit = {"x": sharding, "label": NamedSharding(mesh, P())}
message = first_error(explicit, {"x": x, "label": rows})
assert message.startswith("leaf ['label'] would be replicated across processes"), message
# A (B,) label under a 2-d spec is not replicated in place of an error.
grid = NamedSharding(jax.make_mesh((2, 2), ("data", "model")), P("data", "model"))
message = first_error(grid, {"image": np.zeros((8, 4), np.float32), "label": rows})
assert message.startswith("leaf ['label'] has shape (8,), fewer dimensions"), message
print("process", process_id, "ok", flush=True)
jax.distributed.shutdown()
"""


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_each_process_feeds_its_slice_and_no_leaf_is_replicated_from_local_values():
    port = str(free_port())
    env = dict(os.environ, PYTHONPATH=REPO)
    env.pop("XLA_FLAGS", None)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(PROCESS), port, str(process_id)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for process_id in (0, 1)
    ]
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=180))
    finally:
        for process in processes:
            process.kill()
            process.wait()
    for process_id, (process, (stdout, stderr)) in enumerate(zip(processes, outputs)):
        assert process.returncode == 0, stderr
        assert f"process {process_id} ok" in stdout
