"""What the command line writes where, run as a user runs it (a process of its own): results
on stdout for scripts to read, one line on stderr for a refusal, never a log line among them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import make_url

from coupons.adapters import migrate
from tests.conftest import scratch_postgres

CLI = [sys.executable, "-m", "coupons.entrypoints.cli"]


def test_a_failing_admin_command_writes_no_log_line_to_stdout(
    postgres_admin_url: str | None,
) -> None:
    if postgres_admin_url is None:
        pytest.skip("PostgreSQL not reachable")
    with scratch_postgres(postgres_admin_url, "coupons_cli_output") as url:
        # given a migrated database that takes no writes (a standby, a demoted primary),
        # where the command retries once on a fresh connection before it gives up
        migrate.upgrade(url)
        with psycopg.connect(url, autocommit=True) as conn:
            name = make_url(url).database
            conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')

        # when an org is created there, its id read from stdout as a script would
        done = subprocess.run(
            [*CLI, "org", "create", "ACME-RO", "--db", url],
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
