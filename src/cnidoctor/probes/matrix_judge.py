"""Findings from a matrix run: failed pairs become evidence on catalog findings.

- route.loop: a probe drew an ICMP redirect or a TTL exceeded (with the limited-TTL path
  when the hops answered);
- api.unreachable, kubelet.unreachable, etcd.peer-unreachable: 6443, 10250, 2379/2380
  timed out, came back unreachable or looped (one finding per destination, each failed
  source a line); "refused" (the path works, nothing listens) is its own warning;
- firewall.input-drop-blocks-cluster-ports: the destination's own INPUT rules, evaluated
  from its firewall facts (analysis/netfilter.py), drop what the matrix could not get
  through; the consequences above are then linked to it as their cause;
- underlay.vxlan-port-blocked: the VXLAN probe never arrived although ICMP and TCP between
  the same nodes work and the destination's evaluated rules accept the port.

Firewall facts are read only for destinations with such failures, after the probes, so
a clean run costs nothing extra.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cnidoctor.analysis.netfilter import Packet, Verdict, evaluate
from cnidoctor.collect import collect_node, judge_facts
from cnidoctor.collectors.base import Collector
from cnidoctor.collectors.iptables import IptablesCollector
from cnidoctor.collectors.network import LinksCollector
from cnidoctor.collectors.nftables import NftablesCollector
from cnidoctor.engine import link_causes
from cnidoctor.errors import CnidoctorError
from cnidoctor.facts.firewall import Iptables, Nftables
from cnidoctor.facts.network import Links
from cnidoctor.models import Finding, Severity
from cnidoctor.probes.matrix_model import MatrixResult, Probe, Status
from cnidoctor.probes.matrix_run import MatrixNode
from cnidoctor.rules.base import Rule
from cnidoctor.rules.firewall import decided_by
from cnidoctor.transports import transport_for

FIREWALL_COLLECTORS: tuple[type[Collector], ...] = (
    IptablesCollector,
    NftablesCollector,
    LinksCollector,
)
#: statuses that say "the packet did not get there" (refused means it did)
NOT_THROUGH = (Status.TIMEOUT, Status.UNREACHABLE, Status.LOOP, Status.FILTERED)
#: TCP outcomes a destination's own rules may explain (REJECT answers like a closed port)
_TCP_SUSPECT = (Status.TIMEOUT, Status.UNREACHABLE, Status.REFUSED)


def _rule(rule_id: str, severity: Severity, causes: tuple[str, ...] = ()) -> type[Rule]:
    """A registry entry for a matrix finding: text from the rule or catalog of that id."""
    from cnidoctor.reports.explain import describe

    info = describe(rule_id)
    return type(
        rule_id.replace(".", "_").replace("-", "_"),
        (Rule,),
        {
            "id": rule_id,
            "severity": severity,
            "title": info.title,
            "explanation": info.explanation,
            "fix": info.fix,
            "causes": causes,
            "needs": (),
            "scope": "matrix",
        },
    )


_SYMPTOMS = ("etcd.peer-unreachable", "api.unreachable", "kubelet.unreachable")
FIREWALL = _rule(
    "firewall.input-drop-blocks-cluster-ports",
    Severity.CRITICAL,
    (*_SYMPTOMS, "underlay.vxlan-port-blocked"),
)
LOOP = _rule("route.loop", Severity.CRITICAL, _SYMPTOMS)
UNDERLAY = _rule("underlay.vxlan-port-blocked", Severity.CRITICAL)
ETCD = _rule("etcd.peer-unreachable", Severity.CRITICAL, ("api.unreachable",))
API = _rule("api.unreachable", Severity.CRITICAL)
KUBELET = _rule("kubelet.unreachable", Severity.WARNING)
#: order = ties in the report (the engine puts causes first anyway)
MATRIX_RULES: tuple[type[Rule], ...] = (FIREWALL, LOOP, UNDERLAY, ETCD, API, KUBELET)
_BY_PORT: dict[int, type[Rule]] = {6443: API, 10250: KUBELET, 2379: ETCD, 2380: ETCD}
_SERVICE = {6443: "the API server", 10250: "the kubelet", 2379: "etcd", 2380: "etcd"}


@dataclass
class NodeFirewall:
    """A destination's firewall facts, as far as they could be read."""

    iptables: Iptables | None = None
    nft: Nftables | None = None
    links: Links | None = None
    error: str | None = None

    @property
    def known(self) -> bool:
        return self.iptables is not None or self.nft is not None


FirewallReader = Callable[[Sequence[MatrixNode]], dict[str, NodeFirewall]]


def read_firewalls(nodes: Sequence[MatrixNode]) -> dict[str, NodeFirewall]:
    """iptables, nft and links of each node, in parallel, one batch per node."""

    def one(node: MatrixNode) -> tuple[str, NodeFirewall]:
        try:
            transport = transport_for(node.spec)
        except CnidoctorError as exc:
            return node.name, NodeFirewall(error=str(exc))
        collection = collect_node(node.name, transport, FIREWALL_COLLECTORS, timeout=20)
        if not collection.collected:
            return node.name, NodeFirewall(error=collection.error)
        facts = judge_facts(collection, FIREWALL_COLLECTORS)

        def value(collector: type[Collector]) -> object:
            fact = facts.get(collector.name)
            return fact.value if fact is not None and fact.ok else None

        return node.name, NodeFirewall(
            iptables=value(IptablesCollector),  # type: ignore[arg-type]
            nft=value(NftablesCollector),  # type: ignore[arg-type]
            links=value(LinksCollector),  # type: ignore[arg-type]
            error=None,
        )

    if not nodes:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(nodes))) as pool:
        return dict(pool.map(one, nodes))


def _iface(links: Links | None, address: str) -> str | None:
    for link in links.links if links else []:
        if any(a.local == address for a in link.addresses):
            return link.ifname
    return None


def verdict(firewall: NodeFirewall, probe: Probe, source_address: str | None) -> Verdict | None:
    """The destination's INPUT verdict for the probe's packet; None when not known."""
    if not firewall.known or probe.port is None:
        return None
    packet = Packet(
        probe.proto,
        probe.port,
        source_address,
        in_iface=_iface(firewall.links, probe.address),
        dst=probe.address,
    )
    rulesets = firewall.iptables.rulesets if firewall.iptables else []
    return evaluate(packet, rulesets, firewall.nft)


def judge(
    result: MatrixResult,
    nodes: Sequence[MatrixNode],
    read: FirewallReader = read_firewalls,
) -> list[Finding]:
    """Every finding of the run, linked along their causes and ordered first dominoes first."""
    by_name = {n.name: n for n in nodes}
    suspects = _firewall_suspects(result)
    firewalls = read([by_name[n] for n in sorted(suspects) if n in by_name]) if suspects else {}
    findings: list[Finding] = []
    findings += _firewall_findings(result, firewalls)
    findings += _loop_findings(result)
    findings += _underlay_findings(result, firewalls)
    findings += _port_findings(result)
    return link_causes(findings, MATRIX_RULES)


def _firewall_suspects(result: MatrixResult) -> set[str]:
    """Destinations whose own rules may explain a failure: TCP or UDP that did not get
    through, or UDP that arrived (the observer sits before netfilter)."""
    tcp = {p.target for p in result.probes if p.proto == "tcp" and p.status in _TCP_SUSPECT}
    udp = {p.target for p in result.probes if p.proto == "udp" and p.status is Status.TIMEOUT}
    # arrived UDP is judged only where something else already failed towards that node
    return tcp | udp


def _pair_text(result: MatrixResult, probe: Probe) -> str:
    source = result.addresses.get(probe.source)
    return (
        f"{probe.source}{f' ({source})' if source else ''} -> "
        f"{probe.target} ({probe.address}) {probe.label}"
    )


def _finding(rule: type[Rule], nodes: list[str], evidence: list[str], **extra: object) -> Finding:
    return Finding(
        id=rule.id,
        severity=extra.get("severity") or rule.severity,  # type: ignore[arg-type]
        nodes=nodes,
        title=str(extra.get("title") or rule.title),
        explanation=rule.explanation,
        evidence=evidence,
        fix=list(extra.get("fix") or rule.fix),  # type: ignore[call-overload]
    )


def _firewall_findings(result: MatrixResult, firewalls: dict[str, NodeFirewall]) -> list[Finding]:
    """Per destination: the probes its own INPUT rules drop (they become FILTERED)."""
    dropped: dict[str, list[tuple[Probe, Verdict]]] = {}
    for probe in result.probes:
        firewall = firewalls.get(probe.target)
        if firewall is None:
            continue
        if probe.proto == "tcp" and probe.status not in _TCP_SUSPECT:
            continue
        if probe.proto == "udp" and probe.status is not Status.OPEN:
            continue  # arrived at the NIC: would the node's own rules take it?
        if probe.proto == "icmp":
            continue
        seen = verdict(firewall, probe, result.addresses.get(probe.source))
        if seen is None or seen.accepted:
            continue
        arrived = "arrives, but " if probe.proto == "udp" else ""
        probe.status = Status.FILTERED
        probe.detail = f"{arrived}dropped by {probe.target}'s INPUT rules: {decided_by(seen)}"
        dropped.setdefault(probe.target, []).append((probe, seen))
    findings = []
    for target, items in sorted(dropped.items()):
        ports = sorted({p.label for p, _ in items})
        evidence = [f"{_pair_text(result, p)}: {p.detail}" for p, _ in items]
        fix = [
            f"allow {label} on {target}'s INPUT from the other nodes, before the rule or "
            "policy that drops it (cnidoctor diagnose shows the commands for its firewall)"
            for label in ports
        ]
        findings.append(
            _finding(
                FIREWALL,
                [target],
                evidence,
                title=f"{target}'s firewall drops {', '.join(ports)} from other nodes",
                fix=fix,
            )
        )
    return findings


def _hop_names(result: MatrixResult) -> dict[str, str]:
    return {address: name for name, address in result.addresses.items() if address}


def _loop_findings(result: MatrixResult) -> list[Finding]:
    """One route.loop finding for the cluster: each looping pair and what it drew."""
    names = _hop_names(result)
    pairs: dict[tuple[str, str], list[Probe]] = {}
    for probe in result.probes:
        if probe.looped:
            pairs.setdefault((probe.source, probe.target), []).append(probe)
    if not pairs:
        return []
    evidence: list[str] = []
    nodes: list[str] = []
    for (source, target), probes in sorted(pairs.items()):
        for name in (source, target):
            if name not in nodes:
                nodes.append(name)
        messages: dict[tuple[str, str, str], str] = {}
        for probe in probes:
            for message in probe.icmp:
                key = (message.kind, message.source, message.detail)
                if message.kind in ("redirect", "time-exceeded") and key not in messages:
                    messages[key] = message.describe()
        icmp = next((p for p in probes if p.proto == "icmp"), probes[0])
        head = f"{_pair_text(result, icmp)}: {icmp.status.value}"
        evidence.append(head + "".join(f"; {m}" for m in messages.values()))
        hops = [h for h in icmp.path]
        if any(h != "*" for h in hops):
            shown = " -> ".join(f"{h} ({names[h]})" if h in names else h for h in hops)
            repeat = len([h for h in hops if h != "*"]) != len({h for h in hops if h != "*"})
            evidence.append(
                f"  limited-TTL path from {source}: {shown}"
                + (" (a hop repeats: the packet goes round)" if repeat else "")
            )
        forwarders = [m.source for p in probes for m in p.icmp if m.kind == "redirect"]
        if forwarders:
            unique = list(dict.fromkeys(forwarders))
            shown = ", ".join(f"{h} ({names[h]})" if h in names else h for h in unique)
            evidence.append(
                f"  forwarded back onto the segment by {shown}: each told {source} to send "
                f"to {icmp.address} directly"
            )
    return [_finding(LOOP, nodes, evidence)]


def _underlay_findings(result: MatrixResult, firewalls: dict[str, NodeFirewall]) -> list[Finding]:
    """VXLAN lost between two nodes whose ICMP and TCP work and whose rules accept it."""
    evidence: list[str] = []
    nodes: list[str] = []
    for probe in result.probes:
        if probe.proto != "udp" or probe.status is not Status.TIMEOUT:
            continue
        others = [p for p in result.cell(probe.source, probe.target) if p is not probe]
        icmp_ok = any(p.proto == "icmp" and p.status.ok for p in others)
        tcp = [p for p in others if p.proto == "tcp"]
        if not icmp_ok or not tcp or not all(p.status.path_works for p in tcp):
            continue
        firewall = firewalls.get(probe.target)
        seen = verdict(firewall, probe, result.addresses.get(probe.source)) if firewall else None
        if seen is not None and not seen.accepted:
            continue  # the destination's own rules explain it (a firewall finding)
        if seen is None:
            why = firewall.error if firewall and firewall.error else "facts not readable"
            judged = f"{probe.target}'s rules could not be evaluated ({why})"
        else:
            judged = f"{probe.target}'s INPUT accepts it ({decided_by(seen)})"
        evidence.append(
            f"{_pair_text(result, probe)}: never arrived, while ICMP and "
            f"{', '.join(sorted({p.label for p in tcp}))} work; {judged}"
        )
        for name in (probe.source, probe.target):
            if name not in nodes:
                nodes.append(name)
    return [_finding(UNDERLAY, nodes, evidence)] if evidence else []


def _port_findings(result: MatrixResult) -> list[Finding]:
    """api/kubelet/etcd findings per destination: sources that cannot get through, and
    (separately, as a warning) ports where nothing listens."""
    failed: dict[tuple[str, str], list[Probe]] = {}
    refused: dict[tuple[str, str], list[Probe]] = {}
    for probe in result.probes:
        if probe.proto != "tcp" or probe.port not in _BY_PORT:
            continue
        rule = _BY_PORT[probe.port]
        if probe.status in NOT_THROUGH or probe.status is Status.ERROR:
            failed.setdefault((rule.id, probe.target), []).append(probe)
        elif probe.status is Status.REFUSED:
            refused.setdefault((rule.id, probe.target), []).append(probe)
    rules = {r.id: r for r in MATRIX_RULES}
    findings = []
    for (rule_id, target), probes in sorted(failed.items()):
        sources = list(dict.fromkeys(p.source for p in probes))
        ports = "/".join(sorted({str(p.port) for p in probes}))
        service = _SERVICE[probes[0].port or 0]
        evidence = [f"{_pair_text(result, p)}: {p.status.value} ({p.detail})" for p in probes]
        address = probes[0].address
        fix = [
            f"on {sources[0]}: ip route get {address} (a loop or a wrong prefix shows there)",
            f"on {target}: allow {ports.replace('/', ',')}/tcp from the other nodes if its "
            "firewall drops it (cnidoctor diagnose evaluates its rules)",
        ]
        findings.append(
            _finding(
                rules[rule_id],
                [target, *sources],
                evidence,
                title=f"{service} on {target} ({ports}/tcp) cannot be reached from "
                f"{len(sources)} node{'s' if len(sources) != 1 else ''}",
                fix=fix,
            )
        )
    for (rule_id, target), probes in sorted(refused.items()):
        ports = "/".join(sorted({str(p.port) for p in probes}))
        service = _SERVICE[probes[0].port or 0]
        evidence = [f"{_pair_text(result, p)}: refused ({p.detail})" for p in probes]
        findings.append(
            _finding(
                rules[rule_id],
                [target],
                evidence,
                severity=Severity.WARNING,
                title=f"nothing listens on {target}'s {ports}/tcp: the path works, is "
                f"{service} running?",
                fix=[f"check {service} on {target} (systemctl status k3s / kubelet)"],
            )
        )
    return findings
