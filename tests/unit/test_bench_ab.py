"""The A/B benchmark pairs rounds that ran side by side, and its baseline server runs the
baseline's code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.ab import REPO, checked_out, order, pair_ratios


def test_rounds_alternate_abba_so_drift_hits_both_sides_alike() -> None:
    assert order(3) == [
        "current",
        "baseline",
        "baseline",
        "current",
        "current",
        "baseline",
    ]
    assert order(3).count("current") == order(3).count("baseline") == 3


def test_each_pair_is_compared_on_its_own() -> None:
    assert pair_ratios([110.0, 90.0], [100.0, 100.0]) == [1.1, 0.9]
    assert pair_ratios([1.0], [0.0]) == [0.0]
    with pytest.raises(ValueError, match="same number"):
        pair_ratios([1.0, 2.0], [1.0])


def test_the_baseline_is_imported_from_its_own_checkout() -> None:
    # given the first commit of the project, checked out beside this one
    first = subprocess.run(
        ["git", "-C", str(REPO), "rev-list", "--max-parents=0", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    with checked_out(first) as folder:
        # when Python runs with its sources first on the path, as the baseline server does
        env = {**os.environ, "PYTHONPATH": str(folder / "src")}
        found = subprocess.run(
            [sys.executable, "-c", "import coupons; print(coupons.__file__)"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout.strip()
        # then the package comes from that checkout, not this one
        assert Path(found).is_relative_to(folder)
    # and the checkout is gone afterwards
    assert not folder.exists()
