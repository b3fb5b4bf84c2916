"""`coupons revocations` on a narrow terminal: ids and times are copied from it, never cut."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from coupons.client import Revocation
from coupons.entrypoints.finding_cli import revocations_table, revocations_view


def revocation(i: int, **changes: object) -> Revocation:
    """Trail row `i`, as a support agent's revoke writes it."""
    fields: dict[str, object] = {
        "request_id": f"ff7875abb9c04d1e8e5f{i:012d}",
        "at": "2026-12-06T10:41:07.123456Z",
        "actor": "support-agent@example.com",
        "reason": "a leaked list of codes, found on a forum and reported by a customer",
        "revoked_count": 50,
        "reinstated_count": 0,
        **changes,
    }
    return Revocation(**fields)  # type: ignore[arg-type]


def test_request_ids_and_times_are_printed_whole_in_80_columns() -> None:
    rows = [revocation(i) for i in range(3)]
    console = Console(width=80, record=True)

    console.print(revocations_table(rows))

    text = console.export_text()
    for row in rows:
        assert row.request_id in text and row.at in text


def test_on_a_narrow_terminal_every_field_of_every_row_is_shown_whole() -> None:
    # At 80 columns (a pipe) the table left actor, counts and reason no room at all
    rows = [
        revocation(
            i,
            reason="[bold]a leaked list[/bold] of codes, found on a forum",
            revoked_count=1250,
            reinstated_count=3,
            job_id="job_0123456789abcdef01234567" if i else None,
        )
        for i in range(2)
    ]
    console = Console(width=80, record=True)

    console.print(revocations_view(rows, console.width))

    text = console.export_text()
    for row in rows:
        assert row.request_id in text and row.at in text
    assert text.count("support-agent@example.com") == 2
    assert text.count("[bold]a leaked list[/bold] of codes, found on a forum") == 2
    assert "1,250" in text and "job_0123456789abcdef01234567" in text
    assert "reinstated  3" in text


def test_a_wide_terminal_gets_the_table_and_an_empty_trail_says_so() -> None:
    assert isinstance(revocations_view([], 160), Table)
    console = Console(width=80, record=True)
    console.print(revocations_view([], 80))
    assert "no revocations" in console.export_text()


def test_a_long_request_id_sends_even_a_wide_terminal_to_the_row_blocks() -> None:
    # A client may choose a 128-character X-Request-Id; beside it a 160-column table had
    # no room left for actor, counts and reason
    row = revocation(0, request_id="r" * 128, reason="leaked")
    console = Console(width=160, record=True)

    console.print(revocations_view([row], console.width))

    text = console.export_text()
    assert "r" * 128 in text and "support-agent@example.com" in text and "leaked" in text
    assert isinstance(revocations_view([row], 240), Table)


def test_escape_sequences_in_a_reason_reach_the_terminal_as_text_in_both_views() -> None:
    # a client's reason is anyone's text: raw, it recoloured and retitled the reader's terminal
    reason = "\x1b[31mred\x1b[0m \x1b]0;TITLE\x07 \x9bend"
    rows = [revocation(1, reason=reason)]
    for width in (80, 240):
        console = Console(width=width, record=True, force_terminal=True)

        console.print(revocations_view(rows, console.width))

        raw = console.export_text(styles=False)
        assert "\x1b" not in raw and "\x07" not in raw and "\x9b" not in raw
        assert "\\x1b[31mred\\x1b[0m" in raw and "\\x9bend" in raw
