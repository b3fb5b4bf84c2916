"""`coupons revoke --on-server` writes the job's report as it arrives and counts its outcomes,
whatever bytes the network pieces end on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from coupons.entrypoints.server_revoke import download

REPORT = (
    "code,outcome,errorCode,couponId,issuedToUserId\r\n"
    "ÉÉK00000,revoked,,11,\r\n"
    "ÉÉK00001,not_found,682,,\r\n"
    "ÉÉK00002,revoked,,13,\r\n"
).encode()


class Report:
    """The client's report call, answering in pieces `size` bytes long."""

    def __init__(self, size: int) -> None:
        self.size = size

    def revoke_job_report(self, job_id: str) -> Iterator[bytes]:
        for start in range(0, len(REPORT), self.size):
            yield REPORT[start : start + self.size]


def test_pieces_ending_inside_a_character_are_written_and_counted_whole(tmp_path: Path) -> None:
    # Every piece size from 1 byte up splits some "É" (two bytes) across two pieces
    for size in range(1, 40):
        results = tmp_path / f"r{size}.csv"

        counts, errors = download(cast(Any, Report(size)), "job_1", results)

        assert results.read_bytes() == REPORT
        assert counts == {"revoked": 2, "not_found": 1}
        assert errors == {"not_found": {"682": 1}}
