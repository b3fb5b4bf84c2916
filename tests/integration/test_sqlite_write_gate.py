"""The SQLite writer queue orders writers but never blocks one for good."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path
from typing import Any

from coupons.adapters.db import SqliteWriteGate


def test_a_writer_waits_for_the_holder_and_then_gets_its_turn(tmp_path: Path) -> None:
    # Given two gates on one database file (as two processes would have)
    first = SqliteWriteGate(str(tmp_path / "c.db"), timeout=5)
    second = SqliteWriteGate(str(tmp_path / "c.db"), timeout=5)
    assert first.acquire()
    got: list[float] = []

    # When the second writer asks while the first holds the gate, and the first then releases
    waiter = threading.Thread(
        target=lambda: got.append(time.monotonic()) if second.acquire() else None
    )
    waiter.start()
    time.sleep(0.2)
    released = time.monotonic()
    first.release()
    waiter.join(timeout=5)

    # Then the second writer got in only after the release, and promptly
    assert got and released <= got[0] < released + 0.5
    second.release()
    first.close()
    second.close()


def test_a_writer_gives_up_on_the_gate_after_its_timeout_instead_of_hanging(
    tmp_path: Path,
) -> None:
    # Given a gate held by another writer that does not let go
    holder = SqliteWriteGate(str(tmp_path / "c.db"), timeout=5)
    impatient = SqliteWriteGate(str(tmp_path / "c.db"), timeout=0.3)
    assert holder.acquire()

    # When another writer waits for it
    started = time.monotonic()
    acquired = impatient.acquire()

    # Then it goes on without the gate after its timeout (SQLite's own locking decides then)
    assert acquired is False
    assert 0.25 <= time.monotonic() - started < 2
    holder.release()
    assert impatient.acquire()
    impatient.release()
    holder.close()
    impatient.close()


def test_threads_of_one_process_take_turns_on_one_gate(tmp_path: Path) -> None:
    # Given one gate shared by many threads of a process
    gate = SqliteWriteGate(str(tmp_path / "c.db"), timeout=5)
    inside = 0
    most = 0
    lock = threading.Lock()

    def write() -> None:
        nonlocal inside, most
        assert gate.acquire()
        with lock:
            inside += 1
            most = max(most, inside)
        time.sleep(0.01)
        with lock:
            inside -= 1
        gate.release()

    # When eight of them write at once
    threads = [threading.Thread(target=write) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=5)

    # Then never more than one was inside at a time
    assert most == 1
    gate.close()


def test_a_busy_process_lets_a_waiting_process_take_its_turn(tmp_path: Path) -> None:
    # Given two processes' gates on one file; the first has three threads writing back to
    # back, so it always has a writer ready the moment it commits
    busy = SqliteWriteGate(str(tmp_path / "c.db"), timeout=5)
    other = SqliteWriteGate(str(tmp_path / "c.db"), timeout=5)
    turns: list[str] = []
    waits: list[float] = []
    stop = time.monotonic() + 1.0

    def write(gate: SqliteWriteGate, name: str) -> None:
        while time.monotonic() < stop:
            asked = time.monotonic()
            assert gate.acquire()
            if name == "other":
                waits.append(time.monotonic() - asked)
            turns.append(name)
            time.sleep(0.005)
            gate.release()

    # When the second process's single writer also writes back to back
    threads = [threading.Thread(target=write, args=(busy, "busy")) for _ in range(3)]
    threads.append(threading.Thread(target=write, args=(other, "other")))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)

    # Then the two processes alternate: the lone writer is never starved by the busy one
    assert len(turns) > 40
    assert 0.35 <= turns.count("other") / len(turns) <= 0.65
    assert max(waits) < 0.1
    busy.close()
    other.close()


def _hold_in_child(gate: SqliteWriteGate, waited: Any) -> None:
    started = time.monotonic()
    ok = gate.acquire()
    waited.put((ok, time.monotonic() - started))
    gate.release()


def test_a_forked_child_waits_for_the_parent_like_any_other_process(tmp_path: Path) -> None:
    # Given a gate the parent uses and holds
    gate = SqliteWriteGate(str(tmp_path / "c.db"), timeout=5)
    assert gate.acquire()
    gate.release()
    assert gate.acquire()

    # When a forked child, which inherited the gate, asks for it
    context = multiprocessing.get_context("fork")
    waited = context.Queue()
    child = context.Process(target=_hold_in_child, args=(gate, waited), daemon=True)
    child.start()
    try:
        time.sleep(0.3)
        gate.release()
        ok, seconds = waited.get(timeout=10)
        child.join(timeout=10)
    finally:
        # A stuck child would keep this process's pipes (a browser driver's, say) open.
        if child.is_alive():
            child.kill()

    # Then the child got the gate, and only after the parent let go
    assert ok and seconds >= 0.25
    gate.close()
