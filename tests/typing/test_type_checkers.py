"""Type checkers see the decorated function's parameters and the public API's types.

``accepted.py`` must type-check clean under ``mypy --strict`` and pyright;
``rejected.py`` must be flagged on exactly the lines marked ``# rejected``. Both
check this checkout (not whatever copy is installed), as a user's program
that imports the package would see it.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ACCEPTED = HERE / "accepted.py"
REJECTED = HERE / "rejected.py"
TIMEOUT_S = 240  # a cold mypy or pyright run takes seconds; the margin is for a busy machine


def marked_lines(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    return {number for number, line in enumerate(lines, 1) if line.endswith("# rejected")}


def mypy_error_lines(program, tmp_path):
    pytest.importorskip("mypy", reason="the type-checking tests need mypy (the test extra)")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent"]
        + ["--cache-dir", str(tmp_path / "mypy"), "--no-error-summary", str(program)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env={**os.environ, "MYPYPATH": str(ROOT)},
        cwd=ROOT,
    )
    assert result.returncode in (0, 1), result.stdout + result.stderr
    pattern = re.compile(rf"^{re.escape(str(program.relative_to(ROOT)))}:(\d+): error:")
    return {int(match[1]) for match in map(pattern.match, result.stdout.splitlines()) if match}


def pyright_error_lines(program, tmp_path):
    pytest.importorskip("pyright", reason="the type-checking tests need pyright (the test extra)")
    config = tmp_path / "pyrightconfig.json"
    config.write_text(json.dumps({"extraPaths": [str(ROOT)], "pythonVersion": "3.8"}))
    result = subprocess.run(
        [sys.executable, "-m", "pyright", "--outputjson", "-p", str(config), str(program)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=ROOT,
    )
    assert result.returncode in (0, 1), result.stdout + result.stderr
    report = json.loads(result.stdout)
    return {
        diagnostic["range"]["start"]["line"] + 1
        for diagnostic in report["generalDiagnostics"]
        if diagnostic["severity"] == "error"
    }


CHECKERS = [mypy_error_lines, pyright_error_lines]


@pytest.mark.parametrize("error_lines", CHECKERS, ids=["mypy", "pyright"])
def test_the_documented_uses_type_check_clean(error_lines, tmp_path):
    assert error_lines(ACCEPTED, tmp_path) == set()


@pytest.mark.parametrize("error_lines", CHECKERS, ids=["mypy", "pyright"])
def test_every_wrong_call_is_flagged(error_lines, tmp_path):
    expected = marked_lines(REJECTED)
    assert len(expected) == 8
    assert error_lines(REJECTED, tmp_path) == expected


def test_the_accepted_program_runs():
    result = subprocess.run(
        [sys.executable, str(ACCEPTED)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "14 ['A', 'B', 'C'] [4, 4, 2] [0.5, 1.5] True"
