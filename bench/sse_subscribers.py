"""Many SSE subscribers in one process of their own (run by bench/sse.py, never by hand):

    python -m bench.sse_subscribers HOST PORT AXON_ID AFTER_SEQUENCE SUBSCRIBERS OUT_FILE

with the bearer token in $AXONS_BENCH_TOKEN. Each subscriber streams
/v1/axons/AXON_ID/subscribe/sse?after_sequence=AFTER_SEQUENCE. Protocol on stdin/stdout:
prints `ready` once every stream has its 200 response; then reads one line, the sequence the
publisher ended at; once every stream has received it, or failed, or after a timeout, writes
every latency (nanoseconds, native int64) to OUT_FILE, prints one JSON line and exits.

Kept cheap so that it is not what is measured: raw asyncio protocols, and per network read
two regular-expression scans over all the complete frames it brought. Each frame's arrival
time is that of the read that completed it, and its latency is that time minus the
`time.time_ns()` the publisher put in the payload (`{"t":NS,...}`; t=0 marks a warm-up event
that is checked but not timed). Every stream must see every sequence, in order, once.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from array import array
from pathlib import Path
from typing import Any

import orjson
import uvloop

from bench.rawhttp import request_bytes, status_of

ID = re.compile(rb"^id: (\d+)$", re.M)
SENT_NS = re.compile(rb'\\"t\\":(\d+)')  # inside the event's payload, a JSON string
FINISH_TIMEOUT_S = 30.0


class _Stream(asyncio.Protocol):
    def __init__(self, request: bytes, after: int, latencies: array[int]) -> None:
        loop = asyncio.get_running_loop()
        self.request = request
        self.next_sequence = after + 1
        self.latencies = latencies
        self.frames = 0
        self.error: str | None = None
        self.started: asyncio.Future[None] = loop.create_future()
        self._head: bytes | None = None
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        buffer = self._buffer + data
        if self._head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self._buffer = buffer
                return
            self._head, buffer = buffer[:end], buffer[end + 4 :]
            if status_of(self._head) != 200:
                self._fail(f"subscribe answered {self._head[:200]!r}")
                return
            self.started.set_result(None)
        cut = buffer.rfind(b"\n\n")  # frames end with a blank line; HTTP chunks hold whole frames
        if cut < 0:
            self._buffer = buffer
            return
        block, self._buffer = buffer[:cut], buffer[cut + 2 :]
        sequences = ID.findall(block)
        if sequences:
            first = self.next_sequence
            if list(map(int, sequences)) != list(range(first, first + len(sequences))):
                self._fail(
                    f"expected sequences from {first}, got {sequences[0]!r}..."
                    f"{sequences[-1]!r} in {len(sequences)} frames"
                )
            self.next_sequence = int(sequences[-1]) + 1
            self.frames += len(sequences)
        self.latencies.extend(now - int(t) for t in SENT_NS.findall(block) if t != b"0")
        if b"event: error" in block:
            self._fail(f"the server ended the stream: {block[-300:]!r}")

    def _fail(self, message: str) -> None:
        self.error = self.error or message
        if not self.started.done():
            self.started.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(f"the stream closed ({exc or 'EOF'}) before sequence {self.next_sequence}")


async def _connect(stream: _Stream, host: str, port: int) -> asyncio.BaseTransport:
    transport, _ = await asyncio.get_running_loop().create_connection(lambda: stream, host, port)
    return transport


async def _main(
    host: str, port: int, axon_id: str, after: int, count: int, out: Path
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    token = os.environ["AXONS_BENCH_TOKEN"]
    path = f"/v1/axons/{axon_id}/subscribe/sse?after_sequence={after}"
    request = request_bytes("GET", host, port, path, token)
    latencies: array[int] = array("q")
    streams = [_Stream(request, after, latencies) for _ in range(count)]
    transports = [await _connect(s, host, port) for s in streams]
    await asyncio.gather(*(s.started for s in streams))
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    cpu = time.process_time()

    line = await loop.run_in_executor(None, sys.stdin.readline)
    final = int(line)
    deadline = time.monotonic() + FINISH_TIMEOUT_S
    while any(s.next_sequence <= final and s.error is None for s in streams):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.005)
    cpu = time.process_time() - cpu
    errors = [
        s.error or f"stopped at sequence {s.next_sequence - 1} of {final}"
        for s in streams
        if s.error or s.next_sequence <= final
    ]
    for t in transports:
        t.close()
    with out.open("wb") as f:
        latencies.tofile(f)
    return {
        "frames": sum(s.frames for s in streams),
        "cpu_s": cpu,
        "errors": errors[:1],
        "failed_streams": len(errors),
    }


def main() -> None:
    host, port, axon_id, after, count, out = sys.argv[1:7]
    result = uvloop.run(_main(host, int(port), axon_id, int(after), int(count), Path(out)))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
