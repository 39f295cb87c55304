"""scripts/system-deps, run for real: where it cannot install what is missing it stops with one
line naming the exact command, and exits non-zero; where nothing is missing it says nothing.

Each case runs the script with a PATH of its own (a folder of links to the commands that case's
machine has), as a non-root user where the case is about one. Nothing here installs anything:
the cases that could install are the ones the fresh-machine runs of `make test` show.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "system-deps"
BASICS = ("bash", "id", "seq", "sleep", "tail", "setsid")
NOBODY = 65534
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BASH = shutil.which("bash", path=SYSTEM_PATH) or "/bin/bash"


@pytest.fixture
def home() -> Iterator[Path]:
    """A folder another user can enter (pytest's own tmp_path is private to its user)."""
    folder = Path(tempfile.mkdtemp(prefix="axons-system-deps-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def machine(home: Path, commands: tuple[str, ...]) -> dict[str, str]:
    """An environment whose PATH holds only `commands` (those this machine has)."""
    bin_dir = home / "bin"
    bin_dir.mkdir(mode=0o755)
    for name in (*BASICS, *commands):
        found = shutil.which(name, path=SYSTEM_PATH)
        if found:
            (bin_dir / name).symlink_to(found)
    return {"PATH": str(bin_dir), "HOME": str(home), "DOCKER_HOST": "unix:///nonexistent.sock"}


def run(
    env: dict[str, str], *args: str, as_nobody: bool = False
) -> subprocess.CompletedProcess[str]:
    command = [BASH, str(SCRIPT), *args]
    if as_nobody and os.geteuid() == 0:
        setpriv = shutil.which("setpriv", path=SYSTEM_PATH) or "setpriv"
        command = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=60, check=False, cwd="/"
    )


def test_not_root_and_no_docker_names_the_command(home: Path) -> None:
    env = machine(home, ("python3", "apt-get", "tmux", "debootstrap", "docker"))
    done = run(env, "test", as_nobody=True)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "sudo apt-get install -y docker.io" in lines[0]
    assert "Traceback" not in done.stderr


def test_not_root_with_a_docker_engine_that_does_not_answer(home: Path) -> None:
    env = machine(home, ("python3", "apt-get", "tmux", "debootstrap", "docker", "dockerd"))
    done = run(env, "test", as_nobody=True)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "Docker engine is not running" in lines[0]
    assert "dockerd" in lines[0]


def test_no_apt_get_names_the_packages(home: Path) -> None:
    env = machine(home, ("python3", "docker", "dockerd"))
    done = run(env, "test", as_nobody=True)
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert "install tmux debootstrap with your package manager" in line


def test_bench_needs_wrk(home: Path) -> None:
    env = machine(home, ("python3", "apt-get", "tmux", "debootstrap", "docker", "dockerd"))
    done = run(env, "bench", as_nobody=True)
    assert done.returncode == 1
    assert "sudo apt-get install -y wrk" in done.stderr


def test_the_demo_does_without_docker(home: Path) -> None:
    """A user who cannot have Docker still gets the demo: its agents run as local processes."""
    env = machine(home, ("python3", "apt-get"))
    done = run(env, "demo", as_nobody=True)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_a_ready_machine_hears_nothing() -> None:
    """This machine runs the suite, so it has everything `test` needs: the script is silent."""
    done = subprocess.run(
        ["bash", str(SCRIPT), "test"], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_an_unknown_purpose_is_a_usage_error(home: Path) -> None:
    done = run(machine(home, ()), "deploy")
    assert done.returncode == 2
    assert "usage: scripts/system-deps [test|demo|bench]" in done.stderr
