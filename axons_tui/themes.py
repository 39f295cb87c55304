"""Themes are files: the shipped ones in `themes/`, the user's in their config dir's `themes/`.

A theme file is TOML: `name`, `dark`, a `[colors]` table (Textual's base colours) and a
`[variables]` table (the console's own: origins, agent states, waiting, changed). A broken
file is skipped with a notice and the console falls back to the default, never fails to start.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from platformdirs import user_config_dir
from textual.theme import Theme

SHIPPED_THEMES = Path(__file__).resolve().parent.parent / "themes"
DEFAULT_THEME = "dark"

BASE_COLORS = (
    "primary",
    "secondary",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "success",
    "warning",
    "error",
    "boost",
)

# The console's own variables, and what a theme that lacks one gets (Textual's built-in
# themes lack them all): a base colour's variable, so every theme still renders.
CONSOLE_VARIABLES = {
    "origin-user": "$primary",
    "origin-agent": "$success",
    "origin-external": "$secondary",
    "origin-system": "$foreground-muted",
    "waiting": "$accent",
    "changed": "$success-muted",
    "state-starting": "$warning",
    "state-running": "$success",
    "state-paused": "$primary",
    "state-hibernated": "$secondary",
    "state-failed": "$error",
    "state-stopped": "$foreground-muted",
}


def user_themes_dir() -> Path:
    return Path(user_config_dir("axons")) / "themes"


@dataclass
class LoadedThemes:
    themes: dict[str, Theme] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # one line per file that was skipped


def theme_from_file(path: Path) -> Theme:
    """One theme file as a Textual `Theme`; ValueError says what is wrong with it."""
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"{path.name}: {e}") from None
    colors = doc.get("colors", {})
    variables = doc.get("variables", {})
    if not isinstance(colors, dict) or not isinstance(variables, dict):
        raise ValueError(f"{path.name}: [colors] and [variables] must be tables")
    if "primary" not in colors:
        raise ValueError(f"{path.name}: [colors] needs at least primary")
    unknown = set(colors) - set(BASE_COLORS)
    if unknown:
        raise ValueError(f"{path.name}: unknown colours {sorted(unknown)}; use {BASE_COLORS}")
    if not all(isinstance(v, str) for v in (*colors.values(), *variables.values())):
        raise ValueError(f'{path.name}: every colour is a string such as "#4EA8DE"')
    theme = Theme(
        name=str(doc.get("name") or path.stem),
        dark=bool(doc.get("dark", True)),
        variables=dict(variables),
        **colors,
    )
    try:
        theme.to_color_system().generate()  # a bad colour fails here, not at first paint
    except Exception as e:
        raise ValueError(f"{path.name}: {e}") from None
    return theme


def load_themes(*folders: Path) -> LoadedThemes:
    """Every `*.toml` theme in the folders, later folders overriding earlier names."""
    loaded = LoadedThemes()
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                theme = theme_from_file(path)
            except ValueError as e:
                loaded.problems.append(f"theme {e}; skipped")
                continue
            loaded.themes[theme.name] = theme
    return loaded
