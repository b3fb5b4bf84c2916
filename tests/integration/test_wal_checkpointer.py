"""Served SQLite processes copy the write-ahead log back from a background thread."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import text

from coupons.adapters.sql_uow import WAL_BACKSTOP_PAGES, Database


def test_the_background_checkpointer_empties_the_log_while_commits_skip_it(
    tmp_path: Path,
) -> None:
    # Given a database whose process runs the checkpointer
    path = tmp_path / "c.db"
    db = Database.from_url(f"sqlite:///{path}")
    db.start_wal_checkpointer(interval=0.05)
    try:
        # When a writer commits a few hundred pages
        def write(uow):  # type: ignore[no-untyped-def]
            conn = uow.conn
            conn.execute(text("CREATE TABLE t (v TEXT)"))
            for _ in range(200):
                conn.execute(text("INSERT INTO t VALUES (:v)"), {"v": "x" * 4000})
            setting = conn.execute(text("PRAGMA wal_autocheckpoint")).scalar()
            uow.commit()
            return setting

        setting = db.run(write)

        # Then its commit left the copying to the checkpointer (the log holds the pages and
        # the database file is still small), which copies them back within moments
        assert setting == WAL_BACKSTOP_PAGES
        deadline = time.monotonic() + 5
        while path.stat().st_size < 200 * 4000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size >= 200 * 4000
        assert Path(f"{path}-wal").stat().st_size >= 200 * 4000
    finally:
        db.dispose()
