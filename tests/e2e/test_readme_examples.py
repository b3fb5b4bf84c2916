"""Every `curl` example of the README runs as written, top to bottom, against a fresh demo.

The test does what a newcomer does: starts `coupons serve --demo` on a fresh database, runs
the `curl` line the server printed, pastes the printed `export` line in place of the README's
(which has a placeholder for the secret), then runs each shell block's `curl` commands and
variable assignments in order, in one shell, so variables carry over. Each answer must be
`success: true` with nothing failed; every `"field":value` shown on the `# →` line after a
command must be in its answer. Markers (documented in the README's "Development"):

- `# expect: CODE` on the line before a command: it answers with that error code, as a
  whole-request error or as a per-code failure group (an example failing on purpose).
- `<!-- readme-test: skip -->` on the line before a shell block: the block is not run (it
  needs state the demo does not create, say a webhook receiver). Use it sparingly.
- `<!-- readme-test: script -->` on the line before a shell block: the block runs whole, as
  one bash script with `set -euo pipefail` in an empty directory (for blocks that write files,
  run the `coupons` command or depend on timing); every command must succeed, and the files
  it writes are checked by `test_the_script_blocks_run_whole_and_write_what_they_say`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
SKIP_MARKER = "<!-- readme-test: skip -->"
SCRIPT_MARKER = "<!-- readme-test: script -->"
ASSIGNMENT = re.compile(r"^(export\s+)?[A-Za-z_][A-Za-z0-9_]*=")
SHOWN_PAIR = re.compile(r'"(\w+)":("[^"…]*"|-?\d+(?:\.\d+)?|true|false|null)(?=[,}\]\s:]|$)')

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


@dataclass
class Example:
    """One command of the README with what its answer must show."""

    line: int
    command: str
    expect: int | None = None
    shown: str = ""


def examples(text: str) -> list[Example]:
    """The runnable commands of every ```sh block: curl calls and variable assignments."""
    found: list[Example] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() != "```sh":
            i += 1
            continue
        skip = i > 0 and lines[i - 1].strip() in (SKIP_MARKER, SCRIPT_MARKER)
        i += 1
        expect: int | None = None
        while i < len(lines) and lines[i].strip() != "```":
            start, command = i, lines[i].strip()
            while command.endswith("\\") and i + 1 < len(lines):
                i += 1
                command = command[:-1].rstrip() + " " + lines[i].strip()
            i += 1
            if command.startswith("# expect:"):
                expect = int(command.removeprefix("# expect:").split()[0])
            elif command.startswith("# →") and found and found[-1].line >= start - 3:
                found[-1].shown = command
            elif not skip and ("curl " in command or ASSIGNMENT.match(command)):
                found.append(Example(start + 1, command, expect))
                expect = None
        i += 1
    return found


def script_blocks(text: str) -> list[tuple[int, str]]:
    """The shell blocks marked to run whole: (line of the fence, the block's text)."""
    lines = text.splitlines()
    found = []
    for i, line in enumerate(lines):
        if line.strip() == "```sh" and i > 0 and lines[i - 1].strip() == SCRIPT_MARKER:
            end = lines.index("```", i + 1)
            found.append((i + 1, "\n".join(lines[i + 1 : end])))
    return found


@dataclass
class Demo:
    url: str
    export: str  # the `export U=… P=… API=…` line the server printed
    curl: str  # the ready revoke line it printed


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`coupons serve --demo` on a fresh SQLite file (what `make run` does), on a free port."""
    workdir = tmp_path_factory.mktemp("readme")
    port = free_port()
    log = workdir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "coupons.entrypoints.cli", "serve", "--demo", "--no-worker",
             "--db", f"sqlite:///{workdir / 'coupons.db'}", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
            env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start within 60 s"
            time.sleep(0.2)
        printed = log.read_text().splitlines()
        export = next(line for line in printed if line.startswith("export U="))
        curl = next(line for line in printed if line.startswith("curl "))
        yield Demo(url, export, curl)
    finally:
        process.terminate()
        process.wait(timeout=30)


def run_in_one_shell(commands: list[str]) -> list[str]:
    """Run the commands in order in one bash, so assignments carry over; output per command."""
    script = "".join(f"printf '\\n@@{n}@@\\n'\n{command}\n" for n, command in enumerate(commands))
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=120, env={**os.environ}
    )
    parts = re.split(r"\n@@(\d+)@@\n", "\n" + done.stdout)
    outputs = {int(parts[k]): parts[k + 1].strip() for k in range(1, len(parts) - 1, 2)}
    assert len(outputs) == len(commands), done.stderr
    return [outputs[n] for n in range(len(commands))]


def check(example: Example, output: str) -> None:
    """The answer is what the README promises (see the module docstring)."""
    where = f"README.md line {example.line}: {example.command}\n→ {output[:600]}"
    body: dict[str, Any] = json.loads(output)
    entity = body.get("entity") or {}
    if example.expect is not None:
        groups = entity.get("failedToRevoke") or entity.get("failedToReinstate") or []
        codes = {e["code"] for e in body.get("errors", [])} | {g["errorCode"] for g in groups}
        assert example.expect in codes, where
    else:
        assert body["success"] is True, where
        if "failedCount" in entity:
            assert entity["failedCount"] == 0 and entity["totalCount"] > 0, where
    for name, value in SHOWN_PAIR.findall(example.shown):
        assert f'"{name}":{value}' in output, f"shown {name}={value} missing; {where}"


def test_every_curl_example_of_the_readme_runs_as_written_against_a_fresh_demo(
    demo: Demo,
) -> None:
    # given the README's commands, with the printed export line pasted in place of its own
    found = examples(README.read_text())
    assert sum("curl " in e.command for e in found) >= 15
    commands = []
    for example in found:
        if example.command.startswith("export U="):
            assert example.command.split()[:2] == demo.export.split()[:2]
            example.command = demo.export
        commands.append(example.command)

    # when the server's own curl line runs first (as a newcomer does), then every example
    outputs = run_in_one_shell([demo.curl, *commands])

    # then the printed line revokes a coupon, and every example answers as documented
    printed = json.loads(outputs[0])
    assert printed["success"] and printed["entity"]["failedCount"] == 0, outputs[0]
    for example, output in zip(found, outputs[1:], strict=True):
        if ASSIGNMENT.match(example.command):
            assert output == "", f"README.md line {example.line} printed {output!r}"
        else:
            check(example, output)


def test_the_markers_are_read_as_documented() -> None:
    # given a README fragment with an expected error and a skipped block
    text = "\n".join(
        [
            "```sh",
            "export A=1",
            "# expect: 701",
            "curl -s $API/x \\",
            '  -d "{}"',
            '# → {"entity":{"id":3}}',
            "coupons db upgrade",
            "```",
            SKIP_MARKER,
            "```sh",
            "curl -s $API/needs-a-receiver",
            "```",
        ]
    )

    # when it is parsed, then continuation lines join, markers attach, skipped blocks vanish
    found = examples(text)
    assert [(e.command, e.expect) for e in found] == [
        ("export A=1", None),
        ('curl -s $API/x -d "{}"', 701),
    ]
    assert found[1].shown == '# → {"entity":{"id":3}}'


# The files the script blocks write: their header row, and how many rows at least (a job's
# report fetched right after the upload may hold only the lines done so far: none).
CSV_FILES = {
    "series-1.csv": ("couponId,couponCode,seriesId,state,issuedToUserId", 2),
    "report.csv": ("code,outcome,errorCode,couponId,issuedToUserId", 1),
}


def test_the_script_blocks_run_whole_and_write_what_they_say(demo: Demo, tmp_path: Path) -> None:
    # given the README's blocks that write files or watch a job, each with the printed export
    blocks = script_blocks(README.read_text())
    assert len(blocks) >= 2
    written = {name: False for name in CSV_FILES}
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    for line, block in blocks:
        workdir = tmp_path / f"block-{line}"
        workdir.mkdir()
        # when each runs whole, as a reader pastes it, in an empty directory
        script = f"set -euo pipefail\n{demo.export}\n{block}\n"
        done = subprocess.run(
            ["bash", "-c", script], cwd=workdir, capture_output=True, text=True, timeout=120,
            env={**os.environ, "PATH": path, "COLUMNS": "200"},
        )  # fmt: skip
        # then every command succeeded, and every answer that is JSON is a documented one
        where = f"README.md block at line {line}:\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}"
        assert done.returncode == 0, where
        assert "Traceback" not in done.stderr, where
        for answer in re.findall(r'\{"entity".*?"success":(?:true|false)\}', done.stdout):
            body = json.loads(answer)
            codes = {e["code"] for e in body["errors"]}
            # cancel and undo of a tiny job race with the worker: 9026 names that, nothing else
            assert body["success"] or codes <= {9026}, f"{answer}\n{where}"
        # and the files it writes hold a header row, then the rows it promises
        for name, (header, at_least) in CSV_FILES.items():
            if (workdir / name).exists():
                written[name] = True
                rows = (workdir / name).read_text().splitlines()
                assert rows[0] == header and len(rows) >= at_least, where
    assert all(written.values()), written


def _raw_answer(demo: Demo, raw: bytes) -> bytes:
    """What the server answers to `raw` bytes, read until it closes the connection (as it
    does after a request it cannot parse)."""
    import socket

    host, port = demo.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize(
    "raw",
    [
        b"FOO /health HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /v2/coupon/revoke HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{}",
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n",
        b"GET /v2/coupon/search?code=" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=["unknown-method", "negative-length", "nul-in-header", "request-line-too-long"],
)
def test_a_request_the_server_cannot_parse_is_answered_in_the_envelope(
    demo: Demo, raw: bytes
) -> None:
    # uvicorn answered these in plain text with no request id, outside the contract
    head, _, body = _raw_answer(demo, raw).partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])

    assert lines[0] == "HTTP/1.1 400 Bad Request"
    assert headers["content-type"] == "application/json"
    assert re.fullmatch("[0-9a-f]{32}", headers["x-request-id"])
    envelope = json.loads(body)
    assert envelope["success"] is False
    assert [e["code"] for e in envelope["errors"]] == [9002]
    assert envelope["errors"][0]["message"].startswith("request: not a valid HTTP/1.1 request")


@pytest.mark.parametrize(
    "raw",
    [
        b"FOO /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: my-req-1\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nx-request-id:my-req-1 \r\nX-Bad: a\x00b\r\n\r\n",
        b"POST /v2/coupon/revoke HTTP/1.1\r\nX-REQUEST-ID: my-req-1\r\nContent-Length: -1\r\n\r\n",
    ],
    ids=["unknown-method", "nul-in-header", "negative-length"],
)
def test_a_request_the_server_cannot_parse_still_gets_its_own_request_id_back(
    demo: Demo, raw: bytes
) -> None:
    # a new id was made although the client's header line was readable (spec §1: echo it)
    head = _raw_answer(demo, raw).partition(b"\r\n\r\n")[0].decode()

    assert head.startswith("HTTP/1.1 400 Bad Request")
    assert "\r\nx-request-id: my-req-1\r\n" in head


def test_a_bad_request_pipelined_after_a_good_one_never_gets_the_good_ones_id(
    demo: Demo,
) -> None:
    # given a good request with an id, a body that looks like a header, and then a request
    # the server cannot parse, all in one write
    good = (
        b"POST /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: good-1\r\n"
        b"Content-Length: 26\r\n\r\nX-Request-Id: from-body\r\n\r\n"
    )
    answer = _raw_answer(demo, good + b"FOO /health HTTP/1.1\r\nHost: x\r\n\r\n").decode()

    # then the bad one is answered under an id of its own: neither the good request's (which
    # ran: the 400 would have told its client it could not be read) nor text from its body
    refused = answer[answer.index("HTTP/1.1 400 Bad Request") :]
    assert re.search(r"\r\nx-request-id: [0-9a-f]{32}\r\n", refused), answer


def test_requests_pipelined_before_one_the_server_cannot_parse_are_answered_first(
    demo: Demo,
) -> None:
    # given two good requests and then one the server cannot parse, all in one write
    good = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: good-%d\r\n\r\n"
    raw = good % 1 + good % 2 + b"FOO /health HTTP/1.1\r\nHost: x\r\n\r\n"

    answer = _raw_answer(demo, raw).decode()

    # then both good ones are answered, in order, before the refusal that closes the
    # connection (it was written at once: the good ones ran, and their answers were lost)
    assert re.findall(r"HTTP/1.1 (\d{3}) ", answer) == ["200", "200", "400"], answer
    assert answer.index("good-1") < answer.index("good-2") < answer.index(" 400 ")


@pytest.mark.parametrize(
    "bad",
    [
        b"POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n",
        b"POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc",
    ],
    ids=["bad-chunk", "unknown-transfer-encoding"],
)
def test_a_request_whose_body_cannot_be_read_waits_for_the_answers_before_it(
    demo: Demo, bad: bytes
) -> None:
    # given a good request, then one whose head reads but whose body does not, in one write
    good = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: good-1\r\n\r\n"

    answer = _raw_answer(demo, good + bad).decode()

    # then the good one is answered before the refusal (the refusal went out at once, and
    # the good one's answer was lost)
    assert re.findall(r"HTTP/1.1 (\d{3}) ", answer) == ["200", "400"], answer


def test_a_websocket_upgrade_is_an_ordinary_request_answered_by_the_app(demo: Demo) -> None:
    # uvicorn answered it itself: 403 in plain text with no request id (there is no socket
    # endpoint to upgrade to)
    import socket

    host, port = demo.url.removeprefix("http://").split(":")
    raw = (
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"X-Request-Id: ws-probe-1\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(raw)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        while len(body) < int(headers["content-length"]):
            body += sock.recv(65536)

    assert lines[0] == "HTTP/1.1 200 OK"
    assert headers["x-request-id"] == "ws-probe-1"
    assert json.loads(body)["entity"]["status"] == "ok", body


@pytest.mark.parametrize("hosts", [b"", b"Host: a\r\nHost: b\r\n"], ids=["no-host", "two-hosts"])
def test_an_http_1_1_request_without_exactly_one_host_is_refused_in_the_envelope(
    demo: Demo, hosts: bytes
) -> None:
    import socket

    host, port = demo.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\n" + hosts + b"\r\n")
        answer = b""
        while chunk := sock.recv(65536):  # the server closes the connection after it
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")

    assert head.startswith(b"HTTP/1.1 400 "), answer[:200]
    envelope = json.loads(body)
    assert [e["code"] for e in envelope["errors"]] == [9002]
    assert envelope["errors"][0]["message"].startswith("Host:")
