"""What the connectivity matrix found: one Probe per (source, destination, port), per node
how its probes ran. Pure data: the runner fills it, the judge and the renderer read it."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field


class Status(StrEnum):
    """The fate of one probe."""

    #: answered: echo reply, SYN-ACK, or the UDP probe seen arriving at the destination
    OPEN = "open"
    #: RST or port unreachable: the path works, nothing listens
    REFUSED = "refused"
    #: no answer within the timeout: dropped somewhere
    TIMEOUT = "timeout"
    #: an ICMP error came back (host/net unreachable, prohibited), or no route
    UNREACHABLE = "unreachable"
    #: TTL exceeded on the way: the packet went round in circles
    LOOP = "loop"
    #: arrived at the destination, whose own INPUT rules drop it (from its firewall facts)
    FILTERED = "filtered"
    #: the probe could not run (a tool missing, the source node failed)
    UNKNOWN = "unknown"
    #: the probe failed locally (sendmsg refused by the source's own rules, bad address)
    ERROR = "error"

    @property
    def ok(self) -> bool:
        return self is Status.OPEN

    @property
    def path_works(self) -> bool:
        """The packet got there and something answered (even a RST)."""
        return self in (Status.OPEN, Status.REFUSED)


#: port groups: the grid's columns within a cell, in order
GROUPS: tuple[tuple[str, str], ...] = (
    ("icmp", "ICMP echo"),
    ("api", "6443/tcp API server (to control-plane nodes)"),
    ("kubelet", "10250/tcp kubelet"),
    ("etcd", "2379-2380/tcp etcd (to etcd members)"),
    ("vxlan", "VXLAN udp (seen arriving at the destination)"),
)
_TCP_GROUP = {6443: "api", 10250: "kubelet", 2379: "etcd", 2380: "etcd"}


class IcmpMessage(BaseModel):
    """An ICMP message a probe drew: who sent it and what it said."""

    kind: str = Field(description="redirect, time-exceeded or unreachable")
    source: str = Field(description="the router or host that sent it")
    detail: str = Field(default="", description="redirect: the new next hop; else the code")
    text: str = Field(default="", description="the line as ping printed it, when it did")

    def describe(self) -> str:
        if self.text:
            return self.text
        if self.kind == "redirect":
            return f"From {self.source}: Redirect Host(New nexthop: {self.detail})"
        if self.kind == "time-exceeded":
            return f"From {self.source} Time to live exceeded"
        return f"From {self.source} Destination unreachable (code {self.detail})"


class Probe(BaseModel):
    """One probe from a source node to a destination node's address."""

    id: str
    source: str
    target: str
    address: str
    proto: str = Field(description="icmp, tcp or udp")
    port: int | None = None
    status: Status = Status.UNKNOWN
    detail: str = ""
    icmp: list[IcmpMessage] = Field(default_factory=list)
    #: limited-TTL probes: the hop that answered at TTL 1, 2, ... ("*" = none)
    path: list[str] = Field(default_factory=list)

    @property
    def group(self) -> str:
        if self.proto == "icmp":
            return "icmp"
        if self.proto == "udp":
            return "vxlan"
        return _TCP_GROUP.get(self.port or 0, "tcp")

    @property
    def label(self) -> str:
        return "ICMP echo" if self.proto == "icmp" else f"{self.port}/{self.proto}"

    @property
    def looped(self) -> bool:
        """It drew a redirect or a TTL exceeded: the loop detector's evidence."""
        return self.status is Status.LOOP or any(
            m.kind in ("redirect", "time-exceeded") for m in self.icmp
        )


class SourceRun(BaseModel):
    """How one source node's probes ran."""

    name: str
    spec: str
    ran: bool
    error: str | None = None
    duration_s: float | None = None
    #: python (raw sockets, limited-TTL path, UDP observer) or bash (ping, /dev/tcp)
    mode: str | None = None
    #: what was missing on the node, one line each
    notes: list[str] = Field(default_factory=list)
    #: the node runs the UDP observer, so arrivals at it can be judged
    observing: bool = False


class MatrixResult(BaseModel):
    """Every probe of one matrix run, with the nodes in inventory order."""

    nodes: list[str]
    addresses: dict[str, str | None]
    runs: list[SourceRun]
    probes: list[Probe]
    timeout: float
    duration_s: float = 0.0
    vxlan_port: int | None = None

    def run(self, name: str) -> SourceRun | None:
        return next((r for r in self.runs if r.name == name), None)

    def cell(self, source: str, target: str) -> list[Probe]:
        return [p for p in self.probes if p.source == source and p.target == target]

    @property
    def failed(self) -> list[Probe]:
        return [p for p in self.probes if not p.status.ok]
