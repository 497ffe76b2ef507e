"""What `up` made, written down *before* each thing is made, so `down` can undo a crash.

The state lives in /run/cnidoctor/lab/<scenario>/state.json (rewritten atomically);
/run is cleared at boot, as are the namespaces it records.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cnidoctor.transports.netns import LAB_MOUNT_DIR

LAB_DIR = Path("/run/cnidoctor/lab")
MOUNT_DIR = Path(LAB_MOUNT_DIR)
STATE_FILE = "state.json"
INVENTORY_FILE = "inventory.yaml"


@dataclass
class LabState:
    """The namespaces and mounts one scenario's `up` made (or was about to make)."""

    scenario: str
    complete: bool = False
    netns: list[str] = field(default_factory=list)
    #: node names whose mount namespace is bound at MOUNT_DIR/<name>
    mount_ns: list[str] = field(default_factory=list)
    pid: int = field(default_factory=os.getpid)
    #: the API stand-in's process (`cnidoctor lab api`), for scenarios that serve one
    api_pid: int | None = None
    #: the stand-in listeners on the nodes' cluster ports (lab/listeners.py), if started
    listener_pid: int | None = None

    @property
    def directory(self) -> Path:
        return LAB_DIR / self.scenario

    @property
    def inventory(self) -> Path:
        return self.directory / INVENTORY_FILE

    def save(self) -> None:
        """Atomic rewrite: a crash leaves the previous or the new state, never half a file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(tmp, self.directory / STATE_FILE)

    def will_make_netns(self, name: str) -> None:
        self.netns.append(name)
        self.save()

    def will_make_mount_ns(self, name: str) -> None:
        self.mount_ns.append(name)
        self.save()

    @classmethod
    def load(cls, scenario: str) -> LabState | None:
        """The recorded state, or None when the file is missing or unreadable."""
        path = LAB_DIR / scenario / STATE_FILE
        try:
            raw = json.loads(path.read_text())
            return cls(
                scenario=scenario,
                complete=bool(raw.get("complete", False)),
                netns=[str(n) for n in raw.get("netns", [])],
                mount_ns=[str(n) for n in raw.get("mount_ns", [])],
                pid=int(raw.get("pid", 0)),
                api_pid=int(raw["api_pid"]) if raw.get("api_pid") else None,
                listener_pid=int(raw["listener_pid"]) if raw.get("listener_pid") else None,
            )
        except (OSError, ValueError, TypeError, AttributeError):
            return None


def scenarios_with_state() -> list[str]:
    """Scenario directories present under LAB_DIR (up, partly up, or crashed)."""
    if not LAB_DIR.is_dir():
        return []
    return sorted(p.name for p in LAB_DIR.iterdir() if p.is_dir())


@contextmanager
def lab_lock() -> Iterator[None]:
    """One up/down at a time on this machine: they share MOUNT_DIR and the state dir."""
    LAB_DIR.mkdir(parents=True, exist_ok=True)
    with open(LAB_DIR / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
