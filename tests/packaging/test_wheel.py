"""The wheel built from this checkout: what it holds, its metadata, and a build without warnings.

``pip wheel`` builds in an isolated environment with the setuptools that
pyproject.toml asks for, as a user's ``pip install .`` does.
"""

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 300  # fetching setuptools into the build environment dominates
VERSIONS = ["3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]

if sys.version_info < (3, 9):
    pytest.skip(
        "Python 3.8 builds with setuptools 75, which predates PEP 639's licence metadata",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The build's output and the wheel's path."""
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = out.glob("prefetch_generator-*.whl")
    return result.stdout + result.stderr, wheel


def test_the_build_prints_no_warning(built):
    log, _ = built
    assert re.findall(r"\w+Warning\b.*", log) == []


def test_the_wheel_holds_both_packages_their_markers_and_the_licence_only(built):
    _, wheel = built
    names = zipfile.ZipFile(wheel).namelist()
    dist_info = next(name.split("/")[0] for name in names if name.endswith(".dist-info/METADATA"))
    assert {name.split("/")[0] for name in names} == {
        "prefetch_generator",
        "prefetch_generator_jax",
        dist_info,
    }
    assert {"prefetch_generator/py.typed", "prefetch_generator_jax/py.typed"} <= set(names)
    assert f"{dist_info}/licenses/UNLICENSE" in names
    modules = {name for name in names if name.endswith(".py")}
    assert modules == {
        str(path.relative_to(ROOT))
        for package in ("prefetch_generator", "prefetch_generator_jax")
        for path in (ROOT / package).glob("*.py")
    }


def test_the_metadata_names_the_spdx_licence_and_every_tested_python(built):
    _, wheel = built
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [name for name in archive.namelist() if name.endswith("dist-info/METADATA")]
        fields = archive.read(metadata).decode().split("\n\n", 1)[0].splitlines()
    assert "License-Expression: Unlicense" in fields
    assert "License-File: UNLICENSE" in fields
    assert not [field for field in fields if field.startswith("Classifier: License ::")]
    assert "Requires-Python: >=3.8" in fields
    classifiers = {field.split(": ", 1)[1] for field in fields if field.startswith("Classifier:")}
    assert {f"Programming Language :: Python :: {version}" for version in VERSIONS} <= classifiers
    assert "Programming Language :: Python :: Free Threading :: 3 - Stable" in classifiers
