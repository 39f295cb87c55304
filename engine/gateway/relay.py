"""Inside a Docker agent's container (network none): the agent's own loopback to the
engine's gateway. Standard library only: it runs on the image's python3, from the agent's
gateway folder mounted read-only (engine/gateway/server.py).

    python3 /axons-gateway/relay.py PORT SOCKET -- COMMAND [ARG...]

It binds 127.0.0.1:PORT first, so the agent never starts before its gateway answers, then
forks: the child carries each connection to the unix socket SOCKET (the engine's listener for
this agent); the parent becomes COMMAND (exec), so the agent stays the container's main
process, gets its signals and its stdio, and the container ends when it does.
"""

import asyncio
import contextlib
import os
import socket
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _serve(listener: socket.socket, path: str) -> None:
    async def carry(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(path)
        except OSError:
            writer.close()
            return
        for s in (writer, up_writer):
            sock = s.get_extra_info("socket")
            if sock is not None and sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(carry, sock=listener)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> None:
    if len(argv) < 4 or argv[2] != "--":
        sys.exit("usage: relay.py PORT SOCKET -- COMMAND [ARG...]")
    port, path, command = int(argv[0]), argv[1], argv[3:]
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    if os.fork() == 0:  # the relay: off the agent's stdio, which is its protocol
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1):
            os.dup2(devnull, fd)
        os.setsid()
        asyncio.run(_serve(listener, path))
        os._exit(0)
    listener.close()
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
