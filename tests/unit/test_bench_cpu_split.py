"""The benchmark's CPU split: who spent the machine's CPU between two snapshots."""

from __future__ import annotations

import os
from pathlib import Path

from bench.cpu_split import Usage, machine_busy, report, snapshot, split


def test_cpu_time_is_grouped_by_server_load_and_database_between_snapshots() -> None:
    before = {
        10: Usage("python -m coupons.entrypoints.cli serve", 1.0, 0.5),
        11: Usage("postgres: postgres coupons 127.0.0.1 idle", 2.0, 1.0),
        12: Usage("python -c from multiprocessing.forkserver import main", 0.1, 0.0),
        13: Usage("redis-server", 5.0, 5.0),
        14: Usage("postgres: a backend that is gone by the second snapshot", 1.0, 1.0),
        16: Usage("postgres: a backend whose pid is reused", 1.0, 1.0, started=100),
    }
    after = {
        10: Usage("python -m coupons.entrypoints.cli serve", 3.0, 0.9),
        # a backend rewrites its command line with each statement: still the same process
        11: Usage("postgres: postgres coupons 127.0.0.1 UPDATE", 4.5, 1.5),
        12: Usage("python -c from multiprocessing.forkserver import main", 0.3, 0.1),
        13: Usage("redis-server", 5.1, 5.0),
        15: Usage("postgres: a backend born after the first", 9.0, 9.0),
        16: Usage("postgres: another backend under the same pid", 2.0, 2.0, started=200),
    }

    totals = split(before, after, server_pids=[10], load_pids=[12])

    rounded = {name: (round(u, 6), round(s, 6)) for name, (u, s) in totals.items()}
    assert rounded == {
        "server": (2.0, 0.4),
        "postgresql": (2.5, 0.5),
        "load generator": (0.2, 0.1),
        "other": (0.1, 0.0),
    }
    # the biggest spender first; 2 s of server user CPU over 4 s is 50% of a core, and over
    # 100 requests 20 ms each
    lines = report(totals, seconds=4.0, requests=100).splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["postgresql", "server", "load", "other"]
    assert lines[2].split() == ["server", "50.0%", "10.0%", "20.00", "+", "4.00", "ms"]


def test_a_snapshot_sees_this_process_spend_cpu() -> None:
    first = snapshot()[os.getpid()]
    sum(i * i for i in range(300_000))
    second = snapshot()[os.getpid()]

    assert "python" in first.command or "pytest" in first.command
    assert second.user_s + second.system_s >= first.user_s + first.system_s


def test_the_machine_is_busy_for_all_but_its_idle_and_io_wait_ticks(tmp_path: Path) -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 5 50 800 40 0 3 2 0 0\ncpu0 50 2 25 400 20 0 1 1 0 0\n")

    assert machine_busy(stat) == (160, 1000)
