"""A console preview's `started_job_id` from the answers stored when it was started (0013,
0014): the one piece of data migration two revisions share, so both read answers alike."""

from __future__ import annotations

import json
import zlib

import sqlalchemy as sa
from sqlalchemy.engine import Connection

KEY_PREFIX = "console-start:"


def stored_answer(body: bytes) -> bytes:
    """A stored answer's JSON: the service compresses what it stores (a zlib stream starts
    with 0x78, which JSON never does); answers stored before it did are the JSON itself."""
    return zlib.decompress(body) if body[:1] == b"\x78" else body


def carry_over(conn: Connection) -> None:
    """Name, on each preview not yet naming one, the job its first stored start answered."""
    answers = conn.execute(
        sa.text(
            "SELECT key, org_id, body FROM idempotency_keys WHERE key LIKE :prefix "
            "ORDER BY created_at"
        ),
        {"prefix": KEY_PREFIX + "%"},
    )
    for key, org_id, body in answers.all():
        try:
            started = json.loads(stored_answer(bytes(body)))["jobId"]
        except (ValueError, KeyError, TypeError, zlib.error):
            continue  # not a start's answer: nothing to carry over
        # The earliest answer wins; a job of another org is never named.
        conn.execute(
            sa.text(
                "UPDATE revoke_jobs SET started_job_id = :started "
                "WHERE id = :preview AND org_id = :org AND started_job_id IS NULL "
                "AND EXISTS (SELECT 1 FROM revoke_jobs j WHERE j.id = :started "
                "AND j.org_id = :org)"
            ),
            {"started": str(started), "preview": key[len(KEY_PREFIX) :], "org": org_id},
        )
