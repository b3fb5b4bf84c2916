"""Every file a SQLite database leaves beside itself is ignored by git."""

from __future__ import annotations

import fnmatch
from pathlib import Path

from coupons.adapters import migrate
from coupons.adapters.sql_uow import Database

REPO = Path(__file__).resolve().parents[2]


def ignored_patterns() -> list[str]:
    lines = (REPO / ".gitignore").read_text().splitlines()
    return [line.strip().rstrip("/") for line in lines if line.strip() and line[0] != "#"]


def test_the_files_beside_a_served_sqlite_database_are_all_ignored(tmp_path: Path) -> None:
    # given a SQLite database that has been migrated and written through the service's gate
    url = f"sqlite:///{tmp_path / 'coupons.db'}"
    migrate.upgrade(url)
    database = Database.from_url(url, pool_size=2)
    try:
        database.run(lambda uow: uow.commit())
        left_beside = sorted(p.name for p in tmp_path.iterdir())
    finally:
        database.dispose()

    # then each of them (database, WAL, lock and wait files) matches a .gitignore pattern
    assert any(name.endswith("writers.wait") for name in left_beside), left_beside
    patterns = ignored_patterns()
    unignored = [n for n in left_beside if not any(fnmatch.fnmatch(n, p) for p in patterns)]
    assert unignored == []
