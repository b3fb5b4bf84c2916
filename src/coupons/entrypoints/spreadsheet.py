"""CSV cells that a spreadsheet shows as text, never runs as a formula (CSV injection).

Codes, reasons and actor names are user input. A cell that starts with `=`, `+`, `-`, `@`, a
tab or a carriage return is read as a formula by spreadsheet programs, so such a cell is
written with a single quote in front (`'=1+1`), as OWASP recommends: the program then shows the
text instead of evaluating it, and a person still reads the original value after the quote.
The quote is visible to a program that reads the file: a cell that begins with `'` followed by
one of those characters had the quote added here (see `restore`).

Its own module, with no imports, so that both the server's exports and the `coupons revoke`
command's result file use it (the command does not load the server).
"""

from __future__ import annotations

# Characters that make a spreadsheet treat a cell as a formula (OWASP's list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"


def neutralise(text: str) -> str:
    """The text as a spreadsheet shows it without evaluating it."""
    return QUOTE + text if text.startswith(FORMULA_STARTS) else text


def restore(cell: str) -> str:
    """The original text of a cell `neutralise` wrote (for programs reading a file)."""
    if cell.startswith(QUOTE) and cell[1:].startswith(FORMULA_STARTS):
        return cell[1:]
    return cell
