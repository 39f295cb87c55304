"""Agent images on machines without a container registry.

- `ensure_base_image()` gives `axons/base:bookworm`, a Debian bookworm with python3. If the
  image exists it returns at once. Else, where a registry answers, it pulls
  `python:3.12-slim` and tags it; otherwise it builds a root filesystem with
  `debootstrap --variant=minbase --include=python3` from the machine's Debian mirror, trims
  it, tars it into the user cache dir (so the next build skips debootstrap) and
  `docker import`s it. debootstrap needs root, once; the cached tarball does not.
- `ensure_agent_image(name, context_dir)` builds `axons/<name>:latest` FROM the base with the
  Docker SDK. The build context is `context_dir` placed under `<dir name>/` beside the
  native-protocol helper `axon_agent.py`, exactly the layout of `sample_agents/`, so
  `docker build -f sample_agents/triage/Dockerfile sample_agents` builds the same image. The
  image is labelled with a hash of the context (and of the base image): an unchanged context
  costs two image inspections, no build.
- `build_all()` builds the base and every `sample_agents/*/Dockerfile`.

`progress` callbacks receive one line of text at a time (debootstrap and build output).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import platform
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import platformdirs

from engine.errors import ImageBuildError

Progress = Callable[[str], None]

BASE_REPO, BASE_TAG = "axons/base", "bookworm"
BASE_IMAGE = f"{BASE_REPO}:{BASE_TAG}"
REGISTRY_BASE = ("python", "3.12-slim")  # used instead when a registry answers
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEBIAN_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
SAMPLE_AGENTS = Path(__file__).resolve().parent.parent / "sample_agents"
HELPER = SAMPLE_AGENTS / "axon_agent.py"
HASH_LABEL = "axons.context-hash"
PULL_TIMEOUT_S = 15  # no byte from the daemon for this long: no registry
IMPORT_CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
    "LABEL axons.base=debootstrap-minbase-bookworm",
]
# Removed from the debootstrapped tree: documentation, translations, apt's caches and lists.
TRIM = [
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/cache/apt",
    "var/lib/apt/lists",
]
SKIP_NAMES = {"__pycache__", ".git", ".mypy_cache", ".pytest_cache", ".ruff_cache"}


def _quiet(_: str) -> None:
    pass


def _client(timeout: int = 600) -> docker.DockerClient:
    try:
        return docker.from_env(timeout=timeout)
    except docker.errors.DockerException as e:
        raise ImageBuildError(f"cannot reach the Docker engine ({e}); start dockerd") from None


def cache_dir() -> Path:
    path = Path(platformdirs.user_cache_dir("axons"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _using(client: docker.DockerClient | None) -> Iterator[docker.DockerClient]:
    """The caller's client, or a new one closed afterwards."""
    if client is not None:
        yield client
        return
    own = _client()
    try:
        yield own
    finally:
        own.close()


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """One builder per image on this machine (two engines starting together wait)."""
    with open(cache_dir() / f"{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _image(client: docker.DockerClient, ref: str) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = client.api.inspect_image(ref)
        return result
    except docker.errors.ImageNotFound:
        return None


def debian_mirror() -> str:
    """The first `URIs:` of the machine's deb822 sources, else deb.debian.org."""
    with contextlib.suppress(OSError):
        for line in DEBIAN_SOURCES.read_text().splitlines():
            if line.strip().lower().startswith("uris:") and line.split(":", 1)[1].split():
                return line.split(":", 1)[1].split()[0]
    return DEFAULT_MIRROR


# ---- the base image -------------------------------------------------------------------------
def ensure_base_image(
    progress: Progress | None = None, *, client: docker.DockerClient | None = None
) -> str:
    """Return `axons/base:bookworm`, making it first if this Docker engine lacks it."""
    with _using(client) as c:
        return _ensure_base_image(progress or _quiet, c)


def _ensure_base_image(say: Progress, client: docker.DockerClient) -> str:
    if _image(client, BASE_IMAGE):
        return BASE_IMAGE
    with _locked("base"):
        if _image(client, BASE_IMAGE):  # another process made it while we waited
            return BASE_IMAGE
        if _pull_registry_base(client, say):
            return BASE_IMAGE
        started = time.monotonic()
        tarball = _rootfs_tarball(say)
        say(f"importing {tarball} as {BASE_IMAGE}")
        try:
            output = client.api.import_image(
                src=str(tarball), repository=BASE_REPO, tag=BASE_TAG, changes=IMPORT_CHANGES
            )
        except docker.errors.APIError as e:
            output = str(e.explanation or e)
        if not _image(client, BASE_IMAGE):
            tarball.unlink(missing_ok=True)  # perhaps damaged: the next attempt starts afresh
            raise ImageBuildError(f"docker import failed: {str(output).strip()[-500:]}")
        say(f"{BASE_IMAGE} ready in {time.monotonic() - started:.1f}s")
    return BASE_IMAGE


def _pull_registry_base(client: docker.DockerClient, say: Progress) -> bool:
    """Pull python:3.12-slim and tag it as the base; False at once when no registry answers."""
    repo, tag = REGISTRY_BASE
    say(f"trying a registry: docker pull {repo}:{tag}")
    quick = _client(timeout=PULL_TIMEOUT_S)
    try:
        for chunk in quick.api.pull(repo, tag, stream=True, decode=True):
            if "error" in chunk:
                raise docker.errors.APIError(chunk["error"])
        client.api.tag(f"{repo}:{tag}", BASE_REPO, BASE_TAG)
        say(f"tagged {repo}:{tag} as {BASE_IMAGE}")
        return True
    except Exception as e:  # no registry: DNS failure, timeout, refused, not found
        reason = getattr(e, "explanation", None) or str(e)
        say(
            f"no registry ({reason.splitlines()[0][:160] if reason else type(e).__name__}); "
            "building the base locally"
        )
        return False
    finally:
        quick.close()


def _rootfs_tarball(say: Progress) -> Path:
    """The cached bookworm root filesystem tarball, debootstrapped on first use."""
    tarball = cache_dir() / f"rootfs-{SUITE}-minbase-python3-{platform.machine()}.tar.gz"
    if tarball.exists():
        say(f"using the cached root filesystem {tarball}")
        return tarball
    debootstrap = shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin")
    if debootstrap is None:
        raise ImageBuildError(
            f"no registry is reachable and debootstrap is missing, so {BASE_IMAGE} cannot be "
            "built: install it (`apt-get install debootstrap`) and retry as root"
        )
    if os.geteuid() != 0:
        raise ImageBuildError(
            f"no registry is reachable, so {BASE_IMAGE} is built once with debootstrap, which "
            "needs root: run `sudo .venv/bin/python -c 'from engine.images import build_all; "
            "build_all(print)'` once (or import any image with python3 and tag it "
            f"{BASE_IMAGE})"
        )
    mirror = debian_mirror()
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=cache_dir()))
    rootfs = work / "rootfs"
    try:
        cmd = [debootstrap, "--variant=minbase", "--include=python3", SUITE, str(rootfs), mirror]
        say("$ " + " ".join(cmd))
        _stream(cmd, say, "debootstrap")
        for rel in TRIM:
            target = rootfs / rel
            if target.is_dir():
                for child in target.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
        partial = work / "rootfs.tar.gz"
        say(f"packing the root filesystem into {tarball}")
        _stream(
            [
                "tar",
                "--numeric-owner",
                "-C",
                str(rootfs),
                "--exclude=./proc/*",
                "--exclude=./sys/*",
                "--exclude=./dev/*",
                "--exclude=./tmp/*",
                "-czf",
                str(partial),
                ".",
            ],
            say,
            "tar",
        )
        partial.replace(tarball)
        return tarball
    finally:
        _remove_tree(work)


def _stream(cmd: list[str], say: Progress, what: str) -> None:
    tail: list[str] = []
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            say(line.rstrip())
            tail = [*tail[-19:], line.rstrip()]
    if proc.returncode != 0:
        raise ImageBuildError(f"{what} failed (exit {proc.returncode}): " + " | ".join(tail[-5:]))


def _remove_tree(path: Path) -> None:
    """rmtree, after unmounting anything an interrupted debootstrap left mounted inside."""
    with contextlib.suppress(OSError):
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith(f"{path}/")), reverse=True):
            subprocess.run(["umount", "-l", mount], check=False)
    shutil.rmtree(path, ignore_errors=True)


# ---- agent images ---------------------------------------------------------------------------
def _context_files(context_dir: Path) -> list[tuple[str, Path]]:
    """(name in the build context, file): the helper at the root, the agent under its dir."""
    sub = context_dir.name
    files = [(HELPER.name, HELPER)]
    for path in sorted(context_dir.rglob("*")):
        rel = path.relative_to(context_dir)
        if path.is_file() and not SKIP_NAMES & set(rel.parts) and path.suffix != ".pyc":
            files.append((f"{sub}/{rel.as_posix()}", path))
    return files


def context_hash(context_dir: Path, base_id: str) -> str:
    digest = hashlib.sha256(base_id.encode())
    for name, path in _context_files(context_dir):
        executable = os.access(path, os.X_OK)
        digest.update(f"\0{name}\0{int(executable)}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:32]


def _context_tar(context_dir: Path) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, path in _context_files(context_dir):
            info = tar.gettarinfo(str(path), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            with open(path, "rb") as f:
                tar.addfile(info, f)
    buf.seek(0)
    return buf


def ensure_agent_image(
    name: str,
    context_dir: str | Path,
    progress: Progress | None = None,
    *,
    client: docker.DockerClient | None = None,
) -> str:
    """Return `axons/<name>:latest`, built FROM the base when its context changed."""
    context_dir = Path(context_dir).resolve()
    if not (context_dir / "Dockerfile").is_file():
        raise ImageBuildError(f"{context_dir} has no Dockerfile")
    with _using(client) as c:
        return _ensure_agent_image(name, context_dir, progress or _quiet, c)


def _ensure_agent_image(
    name: str, context_dir: Path, say: Progress, client: docker.DockerClient
) -> str:
    tag = f"axons/{name}:latest"
    base = _image(client, _ensure_base_image(say, client))
    assert base is not None
    wanted = context_hash(context_dir, base["Id"])
    current = _image(client, tag)
    if current and (current["Config"].get("Labels") or {}).get(HASH_LABEL) == wanted:
        return tag
    with _locked(f"agent-{name}"):
        current = _image(client, tag)
        if current and (current["Config"].get("Labels") or {}).get(HASH_LABEL) == wanted:
            return tag
        started = time.monotonic()
        say(f"building {tag} from {context_dir}")
        chunks = client.api.build(
            fileobj=_context_tar(context_dir),
            custom_context=True,
            tag=tag,
            dockerfile=f"{context_dir.name}/Dockerfile",
            labels={HASH_LABEL: wanted, "axons.agent": name},
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
        )
        for chunk in chunks:
            if "error" in chunk:
                raise ImageBuildError(f"building {tag} failed: {chunk['error'].strip()}")
            for line in str(chunk.get("stream", "")).splitlines():
                if line.strip():
                    say(line.rstrip())
        if current:  # the previous build is now untagged: drop it unless a container uses it
            with contextlib.suppress(docker.errors.APIError):
                client.api.remove_image(current["Id"])
        say(f"{tag} ready in {time.monotonic() - started:.1f}s")
    return tag


def agent_contexts(root: Path = SAMPLE_AGENTS) -> list[Path]:
    """Every directory under `root` with a Dockerfile, by name."""
    return sorted(p.parent for p in root.glob("*/Dockerfile"))


def build_all(progress: Progress | None = None) -> list[str]:
    """The base image and every sample agent's image; returns their tags."""
    with _using(None) as client:
        tags = [ensure_base_image(progress, client=client)]
        for context in agent_contexts():
            tags.append(ensure_agent_image(context.name, context, progress, client=client))
        return tags


def ensure_image(ref: str, progress: Progress | None = None) -> str:
    """`ref` if the Docker engine has it. A sample agent's image (`axons/<name>:latest`) is
    built on first need and rebuilt when its files change. Anything else must be built or
    loaded by the user."""
    with _using(None) as client:
        repo, _, tag = ref.partition(":")
        name = repo.removeprefix("axons/")
        context = SAMPLE_AGENTS / name
        if (
            repo.startswith("axons/")
            and tag in ("", "latest")
            and (context / "Dockerfile").is_file()
        ):
            # ours: rebuilt when its files changed (two inspections when they did not)
            return ensure_agent_image(name, context, progress, client=client)
        if _image(client, ref) is not None:
            return ref
        if ref == BASE_IMAGE:
            return ensure_base_image(progress, client=client)
        raise ImageBuildError(
            f"image {ref} is not on this Docker engine and no registry is reachable; "
            "build it (docker build) or load it (docker load) first"
        )
