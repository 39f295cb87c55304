"""Remappable keys: every binding has an id, and `keys.toml` in the user config dir maps ids
to other keys (contract §7).

    [keys]
    "app.quit" = "ctrl+q"          # one key
    "axon.compose" = "i,c"         # or several, comma-separated

A bad file or entry is reported as a notice and ignored; the defaults stay.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from platformdirs import user_config_dir
from textual.binding import Binding, BindingType


def user_keys_file() -> Path:
    return Path(user_config_dir("axons")) / "keys.toml"


@dataclass
class Keymap:
    keys: dict[str, str] = field(default_factory=dict)  # binding id -> keys
    problems: list[str] = field(default_factory=list)


def binding_ids(bindings: Iterable[BindingType]) -> set[str]:
    return {b.id for b in bindings if isinstance(b, Binding) and b.id}


def load_keymap(path: Path, known_ids: set[str]) -> Keymap:
    """The user's remapped keys; unknown ids and malformed entries become problems."""
    keymap = Keymap()
    if not path.is_file():
        return keymap
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        keymap.problems.append(f"{path}: {e}; keys left as they are")
        return keymap
    table = doc.get("keys", {})
    if not isinstance(table, dict):
        keymap.problems.append(f'{path}: [keys] must be a table of binding id = "key"')
        return keymap
    for binding_id, keys in table.items():
        if not isinstance(keys, str) or not keys.strip():
            keymap.problems.append(f'{path}: {binding_id} needs a key such as "ctrl+q"')
        elif binding_id not in known_ids:
            keymap.problems.append(f"{path}: no binding has the id {binding_id!r}")
        else:
            keymap.keys[binding_id] = keys
    return keymap
