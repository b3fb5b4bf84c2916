"""`coupons revocations` on a narrow terminal: ids and times are copied from it, never cut."""

from __future__ import annotations

from rich.console import Console

from coupons.client import Revocation
from coupons.entrypoints.finding_cli import revocations_table


def test_request_ids_and_times_are_printed_whole_in_80_columns() -> None:
    rows = [
        Revocation(
            request_id=f"ff7875abb9c04d1e8e5f{i:012d}",
            at="2026-12-06T10:41:07.123456Z",
            actor="support-agent@example.com",
            reason="a leaked list of codes, found on a forum and reported by a customer",
            revoked_count=50,
            reinstated_count=0,
        )
        for i in range(3)
    ]
    console = Console(width=80, record=True)

    console.print(revocations_table(rows))

    text = console.export_text()
    for row in rows:
        assert row.request_id in text and row.at in text
