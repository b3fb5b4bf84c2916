"""The bulk command plans a codes file with the domain's own code rules, before sending."""

from __future__ import annotations

from pathlib import Path

from coupons.domain.codes import MAX_CODE_LENGTH
from coupons.entrypoints.bulk_revoke.codes_file import LineKind, plan, scan
from coupons.entrypoints.bulk_revoke.journal import batches


def test_later_duplicates_anywhere_in_the_file_and_in_any_case_are_planned_as_duplicates(
    tmp_path: Path,
) -> None:
    # given a file with the same code in other cases and spacing far apart, a blank line,
    # a code the server's case folding equates (ß and SS) and one too long to send
    codes = [f"C{i:03d}" for i in range(120)]
    text = [*codes, " c001 ", "", "STRASSE", "straße", "x" * (MAX_CODE_LENGTH + 1), "C119"]
    path = tmp_path / "codes.txt"
    path.write_text("\n".join(text) + "\n")

    # when planning it
    scanned = scan(path)
    lines = list(plan(path, scanned))

    # then every non-blank line is planned once with its own line number, duplicates marked
    assert scanned.total == len(lines) == 125
    assert scanned.sendable == 121
    kinds = {line.number: line.kind for line in lines}
    assert kinds[121] is LineKind.DUPLICATE  # " c001 " repeats line 2
    assert 122 not in kinds  # the blank line
    assert (kinds[123], kinds[124]) == (LineKind.SEND, LineKind.DUPLICATE)
    assert (kinds[125], kinds[126]) == (LineKind.INVALID, LineKind.DUPLICATE)
    # and only distinct valid codes go out, 50 a batch
    sizes = [len(batch) for _, batch in batches(iter(lines))]
    assert sizes == [50, 50, 21]


def test_a_csv_plans_its_code_column_with_the_files_line_numbers(tmp_path: Path) -> None:
    # given a CSV with a note column before the code column
    path = tmp_path / "codes.csv"
    path.write_text("note,Code\nx, A1 \ny,\nz,a1\nw,B2\n")

    # when planning it, then blank codes are skipped and lines count the header
    lines = list(plan(path, scan(path)))
    assert [(line.number, line.code, line.kind.value) for line in lines] == [
        (2, "A1", "send"),
        (4, "a1", "duplicate_in_file"),
        (5, "B2", "send"),
    ]
