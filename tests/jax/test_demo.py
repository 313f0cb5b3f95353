"""``python -m prefetch_generator_jax``: arguments checked, timings warmed and interleaved."""

import re

import pytest

pytest.importorskip("jax")

from prefetch_generator_jax.__main__ import main  # noqa: E402

TINY = ["--batches", "2", "--batch-size", "4", "--features", "4", "--hidden", "4"]


@pytest.mark.parametrize(
    "argument, value",
    [
        ("--batches", "0"),
        ("--batch-size", "-3"),
        ("--rounds", "0"),
        ("--load-ms", "-1"),
        ("--load-ms", "inf"),
    ],
)
def test_the_demo_rejects_an_argument_it_cannot_time_with_a_usage_error(argument, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([argument, value])
    assert exit_info.value.code == 2
    assert f"argument {argument}: must be " in capsys.readouterr().err


def test_the_demo_prints_medians_of_interleaved_rounds_and_the_speedup(capsys):
    main([*TINY, "--load-ms", "0", "--rounds", "2"])
    out = capsys.readouterr().out
    assert "median of 2 interleaved rounds after a warm-up round" in out
    for case in ("pure compute", "no prefetch", "Prefetcher + device"):
        assert re.search(re.escape(case) + r": +\d+\.\d\d ms/step", out), out
    assert re.search(r"Prefetcher \+ device is \d+\.\d\dx faster than no prefetch", out), out
