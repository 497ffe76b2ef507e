"""The pod probe fact: discovery and agent output parsers on real captured runs of the lab
(tests/data/pod_probes, see its README), and the rules that read them: each on a
triggering and a clean case."""

from __future__ import annotations

import json

import pytest

from cnidoctor.collectors.pod_probes import (
    MARK,
    PodProbesCollector,
    choose_sandbox,
    parse_discovery,
)
from cnidoctor.engine import link_causes, run_node_rules
from cnidoctor.facts.base import FactStatus
from cnidoctor.facts.cluster import ClusterFacts, KubePod
from cnidoctor.facts.probes import PodSandbox
from cnidoctor.models import ClusterConfig, Severity
from cnidoctor.probes.pod import (
    PodProbeOptions,
    _NodePlan,
    agent_spec,
    api_targets,
    check_dns_name,
    check_egress_url,
)
from cnidoctor.rules.base import ClusterContext, NodeContext
from cnidoctor.rules.egress import EgressNoSnat
from cnidoctor.rules.probes import ApiTlsHandshakeTimeout, ApiUnreachable, DnsFailure, ProbeSummary
from cnidoctor.transports.base import CommandResult
from helpers import DATA, data, findings

CLUSTER = ClusterConfig(
    cni="flannel",
    pod_cidr="10.42.0.0/16",
    service_cidr="10.43.0.0/16",
    api_server="https://10.50.10.10:6443",
)
ROLES = {"cp": "control-plane", "w1": "worker", "w2": "worker"}


def probe_results(case: str) -> list[CommandResult]:
    """The raw results a probe run recorded for one node (a real capture)."""
    raw = json.loads((DATA / "pod_probes" / f"{case}.json").read_text())
    return [CommandResult.model_validate(r) for r in raw]


def probe_node(case: str, name: str | None = None, role: str = "worker") -> NodeContext:
    fact = PodProbesCollector.judge(probe_results(case))
    return NodeContext(
        name=name or case, facts={PodProbesCollector.name: fact}, cluster=CLUSTER, role=role
    )


# --- discovery ---------------------------------------------------------------------------


def test_discovery_in_the_lab_finds_the_pod_behind_cni0() -> None:
    [sandbox] = parse_discovery(data("pod_probes/discovery-lab.txt"))
    assert sandbox.netns.startswith("/run/netns/cni-")
    assert sandbox.ip == "10.42.1.12"
    assert sandbox.found_by == "netns" and sandbox.name is None


def test_discovery_through_crictl_skips_host_network_dns_and_not_ready_sandboxes() -> None:
    found = {s.netns: s for s in parse_discovery(data("pod_probes/discovery-crictl.txt"))}
    app = found["/run/netns/cni-5d2e8a41-9c3b-4f1e-b7a6-0e9d8c7b6a55"]
    assert (app.namespace, app.name, app.ip, app.found_by) == (
        "flux-system",
        "source-controller-6d597849c8-7rnxt",
        "10.42.1.12",
        "crictl",
    )
    # the CoreDNS namespace is known only from the listing (crictl's entry was left out)
    dns = found["/run/netns/cni-0b6c0c55-2a0e-7d4f-1d2e-8f3a9c0d1e2f"]
    assert dns.found_by == "netns"
    assert "/run/netns/cni-77777777-0000-0000-0000-000000000000" not in found  # not ready
    assert len(found) == 3  # no host-network sandbox (cilium's agent)
    chosen = choose_sandbox(list(found.values()), "10.42.1.0/24")
    assert chosen is app


def test_discovery_cut_short_is_an_error() -> None:
    text = data("pod_probes/discovery-crictl.txt").replace(f"{MARK} DONE", "")
    with pytest.raises(Exception, match="cut short"):
        parse_discovery(text)


def test_choose_prefers_the_node_subnet_and_user_pods() -> None:
    a = PodSandbox(netns="/run/netns/cni-a", ip="10.42.9.5", found_by="crictl", name="x")
    b = PodSandbox(netns="/run/netns/cni-b", ip="10.42.1.5", found_by="netns")
    c = PodSandbox(
        netns="/run/netns/cni-c", ip="10.42.1.6", found_by="crictl", namespace="kube-system"
    )
    d = PodSandbox(netns="/run/netns/cni-d", ip="10.42.1.7", found_by="crictl", namespace="app")
    assert choose_sandbox([a, b, c, d], "10.42.1.0/24") is d
    assert choose_sandbox([a, b], "10.42.1.0/24") is b
    assert choose_sandbox([PodSandbox(netns="/x", found_by="netns")], None) is None


# --- the fact ------------------------------------------------------------------------------


def test_not_run_is_absent_not_an_error() -> None:
    fact = PodProbesCollector.judge([])
    assert fact.status is FactStatus.ABSENT and "not run" in (fact.reason or "")


def test_no_pod_on_the_node_is_absent() -> None:
    empty = CommandResult(argv=["sh", "-c", "..."], rc=0, stdout=f"{MARK} DONE\n")
    fact = PodProbesCollector.judge([empty])
    assert fact.status is FactStatus.ABSENT
    assert "no pod with a network namespace of its own" in (fact.reason or "")


def test_python_missing_on_the_node_says_so() -> None:
    discovery, agent, *_ = probe_results("seed-003-w1")
    missing = agent.model_copy(update={"rc": 127, "stdout": "", "stderr": "python3: not found"})
    fact = PodProbesCollector.judge([discovery, missing])
    assert fact.status is FactStatus.ABSENT
    assert fact.reason == "python3 is not installed on the node (the pod probe agent needs it)"
    assert all("<probe agent>" in s or "discovery" in s for s in fact.sources)


def test_agent_output_garbage_is_an_error_with_one_line() -> None:
    discovery, agent, *_ = probe_results("seed-003-w1")
    fact = PodProbesCollector.judge([discovery, agent.model_copy(update={"stdout": "{not json"})])
    assert fact.status is FactStatus.ERROR and "\n" not in (fact.reason or "")


def test_the_worker_capture_parses_with_the_far_end() -> None:
    fact = PodProbesCollector.judge(probe_results("seed-003-w1"))
    probes = fact.value
    assert probes.pod.ip == "10.42.1.12"
    assert {r.probe for r in probes.results} == {"egress", "dns", "api-tcp", "api-tls", "pod"}
    assert probes.egress_source()[0] == "10.42.1.12"
    assert probes.far_end is not None and probes.far_end.dns_pod == "10.42.1.3"
    assert [r.ok for r in probes.of("pod")] == [True, True]


def test_named_takes_the_pod_name_from_the_api() -> None:
    probes = PodProbesCollector.judge(probe_results("seed-003-w1")).value
    pod = KubePod(
        namespace="flux-system", name="source-controller-x", node="w1", pod_ips=["10.42.1.12"]
    )
    named = probes.named(ClusterFacts(reachable=True, pods=[pod]))
    assert named.pod.label == "pod flux-system/source-controller-x (10.42.1.12)"


# --- the runner's choices (pure) --------------------------------------------------------------


def test_agent_spec_targets_only_cluster_inventory_and_named_hosts() -> None:
    cp = _NodePlan("cp", "netns:x", "control-plane", "10.50.10.10")
    w1 = _NodePlan("w1", "netns:y", "worker", "10.50.10.11")
    cp.sandbox = PodSandbox(netns="/run/netns/cni-a", ip="10.42.0.12", found_by="netns")
    w1.sandbox = PodSandbox(netns="/run/netns/cni-b", ip="10.42.1.12", found_by="netns")
    spec = agent_spec(w1, [cp, w1], CLUSTER, PodProbeOptions())
    assert "egress" not in spec
    assert any("no --egress-url" in s["why"] for s in spec["skipped"])
    assert spec["dns"]["server"] == "10.43.0.10"
    assert [tuple(n) for n in spec["dns"]["names"]] == [
        ("cluster", "kubernetes.default.svc.cluster.local")
    ]
    assert spec["api"] == [
        {"label": "kubernetes service", "host": "10.43.0.1", "port": 443},
        {"label": "API server", "host": "10.50.10.10", "port": 6443},
    ]
    assert spec["pods"] == [{"node": "cp", "ip": "10.42.0.12"}]
    spec = agent_spec(w1, [cp, w1], CLUSTER, PodProbeOptions(egress_url="https://ifconfig.me/ip"))
    assert spec["egress"] == {"url": "https://ifconfig.me/ip"}
    assert ("external", "ifconfig.me") in [tuple(n) for n in spec["dns"]["names"]]


def test_api_targets_fall_back_to_control_planes_and_skip_loopback() -> None:
    cp = _NodePlan("cp", "netns:x", "control-plane", "10.0.0.2")
    local = ClusterConfig(service_cidr="10.96.0.0/12", api_server="https://127.0.0.1:6443")
    assert api_targets([cp], local) == [
        {"label": "kubernetes service", "host": "10.96.0.1", "port": 443}
    ]
    assert api_targets([cp], ClusterConfig())[0] == {
        "label": "API server",
        "host": "10.0.0.2",
        "port": 6443,
    }


@pytest.mark.parametrize("url", ["ftp://x/", "http://", "http://a b/", "http://h:99999/"])
def test_bad_egress_urls_are_one_line_usage_errors(url: str) -> None:
    from cnidoctor.errors import UsageError

    with pytest.raises(UsageError, match="--egress-url"):
        check_egress_url(url)


def test_dns_names_are_checked() -> None:
    from cnidoctor.errors import UsageError

    assert check_dns_name("ghcr.io") == "ghcr.io"
    with pytest.raises(UsageError):
        check_dns_name("a..b")


# --- rules on the captures ---------------------------------------------------------------------


def test_dns_failure_for_the_external_name_only_on_the_worker() -> None:
    [finding] = findings(DnsFailure, probe_node("seed-003-w1"))
    assert finding.severity is Severity.WARNING
    assert finding.title == "the cluster DNS answers cluster names but not external ones"
    text = "\n".join(finding.evidence)
    assert "lookup ghcr.io on 10.43.0.10:53: SERVFAIL" in text
    assert "captured the DNS pod's query from 10.42.1.3" in text
    assert findings(DnsFailure, probe_node("seed-003-cp", role="control-plane")) == []


def test_dns_failure_is_critical_when_cluster_names_fail() -> None:
    [finding] = findings(DnsFailure, probe_node("seed-003-w1-broken"))
    assert finding.severity is Severity.CRITICAL
    assert "no answer within 2s (i/o timeout)" in finding.evidence[0]


def test_api_unreachable_names_each_target_and_its_failure() -> None:
    [finding] = findings(ApiUnreachable, probe_node("seed-003-w1-broken"))
    text = "\n".join(finding.evidence)
    assert "tcp 10.50.10.10:6445 (API server): connect: connection refused" in text
    assert "tcp 10.50.10.99:6443 (API server): connect: timed out after 2s" in text
    assert "ok: tcp 10.50.10.10:6444" in text
    assert findings(ApiUnreachable, probe_node("seed-003-w1")) == []


def test_tls_handshake_timeout_only_where_tcp_connected() -> None:
    [finding] = findings(ApiTlsHandshakeTimeout, probe_node("seed-003-w1-broken"))
    assert finding.evidence == [
        "pod cni-7b88a4f6-8fea-5e5f-b962-152887015f10 (10.42.1.12): tls 10.50.10.10:6444 "
        "(API server): TLS: handshake did not finish within 2s"
    ]
    assert findings(ApiTlsHandshakeTimeout, probe_node("seed-003-cp")) == []


def _cluster(cases: dict[str, str]) -> tuple[list[NodeContext], ClusterContext]:
    nodes = [probe_node(case, name, ROLES[name]) for name, case in cases.items()]
    return nodes, ClusterContext(nodes, CLUSTER)


def test_summary_warns_that_a_control_plane_pass_is_not_the_cluster() -> None:
    _nodes, ctx = _cluster({"cp": "seed-003-cp", "w1": "seed-003-w1", "w2": "seed-003-w2"})
    [hit] = ProbeSummary().check_cluster(ctx)
    assert hit.severity is Severity.WARNING
    assert (
        hit.title is not None and "pass on the control plane (cp) but fail on w1, w2" in hit.title
    )
    assert hit.extra_nodes == ["cp", "w1", "w2"]
    cp_line, w1_line, _ = hit.evidence
    assert cp_line.startswith("cp (control-plane) from pod") and "FAILED" not in cp_line
    assert "egress (far end saw 10.50.10.10)" in cp_line
    assert "FAILED 2" in w1_line and "captured TCP SYNs" in w1_line


def test_summary_is_info_when_everything_passes_and_silent_without_probes() -> None:
    _nodes, ctx = _cluster({"cp": "seed-003-cp"})
    [hit] = ProbeSummary().check_cluster(ctx)
    assert (
        hit.severity is Severity.INFO and hit.title == "pod probes passed on every probed node (1)"
    )
    quiet = NodeContext(
        name="n", facts={PodProbesCollector.name: PodProbesCollector.judge([])}, cluster=CLUSTER
    )
    assert list(ProbeSummary().check_cluster(ClusterContext([quiet], CLUSTER))) == []


def test_summary_says_a_control_plane_pass_alone_is_not_the_cluster() -> None:
    discovery = CommandResult(argv=["sh", "-c", "..."], rc=0, stdout=f"{MARK} DONE\n")
    nodes, _ctx = _cluster({"cp": "seed-003-cp"})
    worker = NodeContext(
        name="w1",
        facts={PodProbesCollector.name: PodProbesCollector.judge([discovery])},
        cluster=CLUSTER,
    )
    [hit] = ProbeSummary().check_cluster(ClusterContext([*nodes, worker], CLUSTER))
    assert hit.title is not None and hit.title.startswith("pod probes passed on the control plane")
    assert hit.title.endswith("; not probed: w1")
    assert hit.evidence[1].startswith("w1 (worker): not probed: no pod with a network namespace")


def test_rules_are_skipped_not_passed_without_probes() -> None:
    quiet = NodeContext(
        name="n", facts={PodProbesCollector.name: PodProbesCollector.judge([])}, cluster=CLUSTER
    )
    run = run_node_rules([quiet], [DnsFailure, ApiUnreachable])
    assert len(run.skipped["n"]) == 2


def test_the_worker_findings_link_dns_under_egress() -> None:
    nodes, ctx = _cluster({"cp": "seed-003-cp", "w1": "seed-003-w1"})
    rules = [EgressNoSnat, DnsFailure, ProbeSummary]
    linked = link_causes(run_node_rules(nodes, rules, ctx).findings, rules)
    by_id = {(f.id, tuple(f.nodes)): f for f in linked}
    assert by_id[("egress.no-snat", ("w1",))].root_cause
    assert by_id[("dns.failure", ("w1",))].caused_by == ["egress.no-snat@w1"]
    assert not by_id[("probe.summary", ("cp", "w1"))].root_cause
    assert next(f.id for f in linked) == "egress.no-snat"
