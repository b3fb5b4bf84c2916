"""`coupons serve --workers N` whose supervisor dies: its workers end too, and free the port.

Killed alone (the OOM killer, `kill -9` of the main pid), the supervisor used to leave its
workers serving: the API answered, but jobs and webhooks (run by the supervisor) stopped, and
a restart failed on the taken port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.reliability.live import ServerProcess


def children_of(pid: int) -> set[int]:
    """The live processes whose parent is `pid` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, parent = stat.rsplit(")", 1)[1].split()[:2]
        if int(parent) == pid and state != "Z":
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def port_is_free(port: int) -> bool:
    try:
        socket.create_server(("127.0.0.1", port)).close()
    except OSError:
        return False
    return True


def test_the_workers_end_and_free_the_port_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    # given a server with two workers, both up
    server = ServerProcess(f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "serve.log", workers=2)
    server.start()
    try:
        assert server.process is not None
        supervisor = server.process.pid
        deadline = time.monotonic() + 30
        while len(workers := {p for p in children_of(supervisor) if p != supervisor}) < 2:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.1)
        assert httpx.get(f"{server.base_url}/health", timeout=10).status_code == 200
        # and a request in flight: its head and half its body sent, not answered yet
        body = b'{"couponCodes": ["A1"], "reason": "' + b"x" * 400 + b'"}'
        head = (
            f"POST /v2/coupon/revoke HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            "Authorization: Basic bm9ib2R5Om5vdGhpbmc=\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        held = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        held.sendall(head + body[:100])
        held.settimeout(0.5)
        with pytest.raises(TimeoutError):
            held.recv(1)

        # when only the supervisor is killed
        os.kill(supervisor, signal.SIGKILL)
        server.process.wait(timeout=10)

        # then the request in flight is still answered (in the API's envelope) once its body
        # arrives
        time.sleep(1.0)
        held.settimeout(10)
        held.sendall(body[100:])
        answer = b""
        while b"}" not in answer.partition(b"\r\n\r\n")[2]:  # head and body come apart
            chunk = held.recv(65536)
            if not chunk:
                break
            answer += chunk
        held.close()
        assert answer.startswith(b"HTTP/1.1 401"), answer
        assert b'"code":9010' in answer, answer
        # and every worker ends within seconds, and the port is free for a restart
        deadline = time.monotonic() + 15
        while any(alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [p for p in workers if alive(p)] == []
        assert port_is_free(server.port)
    finally:
        server.kill()
        if server.process is not None:  # the workers left behind, if any: same process group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.process.pid, signal.SIGKILL)
