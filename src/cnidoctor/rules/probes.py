"""What the probes from inside a pod saw: DNS, the API, and per node what passed.

These rules read only the pod probe fact (cnidoctor probe / diagnose --probe): without
it they are skipped, never silently passed. probe.summary states, node by node, which
probes passed, so that a pass seen on the control plane alone is not read as "the
cluster works" (incident 003: the control plane's pods reached the internet by chance).
"""

from __future__ import annotations

from collections.abc import Iterator

from cnidoctor.collectors.pod_probes import PodProbesCollector
from cnidoctor.facts.base import FactStatus
from cnidoctor.facts.probes import PodProbes, ProbeResult
from cnidoctor.models import Severity
from cnidoctor.rules.base import ClusterContext, ClusterRule, Hit, NodeContext, Rule


def _passed_too(probes: PodProbes, results: list[ProbeResult]) -> list[str]:
    return [f"{probes.pod.label}: ok: {r.describe()}" for r in results if r.ok]


class DnsFailure(Rule):
    id = "dns.failure"
    severity = Severity.CRITICAL
    title = "the cluster DNS does not answer from a pod"
    explanation = (
        "Pods resolve every name through the cluster DNS service. When it does not answer, "
        "nothing that uses names works; when it answers cluster names but not external ones, "
        "its own upstream queries are lost (often: the DNS pods' egress is not SNATed), and "
        "Go programs such as Flux report `lookup ghcr.io on 10.43.0.10:53: no such host` or "
        "`server misbehaving`."
    )
    needs = (PodProbesCollector,)
    fix = (
        "kubectl -n kube-system get pods,endpoints -l k8s-app=kube-dns -o wide",
        "kubectl -n kube-system logs -l k8s-app=kube-dns --tail=50",
    )
    causes = ("probe.summary",)

    def check(self, node: NodeContext) -> Iterator[Hit]:
        probes: PodProbes = node.fact(PodProbesCollector).named(node.api)
        dns = probes.of("dns")
        failed = [r for r in dns if r.ok is False]
        if not failed:
            return
        cluster_failed = any(r.label == "cluster" for r in failed)
        evidence = [f"{probes.pod.label}: {r.describe()}" for r in failed]
        evidence += _passed_too(probes, dns)
        far = probes.far_end
        if far is not None:
            evidence += far.dns_log
            if far.dns_pod:
                for seen in probes.seen_from(far.dns_pod, "udp"):
                    evidence.append(
                        f"the upstream resolver ({far.upstream}) captured the DNS pod's query "
                        f"from {seen.src}, its own pod address: not SNATed, so no answer can "
                        "come back"
                    )
        if cluster_failed:
            yield Hit(evidence=evidence)
            return
        yield Hit(
            evidence=evidence,
            title="the cluster DNS answers cluster names but not external ones",
            severity=Severity.WARNING,
            fix=[
                "fix the DNS pods' egress first when egress.no-snat is reported: the cluster "
                "DNS forwards external names from its own pod address",
                "kubectl -n kube-system logs -l k8s-app=kube-dns --tail=50 "
                "(CoreDNS logs `plugin/errors: ... i/o timeout` for each lost upstream query)",
            ],
        )


class ApiUnreachable(Rule):
    id = "api.unreachable"
    severity = Severity.CRITICAL
    title = "a pod cannot reach the API server or the kubernetes service"
    explanation = (
        "CNI agents, CoreDNS and every controller talk to the API through the kubernetes "
        "service IP (10.43.0.1 / 10.96.0.1) or the API server's address. When a pod's TCP "
        "connection does not get through, they cannot start: flannel's `Failed to create "
        "SubnetManager`, `dial tcp 10.96.0.1:443: i/o timeout`."
    )
    needs = (PodProbesCollector,)
    fix = (
        "from the node: nc -vz -w 3 API_ADDRESS 6443 (host path) and compare with the pod",
        "check the API server's firewall (6443/tcp) and kube-proxy's service rules on this node",
    )
    causes = ("probe.summary",)

    def check(self, node: NodeContext) -> Iterator[Hit]:
        probes: PodProbes = node.fact(PodProbesCollector).named(node.api)
        tcp = probes.of("api-tcp")
        failed = [r for r in tcp if r.ok is False]
        if failed:
            evidence = [f"{probes.pod.label}: {r.describe()}" for r in failed]
            yield Hit(evidence=evidence + _passed_too(probes, tcp))


class ApiTlsHandshakeTimeout(Rule):
    id = "api.tls-handshake-timeout"
    severity = Severity.CRITICAL
    title = "TCP to the API connects from a pod, but the TLS handshake does not finish"
    explanation = (
        "The connection opens, then the server's certificate (a few large packets) never "
        "arrives: large packets are lost on the path, typically an MTU mismatch or a VXLAN "
        "offload bug. kubelet reports `net/http: TLS handshake timeout` and the node goes "
        "NotReady."
    )
    needs = (PodProbesCollector,)
    fix = (
        "compare the overlay MTU with the underlay's (ip -d link show flannel.1; FLANNEL_MTU)",
        "ping -M do -s 1400 API_ADDRESS from the node to find the largest packet that passes",
    )
    causes = ("probe.summary",)

    def check(self, node: NodeContext) -> Iterator[Hit]:
        probes: PodProbes = node.fact(PodProbesCollector).named(node.api)
        connected = {r.target for r in probes.of("api-tcp") if r.ok}
        stuck = [r for r in probes.of("api-tls") if r.timed_out and r.target in connected]
        if stuck:
            yield Hit(evidence=[f"{probes.pod.label}: {r.describe()}" for r in stuck])


def _summary_line(probes: PodProbes) -> tuple[list[str], list[str]]:
    """(passed, failed) short descriptions of one node's probe results."""
    passed: list[str] = []
    failed: list[str] = []
    for r in probes.results:
        name = {
            "egress": "egress",
            "dns": f"dns {r.label or ''} {r.target}".replace("  ", " "),
            "api-tcp": f"tcp {r.target}",
            "api-tls": f"tls {r.target}",
            "pod": f"pod {r.target} ({r.label})",
        }.get(r.probe, r.probe)
        if r.ok:
            detail = f" (far end saw {r.seen})" if r.probe == "egress" and r.seen else ""
            passed.append(name + detail)
        elif r.ok is False:
            detail = r.detail
            if r.probe == "egress":
                seen, how = probes.egress_source()
                if seen:
                    detail += f"; {how}"
            failed.append(f"{name}: {detail}")
    return passed, failed


class ProbeSummary(ClusterRule):
    id = "probe.summary"
    severity = Severity.INFO
    title = "pod network probes: what passed on each node"
    explanation = (
        "One line per node: the probes from one of its pods that passed and those that "
        "failed. A probe that passes on the control plane says nothing about the workers: "
        "each node masquerades, routes and filters its pods' traffic itself (incident 003: "
        "the control plane's pods reached the internet by chance, the workers' did not)."
    )
    needs = (PodProbesCollector,)
    fix = ("read the findings this one follows from; each names its node and fix",)

    def check_cluster(self, ctx: ClusterContext) -> Iterator[Hit]:
        lines: list[str] = []
        probed: list[str] = []
        bad: list[str] = []
        good_cp: list[str] = []
        ran = False
        named: list[str] = []
        for node in ctx.nodes:
            fact = node.fact_envelope(PodProbesCollector)
            if fact is None:
                continue
            who = f"{node.name} ({node.role})"
            if not fact.ok:
                if fact.status is FactStatus.ABSENT and "not run" in (fact.reason or ""):
                    continue
                ran = True
                lines.append(f"{who}: not probed: {fact.reason}")
                named.append(node.name)
                continue
            ran = True
            probes: PodProbes = fact.value.named(node.api)
            passed, failed = _summary_line(probes)
            probed.append(node.name)
            text = f"{who} from {probes.pod.label}: passed {len(passed)}"
            text += f" [{'; '.join(passed)}]" if passed else ""
            if failed:
                text += f"; FAILED {len(failed)} [{'; '.join(failed)}]"
                bad.append(node.name)
            elif node.role == "control-plane":
                good_cp.append(node.name)
            lines.append(text)
            named.append(node.name)
        if not ran:
            return
        skipped = [n for n in named if n not in probed]
        if not probed:
            title = "pod probes could not run on any node (see why, per node)"
        elif not bad and skipped and set(probed) <= set(good_cp):
            title = (
                f"pod probes passed on the control plane only ({', '.join(probed)}): that says "
                "nothing about the nodes that were not probed"
            )
        elif not bad:
            title = f"pod probes passed on every probed node ({len(probed)})"
        elif good_cp and set(bad) == {n for n in probed if n not in good_cp}:
            title = (
                f"pod probes pass on the control plane ({', '.join(good_cp)}) but fail on "
                f"{', '.join(bad)}: a check from the control plane does not show the cluster works"
            )
        else:
            title = f"pod probes failed on {', '.join(bad)}"
        if probed and skipped:
            title += f"; not probed: {', '.join(skipped)}"
        yield Hit(
            evidence=lines,
            title=title,
            severity=Severity.WARNING if bad else Severity.INFO,
            extra_nodes=named,
        )


RULES: list[type[Rule]] = [DnsFailure, ApiUnreachable, ApiTlsHandshakeTimeout, ProbeSummary]
