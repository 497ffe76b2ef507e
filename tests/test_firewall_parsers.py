"""Firewall parsers on real captures (tests/data/{iptables,nft,ufw}, see iptables/capture.py)."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnidoctor.analysis.netfilter import Packet, evaluate
from cnidoctor.analysis.snat import egress_packet, pod_egress_nat
from cnidoctor.collectors import nftables
from cnidoctor.collectors.base import FactParseError
from cnidoctor.collectors.firewall import FirewalldCollector, UfwCollector, parse_ufw
from cnidoctor.collectors.iptables import IptablesCollector, parse_iptables_save
from cnidoctor.collectors.nftables import NftablesCollector, parse_nft_json
from cnidoctor.facts.base import FactStatus
from cnidoctor.transports.base import CommandResult
from helpers import DATA, failed, ok


def text(relative: str) -> str:
    """A capture; captures of empty output are not stored, so a missing file is ''."""
    path = DATA / relative
    return path.read_text() if path.exists() else ""


def ipt_results(case: str, plain: CommandResult | None = None) -> list[CommandResult]:
    """The six iptables commands' results for a captured scenario."""
    results = []
    for name in ("nft-save", "legacy-save", None, "nft-save6", "legacy-save6", None):
        if name is None:
            results.append(plain or ok(text(f"iptables/{case}.nft-save.txt")))
        else:
            stderr = text(f"iptables/{case}.{name}.stderr")
            results.append(ok(text(f"iptables/{case}.{name}.txt"), stderr))
    return [
        r.model_copy(update={"argv": list(c.argv)})
        for r, c in zip(results, IptablesCollector.commands, strict=True)
    ]


# --------------------------------------------------------------------------- iptables-save


def test_ufw_enabled_capture_parses_policies_chains_and_jumps() -> None:
    rs = parse_iptables_save(text("iptables/ufw-enabled.nft-save.txt"))
    assert rs.backend == "nft"  # from the "(nf_tables)" header
    filt = rs.tables["filter"]
    assert filt.chains["INPUT"].policy == "DROP"
    assert filt.chains["FORWARD"].policy == "DROP"
    assert filt.chains["ufw-user-input"].policy is None
    assert [r.target for r in filt.chains["INPUT"].rules][:2] == [
        "ufw-before-logging-input",
        "ufw-before-input",
    ]
    lo = filt.chains["ufw-before-input"].rules[0]
    assert lo.in_iface is not None and lo.in_iface.values == ["lo"] and lo.target == "ACCEPT"
    dhcp = next(r for r in filt.chains["ufw-before-input"].rules if r.sport is not None)
    assert dhcp.sport.ranges == [(67, 67)] and dhcp.dport is not None
    assert dhcp.dport.ranges == [(68, 68)] and dhcp.protocol.values == ["udp"]
    ctstate = filt.chains["ufw-before-input"].rules[1]
    assert ctstate.ctstate is not None and ctstate.ctstate.values == ["RELATED", "ESTABLISHED"]
    log = filt.chains["ufw-after-logging-input"].rules[0]
    assert log.rate_limited and log.target == "LOG"
    assert log.target_args == ["--log-prefix", "[UFW BLOCK] "]
    assert log.text.startswith("-A ufw-after-logging-input -m limit")


def test_ufw_allow_rules_and_limit_keep_unknown_matches() -> None:
    rs = parse_iptables_save(text("iptables/ufw-allow-from-subnet.nft-save.txt"))
    user = rs.tables["filter"].chains["ufw-user-input"].rules
    assert user[0].src is not None and user[0].src.value == "192.168.1.0/24"
    assert user[0].dport is not None and user[0].dport.contains(10250)
    recent = user[2]
    assert recent.target == "ufw-user-limit"
    assert recent.unknown == [
        "-m recent --update --seconds 30 --hitcount 6 --name DEFAULT "
        "--mask 255.255.255.255 --rsource"
    ]


def test_docker_capture_negations_addrtype_and_nat() -> None:
    rs = parse_iptables_save(text("iptables/docker-forward-drop.nft-save.txt"))
    assert set(rs.tables) == {"filter", "nat"}
    nat_pre = rs.tables["nat"].chains["PREROUTING"].rules[0]
    assert nat_pre.dst_type is not None and nat_pre.dst_type.values == ["LOCAL"]
    masq = rs.tables["nat"].chains["POSTROUTING"].rules[0]
    assert masq.out_iface is not None and masq.out_iface.negated
    assert masq.target == "MASQUERADE"
    fwd = rs.tables["filter"].chains["FORWARD"]
    assert fwd.policy == "DROP" and len(fwd.rules) == 6
    out = parse_iptables_save(text("iptables/docker-forward-drop.nft-save.txt"))
    assert out == rs  # parsing is pure


def test_multiport_comment_and_negated_ctstate() -> None:
    rs = parse_iptables_save(text("iptables/kube-proxy-flannel.nft-save.txt"))
    fw = rs.tables["filter"].chains["KUBE-FIREWALL"].rules[0]
    assert fw.src is not None and fw.src.negated and fw.src.value == "127.0.0.0/8"
    assert fw.ctstate is not None and fw.ctstate.negated
    assert fw.comment == "block incoming localnet connections"
    fwd = rs.tables["filter"].chains["KUBE-FORWARD"].rules[1]
    assert fwd.mark is not None and fwd.mark.values == ["0x4000/0x4000"]


def test_legacy_header_without_backend_means_legacy() -> None:
    rs = parse_iptables_save(text("iptables/both-backends.legacy-save.txt"))
    assert rs.backend == "legacy" and rs.rule_count == 2
    assert rs.tables["filter"].chains["FORWARD"].policy == "DROP"


def test_port_ranges_and_open_ends() -> None:
    rs = parse_iptables_save(
        "*filter\n:INPUT ACCEPT [0:0]\n"
        "-A INPUT -p tcp -m multiport --dports 80,2379:2380,:22 -j ACCEPT\n"
        "-A INPUT -p udp -m udp ! --dport 30000: -j DROP\n"
        "COMMIT\n"
    )
    first, second = rs.tables["filter"].chains["INPUT"].rules
    assert first.dport is not None and first.dport.ranges == [(80, 80), (2379, 2380), (0, 22)]
    assert second.dport is not None and second.dport.ranges == [(30000, 65535)]
    assert second.dport.negated and not second.dport.contains(30001)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("*filter\n:INPUT DROP [0:0]\n-A INPUT -j ACCEPT\n", "no COMMIT"),
        (":INPUT DROP [0:0]\n", "outside a table"),
        ("*filter\n-A INPUT -j ACCEPT\nCOMMIT\n", "undeclared chain"),
        ('*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m comment --comment "x\nCOMMIT\n', "quotation"),
        ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p\nCOMMIT\n", "without a value"),
        ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT --dport 99999 -j ACCEPT\nCOMMIT\n", "range"),
        ("<html>502 Bad Gateway</html>\n", "outside a table"),
    ],
)
def test_malformed_iptables_save_is_a_parse_error(bad: str, message: str) -> None:
    with pytest.raises(FactParseError, match=message):
        parse_iptables_save(bad)


def test_truncated_capture_is_a_parse_error() -> None:
    full = text("iptables/ufw-enabled.nft-save.txt")
    with pytest.raises(FactParseError, match="truncated"):
        parse_iptables_save(full[: len(full) // 2])


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_arbitrary_text_never_raises_anything_else(garbage: str) -> None:
    with contextlib.suppress(FactParseError):
        parse_iptables_save(garbage)


@settings(max_examples=100, deadline=None)
@given(
    st.text(alphabet="*:-ACEIMNOPTUWacdefilmnoprstu \n", max_size=200).map(
        lambda s: "*filter\n:INPUT DROP [0:0]\n" + s
    )
)
def test_near_valid_text_never_raises_anything_else(garbage: str) -> None:
    with contextlib.suppress(FactParseError):
        parse_iptables_save(garbage)


_CHAIN = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,20}", fullmatch=True)
_RULE = st.builds(
    lambda proto, port, src, target: f"-p {proto} -m {proto} --dport {port} -s {src} -j {target}",
    st.sampled_from(["tcp", "udp"]),
    st.integers(0, 65535),
    st.from_regex(r"10\.[0-9]{1,2}\.0\.0/16", fullmatch=True),
    st.sampled_from(["ACCEPT", "DROP", "RETURN", "LOG"]),
)


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        _CHAIN,
        st.tuples(st.sampled_from(["ACCEPT", "DROP", "-"]), st.lists(_RULE, max_size=5)),
        min_size=1,
        max_size=6,
    )
)
def test_generated_ruleset_round_trips(chains: dict[str, tuple[str, list[str]]]) -> None:
    lines = ["# Generated by iptables-save v1.8.9 (nf_tables) on today", "*filter"]
    lines += [f":{name} {policy} [0:0]" for name, (policy, _) in chains.items()]
    lines += [f"-A {name} {rule}" for name, (_, rules) in chains.items() for rule in rules]
    lines.append("COMMIT")
    rs = parse_iptables_save("\n".join(lines) + "\n")
    parsed = rs.tables["filter"].chains
    assert list(parsed) == list(chains)
    for name, (policy, rules) in chains.items():
        assert parsed[name].policy == (None if policy == "-" else policy)
        assert len(parsed[name].rules) == len(rules)
        assert [r.text for r in parsed[name].rules] == [f"-A {name} {r}" for r in rules]


# --------------------------------------------------------------------------- collector


def test_collector_reads_both_backends_and_families_with_the_legacy_warning() -> None:
    fact = IptablesCollector.judge(ipt_results("both-backends"))
    assert fact.ok, fact.reason
    value = fact.value
    assert {(r.backend, r.family) for r in value.rulesets} >= {
        ("nft", "ipv4"),
        ("legacy", "ipv4"),
        ("nft", "ipv6"),
    }
    assert value.default_backend == "nft"
    assert any("iptables-legacy tables present" in w for w in value.warnings)
    assert value.get("legacy") is not None and value.get("legacy").is_populated


def test_collector_falls_back_to_plain_iptables_save() -> None:
    results = ipt_results("ufw-enabled")
    for i in (0, 1, 3, 4):
        results[i] = results[i].model_copy(update={"rc": 127, "stdout": ""})
    fact = IptablesCollector.judge(results)
    assert fact.ok
    found = [(r.backend, r.family) for r in fact.value.rulesets]
    assert found == [("nft", "ipv4"), ("nft", "ipv6")]


def test_collector_absent_without_iptables_and_error_on_failure() -> None:
    missing = [failed(127, "sh: iptables-save: not found")] * 6
    missing = [
        r.model_copy(update={"argv": list(c.argv)})
        for r, c in zip(missing, IptablesCollector.commands, strict=True)
    ]
    fact = IptablesCollector.judge(missing)
    assert fact.status is FactStatus.ABSENT and "not installed" in (fact.reason or "")
    results = ipt_results("empty")
    results[0] = failed(4, "iptables-nft-save: Permission denied (you must be root)")
    results[1] = failed(127)
    results[2] = failed(127)
    fact = IptablesCollector.judge(results)
    assert fact.status is FactStatus.ERROR and "Permission denied" in (fact.reason or "")


# --------------------------------------------------------------------------- nft -j


def test_native_nft_capture() -> None:
    nft = parse_nft_json(text("nft/nft-native-drop.json"))
    [table] = nft.tables
    assert table.label == "inet filter" and not table.is_iptables_nft
    chain = table.chains["input"]
    assert (chain.hook, chain.prio, chain.policy, chain.type) == ("input", 0, "drop", "filter")
    texts = [r.text for r in chain.rules]
    assert "tcp dport { 6443, 10250 } accept" in texts
    assert texts[0] == "ct state vmap { invalid : drop, established : accept, related : accept }"
    assert texts[1] == "iifname lo accept"
    assert chain.rules[-1].comment == "dropped by policy"


def test_named_sets_ranges_and_jumps_are_resolved() -> None:
    nft = parse_nft_json(text("nft/nft-native-jump.json"))
    chains = nft.tables[0].chains
    saddr = chains["input"].rules[2].statements[0].match
    assert saddr is not None and saddr.values == ["10.0.0.0/24", "192.168.1.0/24"]
    assert chains["input"].rules[2].statements[-1].target == "cluster"
    assert chains["cluster"].rules[0].statements[0].match.values == ["2379-2380", "6443"]
    assert not chains["cluster"].is_base


def test_iptables_nft_tables_are_recognised_and_xt_is_unknown() -> None:
    captured = text("nft/ufw-enabled.json")
    nft = parse_nft_json(captured)
    assert {t.label for t in nft.tables} == {"ip filter", "ip6 filter"}
    assert all(t.is_iptables_nft for t in nft.tables)
    assert nft.native_tables() == []
    # iptables-nft-save has their rules: only the base chains are kept, the rules counted
    table = nft.table("ip", "filter")
    chains = table.chains.values()
    assert [(c.name, c.hook, c.policy, c.rules) for c in chains] == [
        ("INPUT", "input", "drop", []),
        ("OUTPUT", "output", "accept", []),
        ("FORWARD", "forward", "drop", []),
    ]
    rules = [item["rule"] for item in json.loads(captured)["nftables"] if "rule" in item]
    assert table.rules_elided == sum(r["family"] == "ip" for r in rules) == 65
    # the same rules in a native table (family inet) are read, xt expressions as unknown
    native = parse_nft_json(captured.replace('"family": "ip", ', '"family": "inet", '))
    assert native.table("inet", "filter").rules_elided == 0
    rules = native.table("inet", "filter").chains["ufw-before-input"].rules
    assert rules[1].statements[0].kind == "unknown"
    assert rules[1].text == "<xt match conntrack> accept"
    firewalld = parse_nft_json(text("nft/nft-firewalld-like.json"))
    assert firewalld.table("inet", "firewalld") is not None
    assert firewalld.tables[0].chains["filter_INPUT"].prio == 10


NFT_CAPTURES = sorted(
    str(path.relative_to(DATA))
    for pattern in ("nft/*.json", "snat/*.nft.json")
    for path in DATA.glob(pattern)
)


def older_layout(captured: str) -> str:
    """The document as nft before 1.0.5 printed it: each chain's rules right after it."""
    items = json.loads(captured)["nftables"]
    rules = [item["rule"] for item in items if "rule" in item]
    out = []
    for item in items:
        if "rule" not in item:
            out.append(item)
        if "chain" in item:
            c = item["chain"]
            mine = (c["family"], c["table"], c["name"])
            out += [{"rule": r} for r in rules if (r["family"], r["table"], r["chain"]) == mine]
    return json.dumps({"nftables": out})


@pytest.mark.parametrize("capture", NFT_CAPTURES)
def test_nft_read_table_by_table_equals_the_whole_document_in_both_layouts(capture: str) -> None:
    captured = text(capture)
    whole = nftables._build_nft(json.loads(captured)["nftables"])
    for layout in (captured, older_layout(captured)):
        fast = nftables._parse_by_table(layout)
        assert fast == whole or (fast is None and whole.tables == [])  # empty: no table to cut


def test_damaged_iptables_nft_rules_are_read_whole_for_the_error() -> None:
    captured = older_layout(text("nft/kube-proxy-services.json"))
    middle = captured.index(', {"chain": {"family": "ip", "table": "nat", "name": "KUBE-SVC')
    with pytest.raises(FactParseError, match="not JSON"):
        parse_nft_json(captured[: middle - 30] + captured[middle:])


def test_iptables_nft_rules_not_read_make_the_verdicts_uncertain() -> None:
    """Without iptables-nft-save, an iptables-nft table's base chains are all nft -j gives."""
    nft = parse_nft_json(text("nft/kube-proxy-flannel.json"))
    [table] = nft.tables
    assert table.rules_elided == 12 and table.chains["INPUT"].policy == "accept"
    verdict = evaluate(Packet("tcp", 10250, "192.168.1.20"), [], nft)
    assert verdict.accepted and verdict.uncertain
    assert verdict.decided_by == "policy accept of chain INPUT"
    assert "iptables-nft table ip filter (12 rules)" in verdict.notes[0]
    snat = parse_nft_json(text("snat/flannel-masq.nft.json"))
    nat = pod_egress_nat(egress_packet("10.42.1.12", "1.1.1.1", "eth0"), [], snat)
    assert not nat.nat and nat.uncertain
    assert any("iptables-nft-save" in note for note in nat.notes)
    ipt = parse_iptables_save(text("snat/flannel-masq.nft-save.txt"), "nft")
    assert pod_egress_nat(egress_packet("10.42.1.12", "1.1.1.1", "eth0"), [ipt], snat).nat


def test_empty_ruleset() -> None:
    assert parse_nft_json(text("nft/empty.json")).tables == []
    assert parse_nft_json("").tables == []


@pytest.mark.parametrize(
    "bad",
    [
        '{"nftables": [{"table": {"family": "inet", "name": "x"',
        '["not", "an", "object"]',
        '{"nftables": [{"chain": {"family": "inet", "table": "nope", "name": "c"}}]}',
        '{"nftables": [{"table": {"family": "inet"}}]}',
        '{"nftables": [{"table": {"family": "inet", "name": "t"}}, '
        '{"chain": {"family": "inet", "table": "t", "name": "c"}}, '
        '{"rule": {"family": "inet", "table": "t", "chain": "c", "expr": [{"jump": {}}]}}]}',
        '{"nftables": [1, 2]}',
    ],
)
def test_malformed_nft_json_is_a_parse_error(bad: str) -> None:
    with pytest.raises(FactParseError):
        parse_nft_json(bad)


def test_truncated_nft_capture_is_a_parse_error() -> None:
    full = text("nft/ufw-enabled.json")
    fact = NftablesCollector.judge([ok(full[:-200]).model_copy(update={"argv": ["nft"]})])
    assert fact.status is FactStatus.ERROR and "not JSON" in (fact.reason or "")


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "nftables",
                        "table",
                        "chain",
                        "rule",
                        "expr",
                        "family",
                        "name",
                        "table",
                        "match",
                        "left",
                        "right",
                        "set",
                        "elem",
                    ]
                ),
                children,
                max_size=3,
            )
        ),
        max_leaves=20,
    )
)
def test_arbitrary_json_never_raises_anything_else(value: object) -> None:
    with contextlib.suppress(FactParseError):
        parse_nft_json(json.dumps({"nftables": value}))


# --------------------------------------------------------------------------- ufw, firewalld


def test_ufw_enabled_and_disabled_captures() -> None:
    enabled = parse_ufw(
        text("ufw/ufw-enabled.ufw-conf.txt"), text("ufw/ufw-enabled.default-ufw.txt")
    )
    assert enabled.enabled and enabled.default_input_policy == "DROP"
    assert enabled.default_forward_policy == "DROP"
    disabled = parse_ufw(text("ufw/empty.ufw-conf.txt"), None)
    assert not disabled.enabled and disabled.default_input_policy is None


def test_ufw_collector_absent_error_and_garbage() -> None:
    def judge(conf: CommandResult, defaults: CommandResult) -> FactStatus:
        argvs = [list(c.argv) for c in UfwCollector.commands]
        return UfwCollector.judge(
            [
                conf.model_copy(update={"argv": argvs[0]}),
                defaults.model_copy(update={"argv": argvs[1]}),
            ]
        ).status

    nofile = failed(1, "cat: /etc/ufw/ufw.conf: No such file or directory")
    assert judge(nofile, nofile) is FactStatus.ABSENT
    assert judge(ok("garbage without equals\n"), nofile) is FactStatus.ERROR
    assert judge(ok("LOGLEVEL=low\n"), nofile) is FactStatus.ERROR
    assert judge(failed(1, "cat: /etc/ufw/ufw.conf: Permission denied"), nofile) is (
        FactStatus.ERROR
    )
    assert judge(ok(text("ufw/ufw-enabled.ufw-conf.txt")), nofile) is FactStatus.OK


def test_firewalld_states() -> None:
    # firewall-cmd is not installed on the capture host: these are its documented outputs
    # (`running` with exit 0, `not running` with exit 252).
    argv = list(FirewalldCollector.commands[0].argv)

    def judge(result: CommandResult):
        return FirewalldCollector.judge([result.model_copy(update={"argv": argv})])

    assert judge(ok("running\n")).value.running
    assert not judge(failed(252, stdout="not running\n")).value.running
    assert judge(failed(127, "sh: firewall-cmd: not found")).status is FactStatus.ABSENT
    assert judge(ok("???\n")).status is FactStatus.ERROR
