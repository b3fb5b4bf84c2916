"""Batches, their idempotency keys, and the journal a rerun resumes from.

Batch *n* is always the distinct codes 50n to 50n+49 of the file's plan, so a rerun with the
same arguments numbers them alike. The journal (JSON lines beside the result CSV) records each
batch's idempotency key before the batch is sent and its per-line results after: a rerun skips
finished batches and resends unfinished ones under their original keys, which the server
replays, so no code is revoked or counted twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from coupons.domain.codes import MAX_CODES_PER_REQUEST
from coupons.entrypoints.bulk_revoke.codes_file import Line, LineKind

JOURNAL_VERSION = 2  # 2: rows carry their line number; batches hold distinct codes only

Row = tuple[int, str, str, str, str]  # line, code, outcome, errorCode, couponId


class JournalMismatch(Exception):
    """The journal belongs to a run with other arguments or another codes file."""


@dataclass(frozen=True, slots=True)
class RunSpec:
    """Everything that must match for a rerun to resume a journal."""

    series: int
    codes_file: str
    codes_sha256: str
    reason: str | None
    case: str
    dry_run: bool
    # Idempotency keys are kept per API client: under another, a resent key would not replay
    # the first answer, and codes the lost batch revoked would read "already revoked".
    username: str = ""
    # And per server: resumed against another one (staging, then production), the first
    # server's report was replayed and nothing was sent.
    url: str = ""


def batches(
    lines: Iterator[Line], size: int = MAX_CODES_PER_REQUEST
) -> Iterator[tuple[int, list[Line]]]:
    """The codes to send, numbered in file order; the numbering is what a rerun resumes by."""
    batch: list[Line] = []
    number = 0
    for line in lines:
        if line.kind is not LineKind.SEND:
            continue
        batch.append(line)
        if len(batch) == size:
            yield number, batch
            number, batch = number + 1, []
    if batch:
        yield number, batch


def codes_in(done: set[int], sendable: int, size: int = MAX_CODES_PER_REQUEST) -> int:
    """How many codes the finished batches hold (only the last batch may be short)."""
    if sendable == 0:
        return 0
    last = (sendable - 1) // size
    return sum(sendable - last * size if b == last else size for b in done if b <= last)


class JournalBusy(JournalMismatch):
    """Another run holds the journal: two runs of one command would send every batch twice,
    each under its own key, and interleave their records."""


def _hold(path: Path) -> int:
    """The journal opened (created, never truncated) and locked for this run alone; the lock
    goes with the process, however it ends."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JournalBusy(
            f"another run is using {path} (the same command, still running?): wait for it "
            "to end, then run this again to resume, or pick another --results file"
        ) from None
    return fd


class Journal:
    """Append-only JSON lines: a header, then `sent` (batch, key) and `done` (batch, rows)."""

    def __init__(self, path: Path, spec: RunSpec) -> None:
        self.path = path
        self.done: set[int] = set()
        self.keys: dict[int, str] = {}
        self._offsets: dict[int, int] = {}  # where each batch's `done` record starts
        header = {"journal": JOURNAL_VERSION, **asdict(spec)}
        self._lock = _hold(path)
        try:
            # Whether an earlier run of these arguments left records here (keys it sent, or
            # batches it finished): their outcome may be on the server even if never seen.
            self.resumed = os.fstat(self._lock).st_size > 0
            if self.resumed and self._left_by_a_dry_run():
                # A preview changed nothing, so there is nothing to resume (replayed, it would
                # show coupons as they were): a preview or a real run over it starts afresh.
                self.resumed = False
            if self.resumed:
                self._load(header)
        except BaseException:
            os.close(self._lock)
            raise
        if self.resumed:
            self._file: IO[bytes] = path.open("ab")
            if not self._ends_with_newline():
                self._file.write(b"\n")  # a crash cut the last record short
        else:
            self._file = path.open("wb")
            self._write(header)

    def _left_by_a_dry_run(self) -> bool:
        first = next(self._records(), None)
        return first is not None and "journal" in first[1] and first[1].get("dry_run") is True

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"

    def _load(self, header: dict[str, Any]) -> None:
        records = self._records()
        first = next(records, None)
        if first is None or "journal" not in first[1]:
            # No header first: not this command's journal (or one damaged past reading).
            # Taken as one, its batches would be reported for arguments it never named.
            raise JournalMismatch(
                f"{self.path} is not a journal this command can resume (it has no header "
                "line); remove it, or pick another --results file"
            )
        if first[1] != header:
            raise JournalMismatch(
                f"{self.path} belongs to a run with other arguments or another version "
                "of the codes file; rerun with those, or pick another --results file"
            )
        for offset, record in records:
            if record.get("state") == "sent":
                self.keys[record["batch"]] = record["key"]
            elif record.get("state") == "done":
                self.done.add(record["batch"])
                self._offsets.setdefault(record["batch"], offset)
        for finished in self.done:
            self.keys.pop(finished, None)

    def _records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        with self.path.open("rb") as handle:
            offset = 0
            for line in handle:
                # A torn last line of a killed run does not parse: that batch is resent.
                with contextlib.suppress(json.JSONDecodeError, UnicodeDecodeError):
                    record = json.loads(line)
                    if isinstance(record, dict):
                        yield offset, record
                offset += len(line)

    def _write(self, record: dict[str, Any]) -> int:
        offset = self._file.tell()
        self._file.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")
        # Flushed before the request goes out: a killed process still leaves the key behind.
        self._file.flush()
        return offset

    def key_for(self, batch: int) -> str:
        """The batch's idempotency key: the recorded one, or a new one recorded now."""
        key = self.keys.get(batch)
        if key is None:
            key = uuid.uuid4().hex
            self.keys[batch] = key
            self._write({"batch": batch, "state": "sent", "key": key})
        return key

    def finish(self, batch: int, rows: list[Row]) -> None:
        """Record a batch's results; from now on a rerun skips it."""
        offset = self._write({"batch": batch, "state": "done", "rows": rows})
        self._offsets.setdefault(batch, offset)
        self.done.add(batch)
        self.keys.pop(batch, None)

    def rows_of(self, batch: int, reader: IO[bytes]) -> list[Row] | None:
        """A finished batch's rows, read back through `reader` (an open handle on the
        journal) so that memory stays flat; None for an unfinished batch."""
        offset = self._offsets.get(batch)
        if offset is None:
            return None
        reader.seek(offset)
        record = json.loads(reader.readline())
        return [(int(r[0]), r[1], r[2], r[3], r[4]) for r in record["rows"]]

    def end_writes(self) -> None:
        """Every record on disk; the lock stays until `close`."""
        if self._file.closed:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.end_writes()
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1
