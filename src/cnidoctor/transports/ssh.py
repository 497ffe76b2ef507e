"""A node over SSH: one OpenSSH session per batch.

The system `ssh` client is used on purpose: it honours the user's ~/.ssh/config
(ProxyJump, IdentityFile, Match blocks), agent and known_hosts exactly as their own
shell does, and the batch design needs only one session per node collection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cnidoctor.errors import UsageError
from cnidoctor.transports.base import Transport

_HOST = re.compile(r"^[A-Za-z0-9_.:%-]+$|^\[[0-9A-Fa-f:.%]+\]$")
_USER = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*$")
#: runs as root directly, or through passwordless sudo for a non-root login
REMOTE_SHELL = 'if [ "$(id -u)" -eq 0 ]; then exec sh -s; fi; exec sudo -n sh -s'


@dataclass(frozen=True)
class SshTarget:
    host: str
    user: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, spec: str) -> SshTarget:
        rest = spec.removeprefix("ssh://")
        user: str | None = None
        if "@" in rest:
            user, rest = rest.split("@", 1)
            if not _USER.match(user):
                raise UsageError(f"{spec}: invalid user name {user!r}")
        host, port = rest, None
        if rest.startswith("["):
            end = rest.find("]")
            host, tail = rest[: end + 1], rest[end + 1 :]
            if tail:
                port = _port(spec, tail.removeprefix(":"))
        elif rest.count(":") == 1:
            host, port_text = rest.split(":")
            port = _port(spec, port_text)
        if not host or not _HOST.match(host) or host.startswith("-"):
            raise UsageError(f"{spec}: invalid host {host!r}")
        return cls(host=host.strip("[]"), user=user, port=port)


def _port(spec: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise UsageError(f"{spec}: invalid port {text!r}")
    return int(text)


class SshTransport(Transport):
    def __init__(self, spec: str, connect_timeout: int = 5, options: tuple[str, ...] = ()) -> None:
        self.target = SshTarget.parse(spec)
        self.spec = spec
        self.connect_timeout = connect_timeout
        self.options = options

    def shell_argv(self) -> list[str]:
        argv = [
            "ssh",
            "-o",
            "BatchMode=yes",
            "-o",
            f"ConnectTimeout={self.connect_timeout}",
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "ServerAliveCountMax=2",
        ]
        for option in self.options:
            argv += ["-o", option]
        if self.target.port:
            argv += ["-p", str(self.target.port)]
        if self.target.user:
            argv += ["-l", self.target.user]
        return [*argv, "--", self.target.host, REMOTE_SHELL]

    def describe_failure(self, detail: str) -> str:
        return f"ssh failed: {detail}"
