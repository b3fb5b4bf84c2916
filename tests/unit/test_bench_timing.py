"""The benchmark's load processes start clean: nothing of the caller's open files, threads or
locks, so a run can neither hang on a copied lock nor keep the caller's pipes open."""

from __future__ import annotations

import os
import threading
from dataclasses import asdict
from typing import Any

from bench.timing import Side, drive, run_side


def _report_open_fd(
    fd: int, inode: int, jobs: list[int], start: Any, duration_s: float, results: Any
) -> None:
    """Counts, as codes, whether the caller's pipe is open here under its number."""
    side = Side()

    def send(_job: int) -> int:
        try:
            return int(os.fstat(fd).st_ino == inode)
        except OSError:
            return 0

    drive(side, jobs, start, duration_s, send)
    results.put(asdict(side))


def test_connections_inherit_no_descriptor_of_the_caller() -> None:
    # Given a pipe the caller holds open, and a thread of its own busy meanwhile
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)
    stop = threading.Event()
    busy = threading.Thread(target=lambda: stop.wait(30), daemon=True)
    busy.start()
    try:
        # When two connections run one job each
        inode = os.fstat(write_end).st_ino
        side = run_side(_report_open_fd, (write_end, inode), [1, 2], 2, 5.0)
    finally:
        stop.set()
        os.close(read_end)
        os.close(write_end)

    # Then both ran, and neither had the caller's pipe
    assert (side.requests, side.errors, side.codes) == (2, 0, 0)
