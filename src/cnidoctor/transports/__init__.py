"""Transports: how cnidoctor reaches a node (local, netns:NAME, ssh://)."""

from __future__ import annotations

from cnidoctor.errors import UsageError
from cnidoctor.transports.base import Command, CommandResult, Transport
from cnidoctor.transports.local import LocalTransport
from cnidoctor.transports.netns import NetnsTransport
from cnidoctor.transports.ssh import SshTransport

__all__ = ["Command", "CommandResult", "Transport", "transport_for"]


def transport_for(spec: str) -> Transport:
    """The transport for a node SPEC as written in the contract."""
    if spec == "local":
        return LocalTransport()
    if spec.startswith("netns:"):
        return NetnsTransport(spec.removeprefix("netns:"))
    if spec.startswith("ssh://"):
        return SshTransport(spec)
    raise UsageError(
        f"unknown node spec {spec!r}: use local, netns:NAME or ssh://[USER@]HOST[:PORT]"
    )
