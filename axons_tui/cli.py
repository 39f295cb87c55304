"""The `axons` command (placeholder until the CLI issue): runs the headless demo."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from axons_tui.demo import main as demo

    return demo(argv if argv is not None else sys.argv[1:])
