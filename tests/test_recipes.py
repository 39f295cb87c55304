"""The agent recipes (engine.recipes, sample_agents/{claude,opencode,gemini}): their specs load
as the CLI loads them, their npm pins are exact, an installed pin needs no npm, and the
commands that build them say clearly what is wrong."""

from __future__ import annotations

import json
import subprocess

import pytest

from axons_tui.commands import load_agent_specs
from engine.images import ImageBuildError
from engine.recipes import agent_command, bin_dir, node_binary, npm_install, recipe_dir, recipes
from tests.http_support import AXONS, clean_env


def test_the_three_recipes_and_their_specs() -> None:
    assert recipes() == ["claude", "gemini", "opencode"]
    for name in recipes():
        (spec,) = load_agent_specs(recipe_dir(name) / "agent.toml")
        assert spec.name == name and spec.protocol == "acp"
        assert spec.image == f"axons/{name}:latest"
        assert spec.command == agent_command(name)


def test_pins_are_exact_versions() -> None:
    """npm on Node 20 silently picks an older claude-agent-acp unless the version is exact."""
    for name in recipes():
        pins = json.loads((recipe_dir(name) / "package.json").read_text())["dependencies"]
        assert all(version[0].isdigit() for version in pins.values()), pins
    claude = json.loads((recipe_dir("claude") / "package.json").read_text())
    assert claude["dependencies"] == {"@agentclientprotocol/claude-agent-acp": "0.101.0"}


def test_an_installed_pin_needs_no_npm(monkeypatch: pytest.MonkeyPatch) -> None:
    npm_install("claude")  # what `make test` did already (scripts/npm-agents)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert (npm_install("claude") / "node_modules").is_dir()
    assert (bin_dir("claude") / "claude-agent-acp").exists()
    with pytest.raises(ImageBuildError, match=r"need Node\.js and npm"):
        node_binary()


def test_images_build_names_what_it_knows() -> None:
    result = subprocess.run(
        [AXONS, "images", "build", "nosuch"], capture_output=True, text=True, env=clean_env()
    )
    assert result.returncode == 1
    assert "no agent image named nosuch" in result.stderr
    assert "claude" in result.stderr and "triage" in result.stderr
    with pytest.raises(ImageBuildError, match="no agent recipe named 'nosuch'"):
        recipe_dir("nosuch")
