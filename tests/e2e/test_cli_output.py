"""What the command line writes where, run as a user runs it (a process of its own): results
on stdout for scripts to read, one line on stderr for a refusal, never a log line among them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from coupons.adapters import migrate
from tests.conftest import scratch_postgres

CLI = [sys.executable, "-m", "coupons.entrypoints.cli"]


def test_a_failing_admin_command_writes_no_log_line_to_stdout(read_only_postgres: str) -> None:
    # given a migrated database that takes no writes (a standby, a demoted primary), where
    # the command retries once on a fresh connection before it gives up

    # when an org is created there, its id read from stdout as a script would
    done = subprocess.run(
        [*CLI, "org", "create", "ACME-RO", "--db", read_only_postgres],
        capture_output=True,
        text=True,
        timeout=120,
    )

    # then stdout holds nothing (no debug line to be taken for the id), stderr the one error
    assert done.returncode == 1
    assert done.stdout == ""
    assert [line for line in done.stderr.splitlines() if line.strip()] == [
        line for line in done.stderr.splitlines() if line.startswith("error:")
    ]


def test_a_worker_on_a_database_it_cannot_write_refuses_to_start_in_one_line(
    tmp_path: Path,
) -> None:
    # given a migrated SQLite database, opened read-only (file modes do not stop root)
    path = tmp_path / "coupons.db"
    migrate.upgrade(f"sqlite:///{path}")
    url = f"sqlite:///file:{path}?mode=ro&uri=true"

    # when a worker is started on it
    done = subprocess.run(
        [*CLI, "worker", "--db", url], capture_output=True, text=True, timeout=120
    )

    # then it refuses before running anything, saying why, as `serve` does
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"error: the database at {url} cannot be written: attempt to write a readonly database"
    )


def test_the_same_person_created_four_times_at_once_is_created_once_and_refused_thrice(
    postgres_admin_url: str | None,
) -> None:
    if postgres_admin_url is None:
        pytest.skip("PostgreSQL not reachable")
    with scratch_postgres(postgres_admin_url, "coupons_cli_race") as url:
        # given an org
        migrate.upgrade(url)
        subprocess.run([*CLI, "org", "create", "ACME", "--db", url], check=True, timeout=120)

        # when four operators create the same person at the same moment
        runs = [
            subprocess.Popen(
                [
                    *CLI,
                    "user",
                    "create",
                    "--org",
                    "ACME",
                    "--email",
                    "race@example.com",
                    "--role",
                    "support",
                    "--db",
                    url,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        done = [(run.wait(120), *run.communicate()) for run in runs]

    # then one prints the password and the others say the person exists, never a raw error
    codes = sorted(code for code, _, _ in done)
    assert codes == [0, 1, 1, 1], done
    refusals = [err.strip() for code, _, err in done if code == 1]
    assert all("already exists" in r and "(error 9016)" in r for r in refusals), refusals
