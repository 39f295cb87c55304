"""The console's shell: themes from files, remappable keys, help, the palette, quitting."""

from __future__ import annotations

from pathlib import Path

from axons_tui.screens.help import HelpScreen
from axons_tui.themes import SHIPPED_THEMES, load_themes
from tests.console_support import console_app, until


def test_the_shipped_themes_load_and_define_every_console_variable() -> None:
    loaded = load_themes(SHIPPED_THEMES)
    assert loaded.problems == []
    assert {"dark", "light", "high-contrast"} <= set(loaded.themes)
    from axons_tui.themes import CONSOLE_VARIABLES

    for theme in loaded.themes.values():
        assert set(CONSOLE_VARIABLES) <= set(theme.variables), theme.name


async def test_theme_by_name_and_a_users_own_theme_folder(tmp_path: Path) -> None:
    config = tmp_path / "config"
    (config / "themes").mkdir(parents=True)
    own = (SHIPPED_THEMES / "light.toml").read_text().replace('name = "light"', 'name = "mine"')
    (config / "themes" / "mine.toml").write_text(own)
    app = console_app(tmp_path / "home", tmp_config=config, theme="mine")
    async with app.run_test(size=(80, 24)):
        await until(lambda: app._session is not None)
        assert app.theme == "mine"
        assert {"dark", "light", "high-contrast", "mine"} <= set(app.console_themes())


async def test_a_broken_theme_file_falls_back_to_the_default_with_a_notice(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config"
    (config / "themes").mkdir(parents=True)
    (config / "themes" / "broken.toml").write_text('name = "broken"\n[colors]\nprimary = "#zz"')
    app = console_app(tmp_path / "home", tmp_config=config, theme="broken")
    async with app.run_test(size=(80, 24)):
        await until(lambda: app._session is not None)
        assert app.theme == "dark"
        assert any("broken.toml" in n for n in app.notices)
        assert any("no theme named 'broken'" in n for n in app.notices)


async def test_the_theme_switches_from_the_palette(tmp_path: Path) -> None:
    app = console_app(tmp_path / "home")
    async with app.run_test(size=(100, 30)) as pilot:
        await until(lambda: app._session is not None)
        await pilot.press("ctrl+p")
        await pilot.press(*"theme: high")
        await until(lambda: _palette_shows(app, "Theme: high-contrast"), what="the command")
        await pilot.press("enter")
        await until(lambda: app.theme == "high-contrast", what="the switch")


def _palette_shows(app: object, title: str) -> bool:
    from textual.command import CommandList
    from textual.css.query import NoMatches

    try:
        options = app.screen.query_one(CommandList)  # type: ignore[attr-defined]
    except NoMatches:  # the palette is not open yet
        return False
    return any(title in str(option.prompt) for option in options._options)


async def test_a_remapped_key_works_and_a_bad_entry_is_a_notice(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "keys.toml").write_text('[keys]\n"app.help" = "h"\n"app.nothing" = "x"\n')
    app = console_app(tmp_path / "home", tmp_config=config)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(lambda: app._session is not None)
        assert any("'app.nothing'" in n for n in app.notices)
        await pilot.press("h")
        await until(lambda: isinstance(app.screen, HelpScreen), what="help on h")
        await pilot.press("escape")
        await until(lambda: not isinstance(app.screen, HelpScreen), what="help closes")


async def test_help_lists_the_keys_of_the_screen_below(tmp_path: Path) -> None:
    app = console_app(tmp_path / "home")
    async with app.run_test(size=(80, 24)) as pilot:
        await until(lambda: app._session is not None)
        below = app.screen
        await pilot.press("question_mark")
        await until(lambda: isinstance(app.screen, HelpScreen))
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen) and help_screen.about is below
        shown = dict((what, keys) for keys, what in help_screen.key_rows())
        assert shown["Monitor"] == "m" and shown["Quit"] == "q" and shown["Help"] == "?"


async def test_quit_without_running_agents_does_not_ask(tmp_path: Path) -> None:
    app = console_app(tmp_path / "home")
    async with app.run_test(size=(80, 24)) as pilot:
        await until(lambda: app._session is not None)
        await pilot.press("q")
        await until(lambda: app.return_code == 0, what="the console quits")


async def test_quit_asks_first_while_the_embedded_engine_runs_agents(tmp_path: Path) -> None:
    from axons_tui.screens.quit import QuitScreen
    from tests.agents_support import triage_spec

    app = console_app(tmp_path / "home")
    async with app.run_test(size=(80, 24)) as pilot:
        await until(lambda: app._session is not None)
        backend = app.session.backend
        axon = await backend.create_axon("support")
        await backend.agents.add(triage_spec(axon.id, "process"))

        async def running() -> bool:
            return (await backend.agents.get(axon.id, "triage")).state == "running"

        await until(running, timeout=30, what="the agent runs")
        await pilot.press("q")
        await until(lambda: isinstance(app.screen, QuitScreen), what="the question")
        await pilot.press("n")
        await until(lambda: not isinstance(app.screen, QuitScreen), what="staying")
        assert app.return_code is None
        await pilot.press("q")
        await until(lambda: isinstance(app.screen, QuitScreen), what="the question again")
        await pilot.press("y")
        await until(lambda: app.return_code == 0, what="the console quits")
