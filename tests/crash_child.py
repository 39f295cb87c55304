"""Child process for the crash tests: opens an Engine on HOME and publishes to every AXON_ID
from PUBLISHERS concurrent publishers each, forever, printing "INDEX SEQUENCE" (INDEX: the
Axon's position on the command line) the moment each publish returns. The parent kills it
(SIGKILL, or a simulated power loss); nothing here ever stops on its own.

Usage: python -m tests.crash_child HOME PUBLISHERS AXON_ID [AXON_ID ...]
"""

from __future__ import annotations

import asyncio
import sys

from engine import Draft, Engine


async def main(home: str, publishers: int, axon_ids: list[str]) -> None:
    async with Engine(home) as engine:

        async def publisher(index: int, axon_id: str, n: int) -> None:
            i = 0
            while True:
                i += 1
                draft = Draft.message(f"publisher {n} message {i}", source="crash-test")
                result = await engine.publish(axon_id, draft)
                sys.stdout.write(f"{index} {result.sequence}\n")
                sys.stdout.flush()

        sys.stdout.write("ready\n")
        sys.stdout.flush()
        await asyncio.gather(
            *(
                publisher(index, axon_id, n)
                for index, axon_id in enumerate(axon_ids)
                for n in range(publishers)
            )
        )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3:]))
