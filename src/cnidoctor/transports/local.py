"""This host."""

from __future__ import annotations

from cnidoctor.transports.base import Transport


class LocalTransport(Transport):
    spec = "local"

    def shell_argv(self) -> list[str]:
        return ["sh", "-s"]
