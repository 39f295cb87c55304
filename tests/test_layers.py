"""The architecture, checked: the import-linter contracts of pyproject.toml hold (the engine
has no UI, the store never reaches up, the headless commands never load Textual), and every
error code in the code base is a member of `ErrorCode`, not a loose string."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from engine.errors import ErrorCode

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
KNOWN = {c.value for c in ErrorCode}


def test_the_layer_contracts_hold() -> None:
    done = subprocess.run(
        [str(LINT_IMPORTS)], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def _code_literals(path: Path) -> list[tuple[int, str]]:
    """`code="..."` arguments and `code = "..."` class attributes, with their lines."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if (isinstance(node, ast.keyword) and node.arg == "code") or (
            isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["code"]
        ):
            value = node.value
        else:
            continue
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            found.append((node.lineno if hasattr(node, "lineno") else 0, value.value))
    return found


def test_error_codes_are_members_of_the_enumeration() -> None:
    """No loose strings: every `code=` outside engine/errors.py names an ErrorCode member."""
    loose = [
        f"{path.relative_to(ROOT)}:{line}: {code!r}"
        + ("" if code in KNOWN else " (not even in ErrorCode)")
        for folder in ("engine", "axons_tui")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path != ROOT / "engine" / "errors.py"
        for line, code in _code_literals(path)
    ]
    assert not loose, "write code=ErrorCode.NAME instead of a string:\n" + "\n".join(loose)
