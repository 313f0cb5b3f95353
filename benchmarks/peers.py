"""The contenders the benchmarks compare against, loaded side by side in one process.

prefetch-generator 1.0.3 shares our import name, and datarax pulls in
TensorFlow, so both released modules are downloaded (``pip download``, into
``benchmarks/.cache``) and loaded from their files under other module names.
threaded-generator and grain (through prefetch_generator_jax's adapter) are
imported where ``requirements.txt`` installed them (threaded-generator needs
Python >= 3.13).
"""

import importlib.util
import statistics
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path
from time import perf_counter
from typing import Callable, Dict, Iterator, List, Optional, Tuple

CACHE = Path(__file__).resolve().parent / ".cache"
# Benchmark this checkout, not whatever copy happens to be installed.
sys.path.insert(0, str(CACHE.parent.parent))

# name -> (pip requirement, file inside the downloaded archive)
RELEASED_MODULES = {
    "prefetch_generator_1_0_3": (
        "prefetch-generator==1.0.3",
        "prefetch_generator-1.0.3/prefetch_generator/__init__.py",
    ),
    "datarax_prefetcher": ("datarax==0.1.4", "datarax/control/prefetcher.py"),
}

Wrap = Callable[[Iterator, int], Iterator]


def python_version() -> str:
    """This interpreter's version, marked when it runs without the GIL."""
    free = not getattr(sys, "_is_gil_enabled", lambda: True)()
    return f"Python {sys.version.split()[0]}" + (" free-threaded, GIL off" if free else "")


def median_and_p90(values: List[float]) -> Tuple[float, float]:
    """The median and the 90th percentile (the value 90% of the way up) of ``values``."""
    ordered = sorted(values)
    return statistics.median(ordered), ordered[len(ordered) * 9 // 10]


def rotated(names: List[str], round_: int) -> List[str]:
    """``names`` in the order for round ``round_``: each round starts one later."""
    shift = round_ % len(names)
    return names[shift:] + names[:shift]


def load_released_module(name: str):
    """Download the release once and import one file of it as ``name``, or None."""
    requirement, member = RELEASED_MODULES[name]
    target = CACHE / name / member
    if not target.exists():
        download = CACHE / "downloads"
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d"]
        result = subprocess.run(
            [*command, str(download), requirement], capture_output=True, text=True
        )
        if result.returncode != 0:
            print(f"could not download {requirement}:\n{result.stderr}", file=sys.stderr)
            return None
        archive = next(download.glob(requirement.split("==")[0].replace("-", "_") + "-*"))
        opener = tarfile.open if archive.name.endswith(".tar.gz") else zipfile.ZipFile
        with opener(archive) as files:
            files.extract(member, CACHE / name)
    spec = importlib.util.spec_from_file_location(name, target)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # datarax's module needs Python >= 3.9
        print(f"could not load {requirement} here: {error!r}", file=sys.stderr)
        return None
    return module


def contenders() -> Dict[str, Optional[Wrap]]:
    """name -> function(iterator, max_prefetch) -> prefetching iterator; None if missing."""
    from prefetch_generator import BackgroundGenerator

    found: Dict[str, Optional[Wrap]] = {"prefetch_generator": BackgroundGenerator}
    old = load_released_module("prefetch_generator_1_0_3")
    found["prefetch-generator 1.0.3"] = old and old.BackgroundGenerator
    try:
        from threaded_generator import ThreadedGenerator

        found["threaded-generator"] = lambda it, k: iter(ThreadedGenerator(it, maxsize=k))
    except ImportError:
        found["threaded-generator"] = None
    datarax = load_released_module("datarax_prefetcher")
    found["datarax Prefetcher"] = datarax and (
        lambda it, k: datarax.Prefetcher(buffer_size=k).prefetch(it)
    )
    try:
        import grain

        from prefetch_generator_jax._grain import IteratorDataset

        found["grain thread prefetch"] = lambda it, k: iter(
            grain.experimental.ThreadPrefetchIterDataset(
                IteratorDataset(it, None, None), prefetch_buffer_size=k
            )
        )
    except ImportError:
        found["grain thread prefetch"] = None
    return found


def ping_pong_round_trip_s(rounds: int) -> float:
    """Seconds per round trip of two threads handing two locks back and forth."""
    ping, pong = threading.Lock(), threading.Lock()
    ping.acquire()
    pong.acquire()

    def other() -> None:
        for _ in range(rounds):
            ping.acquire()
            pong.release()

    thread = threading.Thread(target=other)
    thread.start()
    started = perf_counter()
    for _ in range(rounds):
        ping.release()
        pong.acquire()
    elapsed = perf_counter() - started
    thread.join()
    return elapsed / rounds
