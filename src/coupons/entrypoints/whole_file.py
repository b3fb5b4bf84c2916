"""Files the commands write whole or not at all: an export, a revoke's result CSV.

Its own module, with no imports beyond the standard library, so that `coupons revoke` (which
loads neither the server nor the database layer) and the export commands share it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def whole_file(path: Path, *, text: bool = False) -> Iterator[IO[Any]]:
    """Write `path` beside itself (`<name>.partial`) and give it the name only when the block
    ends without error: a reader never sees half a file, a failed run keeps the previous one,
    and nothing is left behind either way. `text` opens it as UTF-8 text for `csv.writer`."""
    partial = path.with_name(path.name + ".partial")
    try:
        with (
            partial.open("w", encoding="utf-8", newline="") if text else partial.open("wb")
        ) as handle:
            yield handle
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
