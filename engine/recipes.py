"""Agent recipes: real ACP agents (Claude Code, OpenCode, Gemini CLI) as npm pins.

A recipe is a folder of `sample_agents/` with a `package.json` that pins the npm package to
the version tested, an `agent.toml` (the agent spec, whose `command` is the image's), and the
agent's own config files. Nothing of it needs a registry at run time:

- `npm_install(name)` installs the pin into the user cache dir (`npm-agents/<name>`); it
  runs npm only when the pin changed, so a test run after the first costs a file read.
- `ensure_recipe_image(name)` builds `axons/<name>:latest` FROM the offline base image: the
  host's `node` binary (the base is the same Debian, and has the C++ runtime node links),
  the installed `node_modules` and the recipe's files go to `/opt/agent`; a named volume at
  `/home/agent` is the agent's writable HOME. The image is labelled with a hash of what went
  in, so an unchanged recipe costs two image inspections.

`python -m engine.recipes [NAME ...]` (what `scripts/npm-agents` runs) installs the pins.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import docker
import orjson

from engine.images import (
    BASE_IMAGE,
    SAMPLE_AGENTS,
    ImageBuildError,
    Progress,
    build_image,
    build_lock,
    cache_dir,
    docker_client,
    ensure_base_image,
    image_info,
    quiet,
    run_streaming,
)

PIN_FILE = "package.json"
STAMP = ".axons-installed"
MIN_NODE_MAJOR = 20
AGENT_DIR = "/opt/agent"
DOCKERFILE = """\
FROM {base}
COPY node /usr/local/bin/node
COPY node_modules {agent}/node_modules
COPY recipe/ {agent}/
ENV PATH={agent}/node_modules/.bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN node --version && mkdir -p /work /home/agent && chown 65534:65534 /work /home/agent
USER 65534:65534
WORKDIR /work
CMD {command}
"""


def recipes(root: Path = SAMPLE_AGENTS) -> list[str]:
    """The names of every recipe (a folder with an npm pin), sorted."""
    return sorted(p.parent.name for p in root.glob(f"*/{PIN_FILE}"))


def recipe_dir(name: str) -> Path:
    path = SAMPLE_AGENTS / name
    if not (path / PIN_FILE).is_file():
        known = ", ".join(recipes()) or "none"
        raise ImageBuildError(f"no agent recipe named {name!r} (recipes: {known})")
    return path


def npm_dir(name: str) -> Path:
    """Where the recipe's npm package is installed (outside the work tree, kept between runs)."""
    return cache_dir() / "npm-agents" / name


def bin_dir(name: str) -> Path:
    """The folder of the installed agent's commands (`node_modules/.bin`)."""
    return npm_dir(name) / "node_modules" / ".bin"


def agent_command(name: str) -> list[str]:
    """The recipe's `command` from its agent.toml (run from `bin_dir` or the image's PATH)."""
    spec = tomllib.loads((recipe_dir(name) / "agent.toml").read_text())
    command = spec["agents"][0].get("command")
    if not command:
        raise ImageBuildError(f"sample_agents/{name}/agent.toml names no command")
    return [str(part) for part in command]


def node_binary() -> Path:
    """The host's node, version-checked (npm installs and the images run with it)."""
    found = shutil.which("node")
    if found is None or shutil.which("npm") is None:
        raise ImageBuildError(
            "the agent recipes need Node.js and npm: install them (as root: "
            "`apt-get install nodejs npm`, or scripts/system-deps test) and retry"
        )
    version = subprocess.run([found, "--version"], capture_output=True, text=True, check=False)
    major = version.stdout.strip().lstrip("v").split(".")[0]
    if not major.isdigit() or int(major) < MIN_NODE_MAJOR:
        raise ImageBuildError(
            f"node {version.stdout.strip() or '?'} is too old for the agent recipes: "
            f"install Node.js {MIN_NODE_MAJOR} or newer"
        )
    return Path(found).resolve()


def _pin_hash(name: str) -> str:
    return hashlib.sha256((recipe_dir(name) / PIN_FILE).read_bytes()).hexdigest()


def npm_install(name: str, progress: Progress | None = None) -> Path:
    """Install the recipe's pinned npm package (once per pin); returns its folder."""
    say = progress or quiet
    target, wanted = npm_dir(name), _pin_hash(name)
    stamp = target / STAMP
    if stamp.is_file() and stamp.read_text() == wanted:
        return target
    node_binary()
    with build_lock(f"npm-{name}"):
        if stamp.is_file() and stamp.read_text() == wanted:
            return target
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(recipe_dir(name) / PIN_FILE, target / PIN_FILE)
        started = time.monotonic()
        say(f"npm install for the {name} recipe into {target}")
        npm = ["npm", "install", "--no-audit", "--no-fund", "--no-update-notifier"]
        run_streaming([*npm, "--prefix", str(target)], say, f"npm install ({name})")
        stamp.write_text(wanted)
        say(f"{name}: installed in {time.monotonic() - started:.0f}s")
    return target


def _image_files(name: str) -> dict[str, Path]:
    """Name in the build context -> file or folder on the host."""
    files = {"node": node_binary(), "node_modules": npm_install(name) / "node_modules"}
    for path in sorted(recipe_dir(name).iterdir()):
        if path.is_file():
            files[f"recipe/{path.name}"] = path
    return files


def _dockerfile(name: str) -> str:
    command = orjson.dumps(agent_command(name)).decode()
    return DOCKERFILE.format(base=BASE_IMAGE, agent=AGENT_DIR, command=command)


def _content_hash(name: str, base_id: str, files: dict[str, Path]) -> str:
    """What the image is made of: the base, the Dockerfile, node, the pin and the recipe's
    files (node_modules is fixed by the pin, so it is not read byte by byte)."""
    digest = hashlib.sha256(f"{base_id}\0{_dockerfile(name)}\0{_pin_hash(name)}".encode())
    for arcname, path in files.items():
        if path.is_file():
            digest.update(f"\0{arcname}\0{path.stat().st_size}\0".encode())
            if arcname != "node":
                digest.update(path.read_bytes())
    node = files["node"].stat()
    digest.update(f"\0node\0{node.st_size}\0{node.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


@contextlib.contextmanager
def _context(name: str, files: dict[str, Path], say: Progress) -> Iterator[IO[bytes]]:
    """The build context as a tar file on disk (hundreds of MB: never in memory)."""

    def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tempfile.TemporaryDirectory(prefix=f"context-{name}-", dir=cache_dir()) as work:
        path = Path(work) / "context.tar"
        with tarfile.open(path, "w") as tar:
            dockerfile = _dockerfile(name).encode()
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(dockerfile)
            tar.addfile(info, fileobj=io.BytesIO(dockerfile))
            for arcname, source in files.items():
                tar.add(str(source), arcname=arcname, filter=owned_by_root)
        say(f"build context {path.stat().st_size / 1e6:.0f} MB")
        with path.open("rb") as fileobj:
            yield fileobj


def ensure_recipe_image(
    name: str, progress: Progress | None = None, *, client: docker.DockerClient | None = None
) -> str:
    """Return `axons/<name>:latest` for a recipe, built when what goes into it changed."""
    say = progress or quiet
    with docker_client(client) as c:
        base = image_info(c, ensure_base_image(say, client=c))
        assert base is not None
        files = _image_files(name)
        return build_image(
            c,
            name,
            _content_hash(name, base["Id"], files),
            lambda: _context(name, files, say),
            say,
            what=f"from node, the {name} npm package and sample_agents/{name}",
        )


def main(argv: list[str]) -> int:
    """Install the npm packages of the named recipes (all when none is named)."""
    try:
        for name in argv or recipes():
            path = npm_install(name, lambda line: print(f"  {line}", flush=True))
            print(f"{name}: {path / 'node_modules' / '.bin'}")
    except ImageBuildError as e:
        print(f"npm-agents: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
