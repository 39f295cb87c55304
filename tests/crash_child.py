"""Child process for test_crash.py: opens an Engine on HOME and publishes to AXON_ID from 50
concurrent publishers forever, printing each acknowledged sequence the moment its publish
returns. The parent kills it with SIGKILL; nothing here ever stops on its own.

Usage: python -m tests.crash_child HOME AXON_ID
"""

from __future__ import annotations

import asyncio
import sys

from engine import Draft, Engine

PUBLISHERS = 50


async def main(home: str, axon_id: str) -> None:
    async with Engine(home) as engine:

        async def publisher(n: int) -> None:
            i = 0
            while True:
                i += 1
                draft = Draft.message(f"publisher {n} message {i}", source="crash-test")
                result = await engine.publish(axon_id, draft)
                sys.stdout.write(f"{result.sequence}\n")
                sys.stdout.flush()

        sys.stdout.write("ready\n")
        sys.stdout.flush()
        await asyncio.gather(*(publisher(n) for n in range(PUBLISHERS)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
