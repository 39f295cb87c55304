"""Run the scripted model server: `PYTHONPATH=sample_agents python -m model_server`.

It listens on 127.0.0.1 only (`--port`, 0 picks a free one) or on a unix socket (`--uds`,
for agents in containers with no network), prints one line saying where, then serves until
SIGINT or SIGTERM. Requests are logged as JSON lines to `--log` (default stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
from pathlib import Path

import uvicorn

from .app import RequestLog, create_app

LOOPBACK = "127.0.0.1"


def listening_socket(port: int, uds: Path | None) -> tuple[socket.socket, str]:
    """A bound socket and the address to print: loopback TCP, or a unix socket anyone on this
    machine may connect to (the agent in a container runs as another user)."""
    if uds is not None:
        with contextlib.suppress(FileNotFoundError):
            uds.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(uds))
        os.chmod(uds, 0o666)
        return sock, f"unix:{uds}"
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, port))
    return sock, f"http://{LOOPBACK}:{sock.getsockname()[1]}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="model_server", description=__doc__)
    parser.add_argument("--port", type=int, default=18080, help="loopback port (0: any free)")
    parser.add_argument("--uds", type=Path, help="listen on this unix socket instead")
    parser.add_argument("--log", type=Path, help="append request lines here (default stderr)")
    args = parser.parse_args(argv)
    sink = args.log.open("a", encoding="utf-8") if args.log else sys.stderr
    sock, address = listening_socket(args.port, args.uds)
    sock.listen(128)  # connections queue from now on: the line below means "ready"
    print(f"model server on {address}", flush=True)
    config = uvicorn.Config(create_app(RequestLog(sink)), log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
