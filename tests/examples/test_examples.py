"""Each program in examples/ runs to completion and prints what it promises.

The examples run as subprocesses with this checkout first on ``sys.path``, so
they exercise the code in the repository whether or not it is installed.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TIMEOUT_S = 60  # each example takes a second or two; imports of torch or jax dominate


def run_example(name):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_every_example_has_a_test():
    tested = {
        "dataloaderx_torch.py",
        "tqdm_inline.py",
        "decorator_files.py",
        "asyncio_consumer.py",
        "jax_device_stage.py",
    }
    assert {path.name for path in EXAMPLES.glob("*.py")} == tested


def test_dataloaderx_torch():
    pytest.importorskip("torch", reason="the DataLoaderX example needs torch")
    out = run_example("dataloaderx_torch.py")
    lines = [line for line in out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 3
    assert all("8/8 batches" in line for line in lines)
    first, last = (float(line.rsplit(" ", 1)[1]) for line in (lines[0], lines[-1]))
    assert last < first  # the model learns


def test_tqdm_inline():
    pytest.importorskip("tqdm", reason="the inline example shows a tqdm progress bar")
    out = run_example("tqdm_inline.py")
    lines = out.splitlines()  # each tqdm redraw is a line of its own here
    starts = [number for number, line in enumerate(lines) if re.match(r"\s*0%\|.*\| 0/100 ", line)]
    assert len(starts) == 2  # both bars knew the total from the start: len() went through
    assert "100/100" in lines[-2]  # the prefetched epoch's bar, finished
    summary = lines[-1]
    match = re.fullmatch(
        r"100 batches in (\d+\.\d\d) s \((\d+\.\d\d) s without prefetching\)", summary
    )
    assert match, summary
    assert all(float(seconds) > 0 for seconds in match.groups())  # both measured, not written in


def test_decorator_files():
    out = run_example("decorator_files.py")
    assert "read 16 files, 4194304 bytes" in out
    assert "bottleneck: " in out


def test_asyncio_consumer():
    out = run_example("asyncio_consumer.py")
    assert "async for: sum 190" in out
    assert "async with: took [0, 1, 2, 3, 4], then closed; items after closing: []" in out
    beats = int(out.split("heartbeats meanwhile: ")[1].split()[0])
    assert beats > 0  # the loop kept running while items were produced


def test_jax_device_stage():
    pytest.importorskip("jax", reason="the device stage example needs jax")
    pytest.importorskip("numpy", reason="the device stage example needs numpy")
    out = run_example("jax_device_stage.py")
    assert "step   0: loss" in out
    assert "after 200 steps on" in out
    first = float(out.split("step   0: loss ")[1].split()[0])
    final = float(out.split("final loss ")[1].split()[0])
    assert final < first / 100
