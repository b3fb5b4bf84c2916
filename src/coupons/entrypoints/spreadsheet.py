"""CSV cells that a spreadsheet shows as text, never runs as a formula (CSV injection).

Codes, reasons and actor names are user input. A cell that starts with `=`, `+`, `-`, `@`, a
tab or a carriage return is read as a formula by spreadsheet programs, so such a cell is
written with a single quote in front (`'=1+1`), as OWASP recommends: the program then shows the
text instead of evaluating it, and a person still reads the original value after the quote.
Importers that trim a cell first (a spreadsheet's "trim spaces" option, a script) would run
` =1+1` or a reason that begins with a line break, so leading whitespace does not hide a
formula: such a cell gets the quote too, as does one behind invisible format characters (a
byte order mark, a zero-width space), which an importer may drop as well.
The quote is visible to a program that reads the file, which removes it with `restore`. So
that every cell can be read back exactly, a value that itself starts with quotes followed by
one of those characters (`'=1`) gets one more quote too (`''=1`): a cell that starts with a
quote, then any quotes or whitespace, then such a character, always had its first quote
added here.

Its own module, importing only the standard library, so that both the server's exports and
the `coupons revoke` command's result file use it (the command does not load the server).
"""

from __future__ import annotations

import unicodedata

# Characters that make a spreadsheet treat a cell as a formula (OWASP's list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"


def _quoted_formula(text: str) -> bool:
    """Quotes and whitespace (none or more), then a character that starts a formula."""
    for char in text:
        if char in FORMULA_STARTS:
            return True
        if char != QUOTE and not char.isspace() and unicodedata.category(char) != "Cf":
            return False
    return False


def neutralise(text: str) -> str:
    """The text as a spreadsheet shows it without evaluating it."""
    return QUOTE + text if _quoted_formula(text) else text


def restore(cell: str) -> str:
    """The original text of a cell `neutralise` wrote (for programs reading a file)."""
    if cell.startswith(QUOTE) and _quoted_formula(cell[1:]):
        return cell[1:]
    return cell
