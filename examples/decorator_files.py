"""Decorate a generator function: each call reads ahead in a background thread.

    pip install .
    python examples/decorator_files.py

The program writes a few compressed files into a temporary directory, then
reads them back with a decorated generator: decompression (zlib, which
releases the GIL) and file reads run in the worker while the main thread
checks the previous file. ``@prefetch`` is an alias of ``@background``.
"""

import hashlib
import os
import tempfile
import zlib

from prefetch_generator import background


@background(max_prefetch=4)  # also bare @background, or @prefetch(max_prefetch=4)
def read_files(paths):
    for path in paths:
        with open(path, "rb") as file:
            yield zlib.decompress(file.read())


def write_files(directory, count):
    paths = []
    for index in range(count):
        path = os.path.join(directory, f"part-{index:02d}.z")
        with open(path, "wb") as file:
            block = hashlib.sha256(b"part %d" % index).digest()  # 32 bytes
            file.write(zlib.compress(block * 8192))  # 256 KiB once decompressed
        paths.append(path)
    return paths


def main():
    with tempfile.TemporaryDirectory() as directory:
        paths = write_files(directory, 16)
        total = 0
        digest = hashlib.sha256()
        with read_files(paths) as parts:  # closing stops the worker at once
            for data in parts:
                digest.update(data)
                total += len(data)
            print(f"bottleneck: {parts.stats().bottleneck}")
        print(f"read {len(paths)} files, {total} bytes, sha256 {digest.hexdigest()[:12]}")


if __name__ == "__main__":
    main()
