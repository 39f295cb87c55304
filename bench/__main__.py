"""`python -m bench`: measure every figure (or `--only NAME`) with its ceiling, in this run,
and print a table, or one JSON object per figure per line with `--json`."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench.figures import FIGURES
from bench.harness import LOOP, Figure, Sizes, filesystem_of


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Axons engine benchmarks. Each figure runs on a real file in a fresh temp "
        "home and is compared with a ceiling measured in the same run; on a shared machine "
        "trust the ratios more than the absolute numbers.",
    )
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per figure per line instead of a table"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=list(FIGURES),
        metavar="NAME",
        help=f"run only this figure (repeatable): {', '.join(FIGURES)}",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes, same shape (for a smoke run)"
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where the temp homes go (default: the system temp dir); "
        "must be a real disk, not tmpfs",
    )
    return parser.parse_args(argv)


def _number(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    text = f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"
    return f"{text} {unit}".rstrip()


def _detail(d: dict[str, Any]) -> str:
    parts = []
    for k, v in d.items():
        if isinstance(v, float):
            v = _number(v)
        parts.append(f"{k}={v}")
    return ", ".join(parts)


class Table:
    """Prints each figure as soon as it is measured."""

    COLUMNS = ("figure", "value", "ceiling", "ratio", "target", "ok")
    WIDTHS = (22, 14, 14, 6, 31, 3)

    def __init__(self) -> None:
        self._row(self.COLUMNS)
        print("  ".join("-" * w for w in self.WIDTHS))

    def _row(self, cells: tuple[str, ...]) -> None:
        print("  ".join(c.ljust(w) for c, w in zip(cells, self.WIDTHS, strict=True)).rstrip())

    def figure(self, f: Figure) -> None:
        target = "-"
        if f.target is not None:
            op = ">=" if f.better == "higher" else "<="
            target = f"{op} {_number(f.target, f.unit)}"
            if f.target_ratio is not None:
                target += f", ratio >= {f.target_ratio:g}"
        ok = {True: "yes", False: "NO", None: "-"}[f.meets_target]
        ratio = "-" if f.ratio is None else f"{f.ratio:.3f}"
        self._row((f.name, _number(f.value, f.unit), _number(f.ceiling, f.unit), ratio, target, ok))
        print(f"    ceiling: {f.ceiling_name}")
        print(f"    {_detail(f.detail)}")
        sys.stdout.flush()

    def error(self, name: str, message: str) -> None:
        self._row((name, "ERROR", "", "", "", ""))
        print(f"    {message}")
        sys.stdout.flush()

    def footer(self, fs: str, seconds: float) -> None:
        print()
        print(
            "ratio: throughput value/ceiling, latency ceiling/value; higher is better and "
            "1.0 means as good as bare SQLite on this machine."
        )
        print(f"loop={LOOP}  fs={fs}  total {seconds:.1f} s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = Sizes.quick_sizes() if args.quick else Sizes()
    names = args.only or list(FIGURES)
    fs = filesystem_of(args.dir or Path(tempfile.gettempdir()))
    table = None if args.json else Table()
    failed = False
    started = time.perf_counter()
    for name in names:
        try:
            figure = FIGURES[name](sizes, args.dir)
        except Exception as e:  # report it and go on with the other figures
            failed = True
            message = f"{type(e).__name__}: {e}"
            traceback.print_exc(file=sys.stderr)
            if table is None:
                print(json.dumps({"name": name, "value": None, "error": message}), flush=True)
            else:
                table.error(name, message)
            continue
        if table is None:
            line = {**figure.as_json(), "loop": LOOP, "fs": fs, "quick": sizes.quick}
            print(json.dumps(line), flush=True)
        else:
            table.figure(figure)
    if table is not None:
        table.footer(fs, time.perf_counter() - started)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
