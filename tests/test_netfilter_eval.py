"""The netfilter evaluator and the required-ports table."""

from __future__ import annotations

import pytest

from cnidoctor.analysis.netfilter import Packet, evaluate
from cnidoctor.analysis.ports import required_ports
from cnidoctor.collectors.iptables import parse_iptables_save
from cnidoctor.collectors.nftables import parse_nft_json
from cnidoctor.facts.firewall import IptRuleset, Nftables
from helpers import DATA

PEER = "192.168.1.20"
NODE = "192.168.1.34"


def text(relative: str) -> str:
    path = DATA / relative
    return path.read_text() if path.exists() else ""


def captured(case: str) -> tuple[list[IptRuleset], Nftables]:
    rulesets = [
        parse_iptables_save(text(f"iptables/{case}.{b}-save.txt"), b)
        for b in ("nft", "legacy")
        if (DATA / f"iptables/{case}.{b}-save.txt").exists()
    ]
    return rulesets, parse_nft_json(text(f"nft/{case}.json"))


def ipt(body: str, backend: str = "nft", policy: str = "DROP") -> IptRuleset:
    """A filter table from `-A`/`:` lines (INPUT and FORWARD declared with `policy`)."""
    lines = ["*filter", f":INPUT {policy} [0:0]", f":FORWARD {policy} [0:0]"]
    lines += [ln.strip() for ln in body.strip().splitlines()]
    lines.append("COMMIT")
    return parse_iptables_save("\n".join(lines) + "\n", backend)


def tcp(port: int, src: str = PEER, **kw: object) -> Packet:
    return Packet("tcp", port, src, **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- captures


def test_ufw_enabled_drops_kubelet_by_policy_after_the_user_chain() -> None:
    rulesets, nft = captured("ufw-enabled")
    verdict = evaluate(tcp(10250, dst=NODE), rulesets, nft)
    assert not verdict.accepted and not verdict.uncertain
    assert verdict.decided_by == "policy DROP of chain INPUT"
    assert verdict.where == "iptables-nft filter INPUT"
    assert "ufw-user-input" in verdict.path
    assert verdict.path.index("ufw-user-input") < verdict.path.index("ufw-after-input")


def test_ufw_allow_accepts_by_the_user_rule() -> None:
    rulesets, nft = captured("ufw-allow-cluster")
    for packet in (tcp(6443), tcp(10250), Packet("udp", 8472, PEER)):
        verdict = evaluate(packet, rulesets, nft)
        assert verdict.accepted, verdict
        assert verdict.decided_by.startswith("-A ufw-user-input")
    assert not evaluate(tcp(2379), rulesets, nft).accepted


def test_ufw_allow_from_subnet_depends_on_the_source() -> None:
    rulesets, nft = captured("ufw-allow-from-subnet")
    assert evaluate(tcp(10250, src="192.168.1.99"), rulesets, nft).accepted
    assert not evaluate(tcp(10250, src="10.9.9.9"), rulesets, nft).accepted


def test_ufw_limit_is_accepted_but_uncertain() -> None:
    rulesets, nft = captured("ufw-allow-from-subnet")
    verdict = evaluate(tcp(6443), rulesets, nft)
    assert verdict.accepted and verdict.uncertain
    assert any("-m recent --update" in note for note in verdict.notes)


def test_native_nft_policy_drop_with_a_port_set() -> None:
    rulesets, nft = captured("nft-native-drop")
    assert evaluate(tcp(6443), rulesets, nft).accepted
    assert evaluate(tcp(10250), rulesets, nft).decided_by == "tcp dport { 6443, 10250 } accept"
    vxlan = evaluate(Packet("udp", 8472, PEER), rulesets, nft)
    assert not vxlan.accepted and vxlan.decided_by == "policy drop of chain input"
    assert vxlan.where == "nft inet filter input"
    # udp 6443 is not `tcp dport 6443`
    assert not evaluate(Packet("udp", 6443, PEER), rulesets, nft).accepted


def test_native_nft_named_set_jump_and_range() -> None:
    _, nft = captured("nft-native-jump")
    verdict = evaluate(tcp(2380, src="10.0.0.7"), [], nft)
    assert verdict.accepted and verdict.path == ["input", "cluster"]
    stranger = evaluate(tcp(2380, src="172.16.0.1"), [], nft)
    assert not stranger.accepted and stranger.decided_by == "drop"
    # RETURN from `cluster` goes on in input and reaches the final drop
    assert evaluate(tcp(22, src="10.0.0.7"), [], nft).decided_by == "drop"


def test_firewalld_like_reject_after_goto() -> None:
    _, nft = captured("nft-firewalld-like")
    assert evaluate(tcp(22), [], nft).accepted
    verdict = evaluate(tcp(10250), [], nft)
    assert not verdict.accepted and verdict.decided_by == "reject"
    assert verdict.path == ["filter_INPUT", "filter_INPUT_ZONES", "filter_IN_public"]


def test_iptables_nft_tables_are_not_counted_twice_but_used_without_iptables() -> None:
    rulesets, nft = captured("ufw-enabled")
    verdict = evaluate(tcp(10250), rulesets, nft)
    assert verdict.where.startswith("iptables-nft")
    # without the iptables fact nft gives the table's chains, not its rules (iptables-nft-save
    # has them): the verdict is the policy's, uncertain
    alone = evaluate(tcp(10250), [], nft)
    assert not alone.accepted and alone.where == "nft ip filter INPUT"
    assert alone.decided_by == "policy drop of chain INPUT"
    assert alone.uncertain and any("iptables-nft-save" in n for n in alone.notes)


def test_docker_forward_drop_and_flannel_accept() -> None:
    pod = Packet(
        "tcp",
        80,
        "10.42.1.5",
        in_iface="flannel.1",
        out_iface="cni0",
        dst="10.42.0.9",
        hook="forward",
    )
    rulesets, nft = captured("docker-forward-drop")
    verdict = evaluate(pod, rulesets, nft)
    assert not verdict.accepted and verdict.decided_by == "policy DROP of chain FORWARD"
    assert verdict.path[:2] == ["FORWARD", "DOCKER-USER"]
    rulesets, nft = captured("docker-forward-drop-flannel")
    assert evaluate(pod, rulesets, nft).accepted


def test_legacy_and_nft_both_apply() -> None:
    nft_side = ipt("-A INPUT -p tcp --dport 10250 -j ACCEPT")
    legacy_side = ipt("-A INPUT -p tcp --dport 22 -j ACCEPT", backend="legacy")
    verdict = evaluate(tcp(10250), [nft_side, legacy_side])
    assert not verdict.accepted and verdict.where == "iptables-legacy filter INPUT"
    assert evaluate(tcp(10250), [nft_side]).accepted


def test_no_filter_chain_accepts() -> None:
    verdict = evaluate(tcp(10250), [], parse_nft_json(text("nft/empty.json")))
    assert verdict.accepted and verdict.path == []


# --------------------------------------------------------------------------- semantics


def test_jump_return_and_goto() -> None:
    rs = ipt(
        """
        :A - [0:0]
        :B - [0:0]
        :C - [0:0]
        -A INPUT -j A
        -A INPUT -p tcp --dport 10250 -j ACCEPT
        -A A -p tcp --dport 10250 -j RETURN
        -A A -g B
        -A B -j RETURN
        -A B -j DROP
        -A C -j ACCEPT
        """
    )
    assert evaluate(tcp(10250), [rs]).accepted  # A returns early, INPUT accepts
    verdict = evaluate(tcp(6443), [rs])
    # goto B, B returns: back to INPUT (not to A), then policy
    assert not verdict.accepted and verdict.decided_by == "policy DROP of chain INPUT"
    assert verdict.path == ["INPUT", "A", "B"]


def test_loopback_rules_do_not_match_peers_and_negations_do() -> None:
    rs = ipt(
        """
        -A INPUT -i lo -j ACCEPT
        -A INPUT ! -i lo -p udp --dport 8472 -j ACCEPT
        """
    )
    assert not evaluate(tcp(10250), [rs]).accepted
    assert evaluate(Packet("udp", 8472, PEER), [rs]).accepted


def test_interface_wildcards_and_unknown_interfaces() -> None:
    rs = ipt("-A INPUT -i eth+ -p tcp --dport 10250 -j ACCEPT")
    assert evaluate(tcp(10250, in_iface="eth0"), [rs]).accepted
    assert not evaluate(tcp(10250, in_iface="wlan0"), [rs]).accepted
    unknown = evaluate(tcp(10250), [rs])
    assert unknown.uncertain and not unknown.accepted
    assert "interface eth+" in unknown.notes[0]


def test_log_counter_and_limit_continue() -> None:
    rs = ipt(
        """
        -A INPUT -m limit --limit 3/min -j LOG --log-prefix "x "
        -A INPUT -p tcp -m multiport --dports 6443,10250:10260 -j ACCEPT
        """
    )
    verdict = evaluate(tcp(10255), [rs])
    assert verdict.accepted and not verdict.uncertain


def test_reject_counts_as_drop_and_conntrack_is_new() -> None:
    rs = ipt(
        """
        -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
        -A INPUT -p tcp --dport 10250 -j REJECT --reject-with tcp-reset
        """,
        policy="ACCEPT",
    )
    verdict = evaluate(tcp(10250), [rs])
    assert not verdict.accepted and "REJECT" in verdict.decided_by


def test_source_ports_are_ephemeral() -> None:
    rs = ipt(
        """
        -A INPUT -p udp --sport 67 --dport 8472 -j ACCEPT
        -A INPUT -p udp --sport 1024:65535 --dport 8472 -j ACCEPT
        """
    )
    verdict = evaluate(Packet("udp", 8472, PEER), [rs])
    assert verdict.accepted and not verdict.uncertain
    assert "--sport 1024:65535" in verdict.decided_by


def test_destination_known_or_unknown() -> None:
    rs = ipt(
        """
        -A INPUT -d 224.0.0.251/32 -p udp --dport 8472 -j ACCEPT
        -A INPUT -d 192.168.1.34/32 -p tcp --dport 10250 -j ACCEPT
        """
    )
    assert not evaluate(Packet("udp", 8472, PEER), [rs]).accepted
    assert not evaluate(Packet("udp", 8472, PEER), [rs]).uncertain  # multicast never matches
    assert evaluate(tcp(10250, dst=NODE), [rs]).accepted
    unsure = evaluate(tcp(10250), [rs])
    assert unsure.uncertain and "own address is not known" in unsure.notes[0]


def test_unknown_matches_fork_only_when_they_could_decide() -> None:
    rs = ipt(
        """
        -A INPUT -m set --match-set k8s src -j ACCEPT
        -A INPUT -m set --match-set k8s src -j LOG
        -A INPUT -p tcp --dport 10250 -j ACCEPT
        """
    )
    assert not evaluate(tcp(10250), [rs]).uncertain  # both branches accept
    verdict = evaluate(tcp(6443), [rs])
    assert not verdict.accepted and verdict.uncertain
    assert verdict.notes == [
        "could not evaluate `-A INPUT -m set --match-set k8s src -j ACCEPT` "
        "(-m set --match-set k8s src)"
    ]


def test_unknown_source_forks_on_source_matches() -> None:
    rs = ipt("-A INPUT -s 10.0.0.0/8 -p tcp --dport 10250 -j ACCEPT")
    verdict = evaluate(tcp(10250, src=None), [rs])  # type: ignore[arg-type]
    assert verdict.uncertain and not verdict.accepted
    _, nft = captured("nft-native-jump")
    verdict = evaluate(tcp(10250, src=None), [], nft)  # type: ignore[arg-type]
    assert verdict.uncertain and "peer's address is not known" in verdict.notes[0]


def test_missing_chain_and_loops_are_uncertain_not_crashes() -> None:
    rs = ipt(
        """
        :LOOP - [0:0]
        -A INPUT -j LOOP
        -A LOOP -j LOOP
        """
    )
    verdict = evaluate(tcp(10250), [rs])
    assert verdict.uncertain and not verdict.accepted
    nft = parse_nft_json(
        '{"nftables": [{"table": {"family": "inet", "name": "t"}}, '
        '{"chain": {"family": "inet", "table": "t", "name": "in", "type": "filter", '
        '"hook": "input", "prio": 0, "policy": "drop"}}, '
        '{"rule": {"family": "inet", "table": "t", "chain": "in", '
        '"expr": [{"jump": {"target": "gone"}}]}}]}'
    )
    assert evaluate(tcp(10250), [], nft).uncertain


def test_priorities_and_a_drop_anywhere_is_final() -> None:
    _, nft = captured("nft-native-drop")
    rs = ipt("-A INPUT -p udp --dport 8472 -j ACCEPT")
    assert not evaluate(Packet("udp", 8472, PEER), [rs], nft).accepted
    # the iptables-nft ruleset makes ip/ip6 xtables tables skipped, but native inet stays
    verdict = evaluate(Packet("udp", 8472, PEER), [rs], nft)
    assert verdict.where == "nft inet filter input"


def test_many_unknown_rules_stay_bounded() -> None:
    body = "\n".join(f"-A INPUT -m recent --name r{i} --rcheck -j ACCEPT" for i in range(200))
    verdict = evaluate(tcp(10250), [ipt(body)])
    assert verdict.uncertain and not verdict.accepted


# --------------------------------------------------------------------------- ports


def test_nodes_sharing_a_ruleset_keep_their_own_verdicts() -> None:
    """Identical rulesets (two nodes') are walked once per packet their rules can tell
    apart: a -d test on one node's address still tells its packets from another node's."""
    rules = "-A INPUT -d 10.0.0.9/32 -p udp -j DROP"
    first, second = ipt(rules, policy="ACCEPT"), ipt(rules, policy="ACCEPT")
    dropped = evaluate(Packet("udp", 8472, PEER, dst="10.0.0.9"), [first])
    assert not dropped.accepted and dropped.decided_by == rules
    assert evaluate(Packet("udp", 8472, PEER, dst="10.0.0.8"), [second]).accepted
    again = evaluate(Packet("udp", 8472, PEER, dst="10.0.0.9"), [second])
    assert again == dropped and again.path is not dropped.path
    unknown = evaluate(Packet("udp", 8472, PEER), [second])  # the node's address not known
    assert unknown.accepted and unknown.uncertain


@pytest.mark.parametrize(
    ("role", "cni", "etcd", "backend", "expected"),
    [
        ("worker", "flannel", None, None, ["10250/tcp", "8472/udp"]),
        ("worker", "auto", None, None, ["10250/tcp", "8472/udp"]),
        (
            "control-plane",
            "flannel",
            None,
            None,
            ["6443/tcp", "10250/tcp", "2379-2380/tcp", "8472/udp"],
        ),
        (
            "control-plane",
            "flannel",
            False,
            "wireguard-native",
            ["6443/tcp", "10250/tcp", "51820-51821/udp"],
        ),
        ("worker", "cilium", None, None, ["10250/tcp", "8472/udp", "4240/tcp"]),
        ("worker", "calico", None, None, ["10250/tcp", "179/tcp", "4789/udp"]),
        ("worker", "flannel", None, "host-gw", ["10250/tcp"]),
    ],
)
def test_required_ports(
    role: str, cni: str, etcd: bool | None, backend: str | None, expected: list[str]
) -> None:
    assert [p.label for p in required_ports(role, cni, etcd, backend)] == expected
