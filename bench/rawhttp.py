"""Just enough HTTP/1.1 over asyncio for load that must cost its own process little: requests
written as prepared bytes on keep-alive connections, responses read by Content-Length, SSE
streams read as raw bytes. A general client (httpx) spends more CPU per request than the
server figures can afford to share a machine with. Not a general client: no redirects, no
chunked responses except the SSE stream itself, no TLS.
"""

from __future__ import annotations

import asyncio
from collections import deque


def request_bytes(
    method: str, host: str, port: int, path: str, token: str, body: bytes = b""
) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
    if method != "GET":
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


def status_of(head: bytes) -> int:
    """The status code of a response head (`HTTP/1.1 200 OK...`)."""
    return int(head[9:12])


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
            break
    else:
        raise RuntimeError(f"a response without Content-Length: {head[:200]!r}")
    return status_of(head), await reader.readexactly(length)


class Pool:
    """Keep-alive connections to one server, opened as concurrency needs them (at most
    `size` at once), each carrying one request at a time."""

    def __init__(self, host: str, port: int, token: str, size: int = 64) -> None:
        self.host, self.port, self.token = host, port, token
        self._idle: deque[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = deque()
        self._slots = asyncio.Semaphore(size)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """(status, body) of one POST; raises on a connection failure."""
        data = request_bytes("POST", self.host, self.port, path, self.token, body)
        async with self._slots:
            if self._idle:
                reader, writer = self._idle.pop()
            else:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            try:
                writer.write(data)
                answer = await read_response(reader)
            except BaseException:
                writer.close()
                raise
            self._idle.append((reader, writer))
        return answer

    async def close(self) -> None:
        while self._idle:
            _, writer = self._idle.pop()
            writer.close()
            await writer.wait_closed()
