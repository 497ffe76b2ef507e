"""A network namespace made by `ip netns add`, and its lab mount namespace if there is one.

nsenter rather than `ip netns exec`: the latter remounts /sys and bind-mounts
/etc/netns/NAME, which would hide the node-private mount namespace the lab builds.
"""

from __future__ import annotations

import os
import re

from cnidoctor.errors import UsageError
from cnidoctor.transports.base import Transport

NETNS_DIR = "/run/netns"
LAB_MOUNT_DIR = "/run/cnidoctor/mnt"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class NetnsTransport(Transport):
    def __init__(self, name: str) -> None:
        if not _NAME.match(name) or name in {".", ".."}:
            raise UsageError(f"netns:{name}: not a valid namespace name")
        self.name = name
        self.spec = f"netns:{name}"

    @property
    def netns_path(self) -> str:
        return os.path.join(NETNS_DIR, self.name)

    @property
    def mount_ns_path(self) -> str:
        return os.path.join(LAB_MOUNT_DIR, self.name)

    def preflight_error(self) -> str | None:
        if not os.path.exists(self.netns_path):
            return f"no network namespace {self.name!r} ({self.netns_path} does not exist)"
        if os.geteuid() != 0:
            return "entering a network namespace needs root"
        return None

    def shell_argv(self) -> list[str]:
        argv = ["nsenter", f"--net={self.netns_path}"]
        if os.path.exists(self.mount_ns_path):
            argv.append(f"--mount={self.mount_ns_path}")
        return [*argv, "sh", "-s"]
