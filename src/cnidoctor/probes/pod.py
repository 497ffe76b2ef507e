"""The pod network probes: from inside one pod's network namespace on every node.

Node facts say what is configured; only a packet from a pod says what happens to it.
Incident 003: the hosts reached the internet, the control plane's pods did too by
chance, and the workers' pods left with their 10.42.x.x address and timed out. So the
probes run on *every* node and the report says per node what passed.

Per node, two round trips through the node's own transport (local, netns:, ssh://):

1. discovery: the pod sandboxes the container runtime knows (`crictl inspectp`) and the
   namespaces under `/run/netns/cni-*`; one pod with its own network namespace is chosen;
2. the agent (cnidoctor/probes/agent.py, stdlib only, `python3 -c`) inside that namespace
   (`nsenter --net`): egress to the user's `--egress-url` and the source address the far
   end saw; TCP and TLS to the kubernetes service IP (first address of the service CIDR)
   and to the API server; DNS through the cluster DNS service (service CIDR .10) for a
   cluster name and an external name; ICMP to the chosen pod of every other node.

Traffic goes only to the inventory's nodes and pods, the cluster's own service addresses
and the targets the user named: never to a default internet target. On a real node the
probes create nothing (they borrow a running pod's namespace). In the lab, the run starts
the lab's far end (an echo service and resolvers standing for the internet, the cluster
DNS pods' server, the API server's TLS listener) and stops it afterwards, also on Ctrl-C
or SIGTERM. Everything is bounded: per probe timeouts, one deadline per agent, at most
MAX_PEERS pods pinged per node.
"""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from cnidoctor.collect import NodeCollection
from cnidoctor.collectors.pod_probes import (
    PodProbesCollector,
    agent_command,
    choose_sandbox,
    discovery_command,
    far_end_record,
    parse_discovery,
)
from cnidoctor.errors import CnidoctorError, UsageError
from cnidoctor.facts.probes import FarEnd, PodSandbox
from cnidoctor.models import ClusterConfig
from cnidoctor.transports import transport_for
from cnidoctor.transports.base import Command, CommandResult

#: pods of other nodes pinged from each node, at most
MAX_PEERS = 32
#: API server addresses probed, at most (control-plane nodes when the inventory names none)
MAX_API_TARGETS = 3
#: nodes probed at once
MAX_PARALLEL = 8
AGENT_SOURCE = Path(__file__).with_name("agent.py")


class ProbeFarEnd(Protocol):
    """The targets a probe run owns (the lab's): started before the agents, stopped after."""

    egress_url: str
    external_names: tuple[str, ...]

    def start(self) -> None: ...

    def far_end(self, node: str) -> FarEnd | None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class PodProbeOptions:
    """What the user asked for: the egress target, names to resolve, the time budget."""

    egress_url: str | None = None
    #: external names to resolve through the cluster DNS (default: the egress URL's host)
    dns_names: tuple[str, ...] = ()
    cluster_domain: str = "cluster.local"
    #: per probe
    timeout: float = 3.0
    #: per agent: every probe of a node has finished or is abandoned by then
    deadline: float = 8.0
    #: the lab's far end, when probing a lab scenario
    far_end: ProbeFarEnd | None = field(default=None, compare=False)


def check_egress_url(url: str) -> str:
    """A URL the agent can GET: http(s), a host, no whitespace. UsageError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--egress-url {url!r}: give an http:// or https:// URL with a host")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise UsageError(f"--egress-url {url!r}: must not contain spaces or control characters")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise UsageError(f"--egress-url {url!r}: {exc}") from None
    return url


def check_dns_name(name: str) -> str:
    labels = name.rstrip(".").split(".")
    if not name or len(name) > 253 or not all(0 < len(lb) <= 63 for lb in labels):
        raise UsageError(f"--dns-name {name!r}: not a DNS name")
    return name


@dataclass
class _NodePlan:
    name: str
    spec: str
    role: str
    address: str | None
    discovery: CommandResult | None = None
    sandbox: PodSandbox | None = None
    agent: CommandResult | None = None


def run_pod_probes(
    targets: Sequence[Any],
    cluster: ClusterConfig,
    collections: Sequence[NodeCollection],
    options: PodProbeOptions,
    pod_subnets: dict[str, str] | None = None,
) -> None:
    """Probe from a pod on every collected node; records the raw results in `collections`.

    `targets` are diagnose.Target objects (routers are skipped); `pod_subnets` maps node
    names to their podCIDR where the API said, to pick a pod of the node's own subnet.
    """
    collected = {c.name: c for c in collections if c.collected}
    plans = [
        _NodePlan(t.name, t.spec, t.role, t.address)
        for t in targets
        if not getattr(t, "is_router", False) and t.name in collected
    ]
    if not plans:
        return
    source = AGENT_SOURCE.read_text()
    with _interruptible(), _far_end(options.far_end):
        _parallel(plans, _discover)
        subnets = pod_subnets or {}
        for plan in plans:
            if plan.discovery is not None and plan.discovery.ok:
                with contextlib.suppress(CnidoctorError, ValueError):
                    found = parse_discovery(plan.discovery.stdout)
                    plan.sandbox = choose_sandbox(found, subnets.get(plan.name) or cluster.pod_cidr)
        commands = {
            plan.name: agent_command(
                plan.sandbox.netns,
                source,
                agent_spec(plan, plans, cluster, options),
                options.deadline + 4,
            )
            for plan in plans
            if plan.sandbox is not None
        }

        def probe(plan: _NodePlan) -> None:
            plan.agent = _run_one(plan.spec, commands[plan.name])

        _parallel([p for p in plans if p.name in commands], probe)
        for plan in plans:
            raw = [plan.discovery or CommandResult(argv=["sh"], not_run="not run")]
            if plan.agent is not None:
                raw.append(plan.agent)
                far = options.far_end.far_end(plan.name) if options.far_end else None
                if far is not None:
                    raw.append(far_end_record(far))
            collected[plan.name].results[PodProbesCollector.name] = raw


def agent_spec(
    plan: _NodePlan, plans: Sequence[_NodePlan], cluster: ClusterConfig, options: PodProbeOptions
) -> dict[str, Any]:
    """What the agent on `plan`'s node probes: only cluster, inventory and named targets."""
    spec: dict[str, Any] = {"timeout": options.timeout, "deadline": options.deadline}
    skipped: list[dict[str, str]] = []
    far = options.far_end
    url = options.egress_url or (far.egress_url if far else None)
    if url:
        spec["egress"] = {"url": url}
    else:
        skipped.append(
            {
                "probe": "egress",
                "why": "no --egress-url given (cnidoctor never picks an internet target itself)",
            }
        )
    service = ipaddress.ip_network(cluster.service_cidr) if cluster.service_cidr else None
    if service is not None and service.version == 4:
        names = [("cluster", f"kubernetes.default.svc.{options.cluster_domain}")]
        external = list(options.dns_names) or list(far.external_names if far else ())
        host = urlsplit(url).hostname if url else None
        if not external and host and not _is_ip(host):
            external = [host]
        names += [("external", n) for n in external]
        if not external:
            skipped.append(
                {
                    "probe": "dns",
                    "label": "external",
                    "why": "no external name (give --dns-name, or --egress-url with a host name)",
                }
            )
        spec["dns"] = {"server": str(service.network_address + 10), "port": 53, "names": names}
    else:
        skipped.append({"probe": "dns", "why": "the service CIDR is not known (inventory)"})
    spec["api"] = api_targets(plans, cluster)
    if not spec["api"]:
        skipped.append({"probe": "api-tcp", "why": "no service CIDR and no API server address"})
    peers = [
        {"node": other.name, "ip": other.sandbox.ip}
        for other in plans
        if other is not plan and other.sandbox is not None and other.sandbox.ip
    ]
    spec["pods"] = peers[:MAX_PEERS]
    spec["skipped"] = skipped
    return spec


def api_targets(plans: Sequence[_NodePlan], cluster: ClusterConfig) -> list[dict[str, Any]]:
    """The kubernetes service (service CIDR's first address, 443) and the API server: the
    inventory's api_server, else the control-plane nodes' addresses on 6443. Loopback
    addresses (k3s.yaml's 127.0.0.1) mean nothing from a pod and are left out."""
    out: list[dict[str, Any]] = []
    if cluster.service_cidr:
        service = ipaddress.ip_network(cluster.service_cidr)
        if service.version == 4:
            host = str(service.network_address + 1)
            out.append({"label": "kubernetes service", "host": host, "port": 443})
    servers: list[tuple[str, int]] = []
    if cluster.api_server:
        parts = urlsplit(cluster.api_server)
        if parts.hostname:
            default = 443 if parts.scheme == "https" and ":" not in parts.netloc else 6443
            with contextlib.suppress(ValueError):
                servers.append((parts.hostname, parts.port or default))
    if not servers:
        servers = [(p.address, 6443) for p in plans if p.role == "control-plane" and p.address]
    for host, port in servers[:MAX_API_TARGETS]:
        if _is_ip(host) and ipaddress.ip_address(host).is_loopback:
            continue
        out.append({"label": "API server", "host": host, "port": port})
    return out


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _discover(plan: _NodePlan) -> None:
    plan.discovery = _run_one(plan.spec, discovery_command())


def _run_one(spec: str, command: Command) -> CommandResult:
    """One command on the node; a node that cannot be reached is a result, not an error."""
    try:
        outcome = transport_for(spec).run_batch([command])
    except CnidoctorError as exc:
        return CommandResult(argv=list(command.argv), not_run=str(exc))
    return outcome.results[0]


def _parallel(plans: Sequence[_NodePlan], work: Callable[[_NodePlan], None]) -> None:
    if not plans:
        return
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(plans))) as pool:
        list(pool.map(work, plans))


@contextlib.contextmanager
def _far_end(far: ProbeFarEnd | None) -> Iterator[None]:
    if far is None:
        yield
        return
    try:
        far.start()
        yield
    finally:
        far.stop()


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """SIGTERM ends the run like Ctrl-C does, so the `finally`s stop what the run started."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
