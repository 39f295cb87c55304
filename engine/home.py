"""The data home's layout (contract §2), spelled out once: every path the engine, the CLI and
the tests use inside a home comes from `Home`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs


def default_home() -> Path:
    """Contract §2: $AXONS_HOME, else the platform's user data dir."""
    env = os.environ.get("AXONS_HOME")
    return Path(env) if env else Path(platformdirs.user_data_dir("axons"))


@dataclass(frozen=True)
class Home:
    """Where a data home keeps what."""

    root: Path

    @classmethod
    def at(cls, root: Path | str | None = None) -> Home:
        """The home at `root`, else the default one."""
        return cls(Path(root) if root is not None else default_home())

    @property
    def socket(self) -> Path:
        """The API's unix socket (mode 0600; no token needed)."""
        return self.root / "engine.sock"

    @property
    def catalog(self) -> Path:
        """Axons, agents and API tokens."""
        return self.root / "catalog.db"

    @property
    def config(self) -> Path:
        """The operator's policy for TCP clients (optional; engine/policy.py)."""
        return self.root / "config.toml"

    @property
    def lock(self) -> Path:
        """Held by the one engine that owns the home."""
        return self.root / "engine.lock"

    @property
    def axons(self) -> Path:
        """One SQLite file per Axon."""
        return self.root / "axons"

    @property
    def agents(self) -> Path:
        """The process runtime's pid files and per-agent folders."""
        return self.root / "agents"

    @property
    def gateway(self) -> Path:
        """The Agent Gateway's per-agent folders (a Docker agent's socket and relay)."""
        return self.root / "gateway"

    def axon_file(self, axon_id: str) -> Path:
        return self.axons / f"{axon_id}.db"
