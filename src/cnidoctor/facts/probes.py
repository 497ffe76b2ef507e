"""What the pod network probes saw from inside one pod's network namespace on a node.

Node facts say what is configured; these say what happens to a pod's packets: whether
its egress is SNATed (the address the far end saw), whether the cluster DNS answers
cluster and external names, whether the API is reachable over TCP and TLS, and whether
pods on the other nodes answer. Incident 003 is the reason: every host check passed,
the control plane's pods worked by chance, and the workers' pods left with 10.42.x.x.
"""

from __future__ import annotations

import ipaddress

from pydantic import Field

from cnidoctor.facts.base import FactModel
from cnidoctor.facts.cluster import ClusterFacts

#: probe kinds, in report order
PROBE_KINDS = ("egress", "dns", "api-tcp", "api-tls", "pod")


class PodSandbox(FactModel):
    """The pod whose network namespace the probes ran in."""

    netns: str = Field(description="path of its network namespace on the node")
    ip: str | None = Field(default=None, description="its IPv4 address")
    name: str | None = Field(default=None, description="pod name, when the runtime said")
    namespace: str | None = None
    found_by: str = Field(description="crictl (the container runtime) or netns (the listing)")

    @property
    def label(self) -> str:
        who = f"{self.namespace}/{self.name}" if self.name else self.netns.rsplit("/", 1)[-1]
        return f"pod {who} ({self.ip})" if self.ip else f"pod {who}"


class ProbeResult(FactModel):
    """One probe from the pod: ok True (passed), False (failed) or None (not run: why)."""

    probe: str = Field(description="egress, dns, api-tcp, api-tls or pod")
    target: str = Field(description="URL, name, host:port or pod address")
    label: str | None = Field(
        default=None, description="cluster/external (dns), the target's role (api), node (pod)"
    )
    ok: bool | None = None
    detail: str = ""
    source: str | None = Field(default=None, description="the pod-side address used")
    seen: str | None = Field(default=None, description="egress: the source the far end reported")
    rcode: str | None = Field(default=None, description="dns: NOERROR, NXDOMAIN, SERVFAIL...")
    answers: list[str] = Field(default_factory=list)
    timed_out: bool = False
    elapsed_ms: int | None = None

    def describe(self) -> str:
        what = {"api-tcp": "tcp", "api-tls": "tls", "pod": "ping"}.get(self.probe, self.probe)
        label = f" ({self.label})" if self.label and self.probe != "dns" else ""
        if self.probe == "dns":
            what = f"dns {self.label or ''}".rstrip()
        return f"{what} {self.target}{label}: {self.detail}"


class Sighting(FactModel):
    """A packet the lab's upstream captured (its `tcpdump`): who it came from."""

    proto: str
    src: str
    dport: int
    count: int = 1


class FarEnd(FactModel):
    """What the far end saw, where the probe run owns it (the lab's upstream and DNS pods)."""

    upstream: str = Field(description="the upstream address that captured")
    sightings: list[Sighting] = Field(default_factory=list)
    dns_pod: str | None = Field(default=None, description="this node's cluster DNS pod address")
    dns_log: list[str] = Field(default_factory=list, description="its forwarding outcomes")


class PodProbes(FactModel):
    pod: PodSandbox
    results: list[ProbeResult] = Field(default_factory=list)
    far_end: FarEnd | None = None
    #: pod network namespaces found on the node (the probes use one)
    candidates: int = 1

    def named(self, api: ClusterFacts | None) -> PodProbes:
        """This result with the pod's name from the API when the runtime did not give it
        (the lab and nodes without crictl only know the namespace and the address)."""
        pod = self.pod
        if pod.name or pod.ip is None or api is None:
            return self
        match = next((p for p in api.pods if pod.ip in p.pod_ips and not p.host_network), None)
        if match is None:
            return self
        named = pod.model_copy(update={"name": match.name, "namespace": match.namespace})
        return self.model_copy(update={"pod": named})

    def of(self, probe: str) -> list[ProbeResult]:
        return [r for r in self.results if r.probe == probe]

    def failed(self) -> list[ProbeResult]:
        return [r for r in self.results if r.ok is False]

    def passed(self) -> list[ProbeResult]:
        return [r for r in self.results if r.ok is True]

    def seen_from(self, address: str | None, proto: str | None = None) -> list[Sighting]:
        """Far-end sightings whose source is `address`."""
        if self.far_end is None or not address:
            return []
        return [
            s
            for s in self.far_end.sightings
            if s.src == address and (proto is None or s.proto == proto)
        ]

    def egress_source(self) -> tuple[str | None, str]:
        """(address the far end saw, how we know) for the egress probe, or (None, why not)."""
        for result in self.of("egress"):
            if result.seen:
                return result.seen, f"the far end answered that it saw {result.seen}"
        for sighting in self.seen_from(self.pod.ip, "tcp"):
            times = f" ({sighting.count}x)" if sighting.count > 1 else ""
            return sighting.src, (
                f"the upstream captured TCP SYNs{times} from {sighting.src} to port "
                f"{sighting.dport}; no answer came back"
            )
        return None, "the far end's view is unknown"


def in_network(address: str | None, cidr: str | None) -> bool:
    """Is `address` inside `cidr` (both optional; False when either is unknown or bad)?"""
    if not address or not cidr:
        return False
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False
