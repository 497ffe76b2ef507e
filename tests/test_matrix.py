"""The connectivity matrix without root: ping and prober output parsers on real captures
(tests/data/matrix, from the seed-002 lab), the plan, and the judge's findings."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnidoctor.collectors.iptables import IptablesCollector
from cnidoctor.collectors.network import LinksCollector
from cnidoctor.collectors.nftables import NftablesCollector
from cnidoctor.errors import UsageError
from cnidoctor.models import ClusterConfig
from cnidoctor.probes.matrix_judge import NodeFirewall, judge
from cnidoctor.probes.matrix_model import MatrixResult, Probe, SourceRun, Status
from cnidoctor.probes.matrix_ping import parse_ping
from cnidoctor.probes.matrix_prober import wrapper
from cnidoctor.probes.matrix_run import MatrixNode, apply_lines, check_nodes, plan, vxlan_port
from helpers import DATA, data, node
from test_firewall_rules import LINKS, iptables

FLANNEL = ClusterConfig(cni="flannel", pod_cidr="10.42.0.0/16")


# -- ping output (iputils, captured in the seed-002 lab) -------------------------------------


@pytest.mark.parametrize(
    ("case", "rc", "status", "kinds"),
    [
        ("ping-reply", 0, Status.OPEN, []),
        ("ping-redirect", 1, Status.TIMEOUT, ["redirect"]),
        ("ping-redirect-loop", 1, Status.TIMEOUT, ["redirect"]),
        ("ping-ttl-exceeded", 1, Status.LOOP, ["time-exceeded"]),
        ("ping-host-unreachable", 1, Status.UNREACHABLE, ["unreachable"]),
        ("ping-net-unreachable", 1, Status.UNREACHABLE, ["unreachable"]),
    ],
)
def test_parse_ping_on_real_output(case: str, rc: int, status: Status, kinds: list[str]) -> None:
    outcome = parse_ping(data(f"matrix/{case}.txt"), rc)
    assert outcome.status is status
    assert [m.kind for m in outcome.icmp] == kinds


def test_parse_ping_reads_the_incident_lines() -> None:
    redirect = parse_ping(data("matrix/ping-redirect.txt"), 1).icmp[0]
    assert (redirect.source, redirect.detail) == ("10.0.0.1", "10.10.0.2")
    assert redirect.describe() == "From 10.0.0.1: icmp_seq=1 Redirect Host(New nexthop: 10.10.0.2)"
    exceeded = parse_ping(data("matrix/ping-ttl-exceeded.txt"), 1).icmp[0]
    assert exceeded.source == "10.10.0.4"
    # incident 002's own lines, as the operator pasted them
    pasted = "From 10.10.0.3 icmp_seq=1 Time to live exceeded\n"
    pasted += "From 10.10.0.4 icmp_seq=2 Redirect Host(New nexthop: 10.10.0.2)\n"
    outcome = parse_ping(pasted, 1)
    assert outcome.status is Status.LOOP
    assert [(m.kind, m.source) for m in outcome.icmp] == [
        ("time-exceeded", "10.10.0.3"),
        ("redirect", "10.10.0.4"),
    ]


def test_parse_ping_local_errors_and_truncation() -> None:
    assert parse_ping("ping: connect: Network is unreachable\n", 2).status is Status.UNREACHABLE
    assert parse_ping("ping: sendmsg: Operation not permitted\n", 1).status is Status.ERROR
    truncated = data("matrix/ping-reply.txt").splitlines()[0]
    assert parse_ping(truncated, None).status is Status.ERROR
    assert parse_ping("", 1).status is Status.TIMEOUT


@given(st.text(max_size=400), st.one_of(st.none(), st.integers(-1, 255)))
def test_parse_ping_never_raises(text: str, rc: int | None) -> None:
    assert isinstance(parse_ping(text, rc).status, Status)


# -- the prober's protocol (captured from nl-k8s-04 in seed-002) ------------------------------


def probes_of(case: str) -> list[Probe]:
    probes = []
    for spec in data(f"matrix/{case}.args").split():
        pid, proto, address, port = spec.split(",")
        probes.append(
            Probe(
                id=pid,
                source="nl-k8s-04",
                target={"10.10.0.2": "nl-k8s-01", "10.10.0.5": "nl-k8s-03"}[address],
                address=address,
                proto=proto,
                port=int(port) or None,
            )
        )
    return probes


def test_python_prober_output_shows_the_loop_and_its_path() -> None:
    probes = probes_of("seed-002-python")
    apply_lines(data("matrix/seed-002-python.out").splitlines(), probes)
    by_id = {p.id: p for p in probes}
    loop = by_id["p0"]
    assert loop.status is Status.LOOP and loop.looped
    assert {(m.kind, m.source) for m in loop.icmp} >= {
        ("redirect", "10.0.0.1"),
        ("time-exceeded", "10.0.0.1"),
    }
    assert loop.path == ["10.10.0.4", "10.0.0.1", "10.10.0.4"]
    # TCP to the looping node: the SYN's TTL ran out, connect() said so
    assert by_id["p1"].status is Status.UNREACHABLE and by_id["p1"].looped
    assert by_id["p3"].status is Status.UNKNOWN and by_id["p3"].detail == "sent"
    assert [by_id[p].status for p in ("p4", "p5", "p6", "p7")] == [Status.OPEN] * 4
    assert by_id["p4"].path == ["10.10.0.5"] * 3
    assert by_id["p9"].status is Status.REFUSED


def test_bash_prober_output_is_judged_through_ping() -> None:
    probes = probes_of("seed-002-bash")
    lines = data("matrix/seed-002-bash.out").splitlines()
    assert any(line.startswith("M observer") for line in lines)
    apply_lines(lines, probes)
    by_id = {p.id: p for p in probes}
    assert by_id["p0"].status is Status.TIMEOUT  # killed at the deadline: no reply
    assert by_id["p1"].status is Status.TIMEOUT  # never reported
    assert by_id["p4"].status is Status.OPEN and by_id["p4"].path == []
    assert by_id["p9"].status is Status.REFUSED


@given(st.lists(st.text(max_size=80), max_size=30))
def test_apply_lines_never_raises(lines: list[str]) -> None:
    probes = probes_of("seed-002-python")
    apply_lines([f"R p0 {line}" for line in lines] + lines, probes)


# -- the plan ------------------------------------------------------------------------------


NODES = [
    MatrixNode("cp1", "netns:cnd-x-1", "10.0.0.1", "control-plane"),
    MatrixNode("w1", "netns:cnd-x-2", "10.0.0.2", "worker"),
    MatrixNode("w2", "netns:cnd-x-3", "10.0.0.3", "worker", etcd=True),
]


def test_plan_probes_each_port_where_it_belongs() -> None:
    probes = plan(NODES, FLANNEL)
    to = {(p.target, p.proto, p.port) for p in probes if p.source == "w1"}
    assert ("cp1", "tcp", 6443) in to and ("w2", "tcp", 6443) not in to
    assert ("w2", "tcp", 2380) in to and ("cp1", "tcp", 2379) in to
    assert {("cp1", "udp", 8472), ("w2", "udp", 8472), ("w2", "icmp", None)} <= to
    assert not [p for p in probes if p.source == p.target]
    assert len({p.id for p in probes}) == len(probes)


def test_vxlan_port_per_cni() -> None:
    assert vxlan_port(FLANNEL) == 8472
    assert vxlan_port(ClusterConfig(cni="calico")) == 4789
    assert vxlan_port(ClusterConfig(cni="flannel", flannel_backend="host-gw")) is None


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        (NODES[:1], "at least two nodes"),
        ([*NODES[:1], MatrixNode("v6", "local", "fd00::1")], "IPv4"),
        ([*NODES[:1], MatrixNode("bad", "local", "10.0.0.1; reboot")], "not an IP address"),
        ([MatrixNode("a", "local", None), MatrixNode("b", "local", None)], "no node has"),
    ],
)
def test_check_nodes_refuses_what_cannot_be_probed(nodes: list[MatrixNode], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        check_nodes(nodes)


def test_wrapper_passes_data_as_quoted_arguments() -> None:
    script = wrapper(["1", "tok", "0", "0", "", "p0,tcp,$(touch /tmp/x),10250"])
    assert "'p0,tcp,$(touch /tmp/x),10250'" in script


# -- the judge -------------------------------------------------------------------------------

A, B = "192.168.1.33", "192.168.1.34"  # B is the address on enp4s0 in the captured LINKS


def result_of(*cells: tuple[str, int | None, Status]) -> MatrixResult:
    """a -> b probes with the given (proto, port, status), b -> a all open."""
    probes = []
    for proto, port, status in cells:
        probes.append(
            Probe(
                id=f"p{len(probes)}",
                source="a",
                target="b",
                address=B,
                proto=proto,
                port=port,
                status=status,
                detail="" if status is Status.OPEN else "no answer before the deadline",
            )
        )
    probes.append(Probe(id="q", source="b", target="a", address=A, proto="icmp", status="open"))
    runs = [SourceRun(name=n, spec="local", ran=True, observing=True) for n in ("a", "b")]
    return MatrixResult(
        nodes=["a", "b"], addresses={"a": A, "b": B}, runs=runs, probes=probes, timeout=1
    )


def firewall_of(case: str) -> NodeFirewall:
    ctx = node(
        {
            IptablesCollector: iptables(case),
            NftablesCollector: [(DATA / "nft/empty.json").read_text()],
            LinksCollector: [LINKS],
        }
    )
    return NodeFirewall(
        iptables=ctx.fact(IptablesCollector),
        nft=ctx.fact(NftablesCollector),
        links=ctx.fact(LinksCollector),
    )


def reader(case: str | None) -> object:
    def read(nodes: Sequence[MatrixNode]) -> dict[str, NodeFirewall]:
        if case is None:
            raise AssertionError("a clean run reads no firewall")
        return {n.name: firewall_of(case) for n in nodes}

    return read


MATRIX_NODES = [MatrixNode("a", "local", A), MatrixNode("b", "local", B)]


def ids(result: MatrixResult, case: str | None) -> list[str]:
    return [f.id for f in judge(result, MATRIX_NODES, reader(case))]  # type: ignore[arg-type]


def test_clean_matrix_has_no_findings_and_reads_no_firewall() -> None:
    result = result_of(
        ("icmp", None, Status.OPEN), ("tcp", 10250, Status.OPEN), ("udp", 8472, Status.OPEN)
    )
    assert ids(result, None) == []


def test_vxlan_lost_between_working_nodes_is_the_underlay() -> None:
    result = result_of(
        ("icmp", None, Status.OPEN), ("tcp", 10250, Status.OPEN), ("udp", 8472, Status.TIMEOUT)
    )
    [finding] = judge(result, MATRIX_NODES, reader("ufw-allow-cluster"))  # type: ignore[arg-type]
    assert finding.id == "underlay.vxlan-port-blocked"
    assert finding.nodes == ["a", "b"]
    assert "8472/udp: never arrived" in finding.evidence[0]
    assert "b's INPUT accepts it" in finding.evidence[0]


def test_vxlan_lost_where_the_node_drops_it_is_not_the_underlay() -> None:
    result = result_of(
        ("icmp", None, Status.OPEN), ("tcp", 10250, Status.OPEN), ("udp", 8472, Status.TIMEOUT)
    )
    assert "underlay.vxlan-port-blocked" not in ids(result, "ufw-enabled")


def test_vxlan_lost_when_tcp_fails_too_is_not_the_underlay() -> None:
    result = result_of(
        ("icmp", None, Status.TIMEOUT),
        ("tcp", 10250, Status.TIMEOUT),
        ("udp", 8472, Status.TIMEOUT),
    )
    assert "underlay.vxlan-port-blocked" not in ids(result, "ufw-allow-cluster")


def test_timeouts_the_destination_firewall_explains_are_its_finding_first() -> None:
    result = result_of(("icmp", None, Status.TIMEOUT), ("tcp", 10250, Status.TIMEOUT))
    findings = judge(result, MATRIX_NODES, reader("ufw-enabled"))  # type: ignore[arg-type]
    assert [f.id for f in findings] == [
        "firewall.input-drop-blocks-cluster-ports",
        "kubelet.unreachable",
    ]
    firewall, kubelet = findings
    assert firewall.nodes == ["b"] and firewall.root_cause
    assert "10250/tcp" in firewall.title and "INPUT rules" in firewall.evidence[0]
    assert kubelet.caused_by == ["firewall.input-drop-blocks-cluster-ports@b"]
    assert result.probes[1].status is Status.FILTERED


def test_refused_is_a_warning_that_nothing_listens() -> None:
    result = result_of(("icmp", None, Status.OPEN), ("tcp", 6443, Status.REFUSED))
    [finding] = judge(result, MATRIX_NODES, reader("ufw-allow-cluster"))  # type: ignore[arg-type]
    assert finding.id == "api.unreachable" and finding.severity == "warning"
    assert finding.title.startswith("nothing listens on b's 6443/tcp")


def test_loop_evidence_from_the_captured_prober() -> None:
    probes = probes_of("seed-002-python")
    apply_lines(data("matrix/seed-002-python.out").splitlines(), probes)
    result = MatrixResult(
        nodes=["nl-k8s-04", "nl-k8s-01", "nl-k8s-03"],
        addresses={"nl-k8s-04": "10.10.0.3", "nl-k8s-01": "10.10.0.2", "nl-k8s-03": "10.10.0.5"},
        runs=[],
        probes=[p for p in probes if p.proto != "udp"],
        timeout=1,
    )
    nodes = [MatrixNode(n, "local", a) for n, a in result.addresses.items()]
    findings = judge(result, nodes, reader("ufw-allow-cluster"))  # type: ignore[arg-type]
    assert findings[0].id == "route.loop" and findings[0].root_cause
    text = "\n".join(findings[0].evidence)
    assert "Redirect Host(New nexthop: 10.10.0.2)" in text
    assert "10.10.0.4 -> 10.0.0.1 -> 10.10.0.4" in text and "a hop repeats" in text
    api = next(f for f in findings if f.id == "api.unreachable")
    assert "route.loop" in api.caused_by
