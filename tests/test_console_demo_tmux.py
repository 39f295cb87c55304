"""`axons demo` end to end, in a real terminal (tmux): the console opens on the demo's three
Axons, their panes fill with events, a reply typed into the support Axon's composer with the
contract's keys reaches the Axon (`axons tail --json` sees it, from source `tui`) and wakes
the waiting agent (`agent.resumed`, triggered by that reply). However the demo ends (`q`,
Ctrl-C typed, SIGTERM), its home and its containers are gone afterwards.

No tmux or no Docker is a failure here, not a skip: `scripts/system-deps` installs both."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import docker
import pytest

pytest_plugins = ["tests.agents_support"]  # docker_client (the images are built first)

from tests.agents_support import home_id_of, remove_home_containers  # noqa: E402
from tests.http_support import AXONS, ROOT, axons  # noqa: E402

T = TypeVar("T")
SIZE = (120, 36)  # two columns of panes: the four demo Axons on one page
WAIT_S = 120.0  # reached only when something is broken
REPLY = "Confirmed: only exports above 100MB."


def wait_for(probe: Callable[[], T | None], what: str, seconds: float = WAIT_S) -> T:
    """Poll `probe` until it gives something, or fail saying what did not happen."""
    deadline = time.monotonic() + seconds
    while (found := probe()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:g} s waiting for {what}")
        time.sleep(0.1)
    return found


class Terminal:
    """`axons demo` in a tmux session of its own tmux server (so nothing else is touched);
    the exit code lands in a file when the demo ends."""

    def __init__(self, home: Path, status: Path) -> None:
        self.socket = status.with_name("tmux.sock")  # its own server, gone with the folder
        self.status = status
        self.home_id: str | None = None  # known once the demo has started
        # pytest's COLUMNS and LINES would win over the terminal's size (shutil reads them)
        demo = f"env -u COLUMNS -u LINES {AXONS} demo --home {home}"
        self._tmux(
            "start-server", ";", "set-option", "-g", "history-limit", "3000", ";",
            "new-session", "-d", "-s", "demo", "-x", str(SIZE[0]), "-y", str(SIZE[1]),
            f"cd {ROOT} && {demo}; echo $? > {status}",
            ";", "set-option", "-t", "demo", "remain-on-exit", "on",  # to read a failure
            check=True,
        )  # fmt: skip

    def _tmux(self, *args: str, check: bool = False) -> str:
        tmux = shutil.which("tmux")
        if tmux is None:
            pytest.fail("tmux is missing: run scripts/system-deps (it installs it)", pytrace=False)
        done = subprocess.run(
            [tmux, "-S", str(self.socket), "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0 or not check, f"tmux {args[0]}: {done.stderr}"
        return done.stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "demo")

    def keys(self, *keys: str) -> None:
        """tmux key names: Tab, Enter, Escape, C-c, or a character."""
        for key in keys:
            self._tmux("send-keys", "-t", "demo", key)
            time.sleep(0.2)  # one key per frame, as a person types: not a pass condition

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", "demo", "-l", text)

    def demo_pid(self) -> int:
        """The `axons demo` process (the pane runs a shell around it)."""
        shell = self._tmux("display-message", "-p", "-t", "demo", "#{pane_pid}").strip()
        children = subprocess.run(
            ["pgrep", "-P", shell], capture_output=True, text=True, check=True
        ).stdout.split()
        return int(children[0])

    def exit_code(self) -> int:
        """The demo's exit code, once it has ended."""

        def written() -> int | None:
            text = self.status.read_text().strip() if self.status.exists() else ""
            return int(text) if text else None

        return wait_for(written, "the demo to end")

    def close(self) -> None:
        self._tmux("kill-server")

    def showing(self, *texts: str, what: str) -> str:
        """The screen, once every one of `texts` is on it."""

        def on_screen() -> str | None:
            shown = self.screen()
            return shown if all(t in shown for t in texts) else None

        try:
            return wait_for(on_screen, f"{what} on the screen")
        except AssertionError as e:
            history = self._tmux("capture-pane", "-p", "-S", "-3000", "-t", "demo")
            raise AssertionError(f"{e}; the terminal shows:\n{history}") from None


@pytest.fixture
def demo(docker_client: docker.DockerClient) -> Iterator[tuple[Terminal, Path]]:
    """A running demo on a home the test knows. Whatever the test found, nothing of it stays
    on the machine: the terminal closes, and what the demo left is removed here."""
    place = Path(tempfile.mkdtemp(prefix="axdemo-", dir="/tmp"))  # a short socket path
    home = place / "home"
    terminal = Terminal(home, place / "status")
    try:
        yield terminal, home
    finally:
        terminal.close()
        with contextlib.suppress(AssertionError):  # its own cleanup first
            wait_for(lambda: (not home.exists()) or None, "the demo's cleanup", seconds=30)
        if terminal.home_id is not None:
            remove_home_containers(docker_client, terminal.home_id)
        shutil.rmtree(place, ignore_errors=True)


def events(home: Path, axon: str) -> list[dict[str, Any]]:
    """The Axon's log through the CLI, as a script reads it (the demo's engine serves it)."""
    done = axons("tail", axon, "--json", home=home)
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def first(
    home: Path, axon: str, what: str, match: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    return wait_for(lambda: next((e for e in events(home, axon) if match(e)), None), what)


def demo_started(terminal: Terminal, home: Path) -> str:
    """The dashboard on the four Axons, filling with events; the home's id."""
    terminal.showing("support", "ci", "deploy", "assistant", what="the four demo Axons")
    terminal.showing("Billing export fails", "woke in", what="events in the panes")
    terminal.home_id = wait_for(lambda: home_id_of(home), "the demo home's catalog")
    return terminal.home_id


def containers(client: docker.DockerClient, home_id: str) -> list[str]:
    found = client.api.containers(all=True, filters={"label": f"axons.home={home_id}"})
    return [c["Names"][0] for c in found]


def left_nothing(client: docker.DockerClient, home: Path, home_id: str) -> None:
    assert not home.exists(), f"the demo left its home: {list(home.iterdir())}"
    assert containers(client, home_id) == []
    volumes = client.api.volumes().get("Volumes") or []
    assert not [v["Name"] for v in volumes if v["Name"].startswith(f"axons-{home_id[:8]}-")]


def test_a_reply_typed_into_the_support_composer_wakes_the_agent(
    demo: tuple[Terminal, Path], docker_client: docker.DockerClient
) -> None:
    terminal, home = demo
    home_id = demo_started(terminal, home)
    wait_for(lambda: len(containers(docker_client, home_id)) == 4 or None, "four containers")
    asked = first(
        home, "support", "the triage agent's question",
        lambda e: e["source"] == "triage" and "Can someone confirm" in e["payload"],
    )  # fmt: skip
    first(
        home, "support", "the triage agent asleep after asking",
        lambda e: e["event_type"] == "agent.paused" and e["sequence"] > asked["sequence"],
    )  # fmt: skip

    # the contract's keys: tab to the support pane, enter opens it, i writes, enter sends;
    # each key once the screen shows the one before it took effect, as a person would
    listed = json.loads(axons("ls", "--json", home=home).stdout)["axons"]
    support = next(a["id"] for a in listed if a["name"] == "support")
    terminal.keys(*["Tab"] * [a["name"] for a in listed].index("support"), "Enter")
    terminal.showing(f"support  {support}", "Write to this Axon", what="the support Axon's view")
    terminal.keys("i")
    terminal.showing("Leave the composer", what="the composer, focused")
    terminal.type(REPLY)
    terminal.showing(REPLY, what="the reply, typed")
    terminal.keys("Enter")

    reply = first(
        home, "support", "the typed reply in the log",
        lambda e: e["event_type"] == "message" and REPLY in e["payload"],
    )  # fmt: skip
    assert (reply["origin"], reply["source"]) == ("USER_EVENT", "tui")
    woke = first(
        home, "support", "the triage agent woken by the reply",
        lambda e: e["event_type"] == "agent.resumed" and e["sequence"] > reply["sequence"],
    )  # fmt: skip
    assert json.loads(woke["payload"])["trigger_sequence"] == reply["sequence"]
    first(
        home, "support", "the agent's answer to the reply",
        lambda e: e["source"] == "triage" and "Resumed with the new constraint" in e["payload"],
    )  # fmt: skip
    terminal.showing("triage woke in", "Resumed with the new constraint", what="the wake")

    # the ACP assistant asks before it writes a file: back on the dashboard its pane says
    # so; `y` there opens the request, `1` allows it, and the agent, paused meanwhile, acts
    terminal.keys("Escape", "Escape")  # out of the composer, then back to the dashboard
    terminal.showing("Axons · 4", what="the dashboard again")
    terminal.showing("⚑ waiting: permission: Write", what="the assistant waiting (~30 s in)")
    assistant = next(a["id"] for a in listed if a["name"] == "assistant")
    terminal.keys("/")  # the filter: its pane alone, focused
    terminal.type("assistant")
    terminal.keys("Enter")
    terminal.showing("· 1 match 'assistant'", what="the filtered dashboard")
    terminal.keys("Enter")
    terminal.showing(f"assistant  {assistant}", "y answers", what="the assistant's view")
    terminal.keys("y")
    terminal.showing("Allow once", "Reject", what="the permission prompt")
    terminal.keys("1")
    first(
        home, "assistant", "the write, allowed and done",
        lambda e: e["event_type"] == "session/update" and '"write-1"' in e["payload"]
        and '"completed"' in e["payload"],
    )  # fmt: skip
    terminal.showing("write-1 completed", what="the write in the view")

    terminal.keys("Escape", "q")
    terminal.showing("Quit?", what="the quit question (agents run)")
    terminal.keys("y")
    assert terminal.exit_code() == 0
    left_nothing(docker_client, home, home_id)


@pytest.mark.parametrize("ending", ["ctrl-c typed", "SIGTERM"])
def test_the_demo_leaves_nothing_behind_however_it_ends(
    ending: str, demo: tuple[Terminal, Path], docker_client: docker.DockerClient
) -> None:
    terminal, home = demo
    home_id = demo_started(terminal, home)
    wait_for(lambda: len(containers(docker_client, home_id)) == 4 or None, "four containers")
    if ending == "ctrl-c typed":
        terminal.keys("C-c")
    else:
        subprocess.run(["kill", "-TERM", str(terminal.demo_pid())], check=True)
    assert terminal.exit_code() == 130
    left_nothing(docker_client, home, home_id)
