"""Fresh interpreters that see several CPU devices, for the JAX tests."""

import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_with_devices(script, devices=4, env=None, timeout=120):
    """Run ``script`` in a fresh interpreter that sees ``devices`` CPU devices."""
    env = dict(
        os.environ,
        PYTHONPATH=REPO,
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        **(env or {}),
    )
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr
    return result
