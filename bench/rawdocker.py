"""Ceilings for the agent figures: what the Docker engine itself does on this machine,
through the bare Docker SDK (blocking calls, no engine code): the `unpause` call alone on
a paused container, and the `start` of a created container until its first line of output.
One sample at a time, so a figure can take them between its own wakes, under the same
conditions. The containers use the echo agent's image and the hardening the engine gives
agents (minus the /work volume), and carry the run's sweep label.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

import docker

from bench.harness import ms

SLEEPER = ["python3", "-c", "import time; time.sleep(86400)"]
PRINTER = ["python3", "-u", "-c", "print('ready')"]
SETTLE_S = 0.3  # let a fresh container's process start before pausing it
# Between the calls of a cycle: dockerd also applies containerd's paused/resumed events to
# its state when they arrive, after the call has returned, so back-to-back cycles race
# ("Container ... is not paused"); these gaps let each event land first.
PAUSED_GAP_S = 0.03
RUNNING_GAP_S = 0.02
FIRST_LINE_TIMEOUT_S = 30.0


def _host_config(api: docker.APIClient) -> dict[str, Any]:
    return api.create_host_config(  # type: ignore[no-any-return]
        network_mode="none",
        read_only=True,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        mem_limit="512m",
        memswap_limit="512m",
        nano_cpus=1_000_000_000,
        pids_limit=256,
        tmpfs={"/tmp": "rw,nosuid,nodev,size=64m"},
        init=True,
    )


def _create(api: docker.APIClient, image: str, command: list[str], labels: dict[str, str]) -> str:
    found = api.create_container(
        image, command, user="65534:65534", labels=labels, host_config=_host_config(api)
    )
    return str(found["Id"])


class PausedContainer:
    """An idle container for the unpause ceiling, started on creation; `close()` removes it
    (the sweep would too)."""

    def __init__(self, client: docker.DockerClient, image: str, labels: dict[str, str]) -> None:
        self.api = client.api
        self.id = _create(self.api, image, SLEEPER, labels)
        self.api.start(self.id)
        time.sleep(SETTLE_S)

    def unpause_ms(self) -> float:
        """Pause it (untimed), then time the unpause call alone."""
        self.api.pause(self.id)
        time.sleep(PAUSED_GAP_S)
        started = time.perf_counter()
        self.api.unpause(self.id)
        took = ms(time.perf_counter() - started)
        time.sleep(RUNNING_GAP_S)
        return took

    def close(self) -> None:
        self.api.remove_container(self.id, force=True, v=True)


def start_ms(client: docker.DockerClient, image: str, labels: dict[str, str]) -> float:
    """Create a container that prints one line and attach to its output (both untimed),
    then time the `start` call plus reading that line; the container is removed after."""
    api = client.api
    cid = _create(api, image, PRINTER, labels)
    try:
        sock = api.attach_socket(cid, params={"stdout": 1, "stderr": 1, "stream": 1})
        raw: socket.socket = getattr(sock, "_sock", sock)
        try:
            started = time.perf_counter()
            api.start(cid)
            _first_line(raw)
            return ms(time.perf_counter() - started)
        finally:
            sock.close()
    finally:
        api.remove_container(cid, force=True, v=True)


def _first_line(raw: socket.socket) -> None:
    """Read the multiplexed attach stream (8-byte frame headers) until a newline arrives."""
    raw.settimeout(FIRST_LINE_TIMEOUT_S)
    buffer = b""
    while True:
        while len(buffer) >= 8:
            size = struct.unpack(">I", buffer[4:8])[0]
            if len(buffer) < 8 + size:
                break
            if b"\n" in buffer[8 : 8 + size]:
                return
            buffer = buffer[8 + size :]
        chunk = raw.recv(65536)
        if not chunk:
            raise RuntimeError("the bare container closed its output before printing a line")
        buffer += chunk
