"""The fast paths that let a 2,000-node snapshot be analysed in seconds give the same
answers as the plain ones, and the benchmark's synthetic cluster stays a valid cluster.

Every fast path here reuses work across nodes (the same iptables rule lines, nft rules,
neighbour and route entries on every node) or skips validation of values the parser
already checked; each test compares it with the plain path on real captures.
"""

from __future__ import annotations

import copy
import gc
import importlib.util
import json
import random
import re
import shlex
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnidoctor.collectors import iptables, nftables
from cnidoctor.collectors.base import FactParseError
from cnidoctor.collectors.network import parse_ip_neigh, parse_ip_route
from cnidoctor.diagnose import analyse
from cnidoctor.engine import link_causes
from cnidoctor.facts.firewall import IptRule, NameMatch
from cnidoctor.facts.network import Neighbour, Route
from cnidoctor.models import Finding, Severity
from cnidoctor.rules import all_rules
from cnidoctor.rules.base import Rule
from helpers import DATA, data

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_analysis.py"


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_analysis", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_analysis"] = module
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- trusted models


def test_trusted_models_equal_validated_ones() -> None:
    rule = {"text": "-A INPUT -j ACCEPT", "chain": "INPUT", "target": "ACCEPT"}
    built = IptRule.trusted(**rule, protocol=NameMatch.trusted(values=["tcp"]))
    validated = IptRule.model_validate({**rule, "protocol": {"values": ["tcp"]}})
    assert built == validated and built.model_dump() == validated.model_dump()
    a, b = IptRule.trusted(**rule), IptRule.trusted(**rule)
    assert a.unknown is not b.unknown  # default factories are called per instance
    assert Neighbour.trusted(dst="10.0.0.1") == Neighbour(dst="10.0.0.1")


# --------------------------------------------------------------------------- iptables-save


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab -\"'\\\t!x", max_size=16))
def test_rule_line_split_is_shlex_split(line: str) -> None:
    try:
        expected: list[str] | str = shlex.split(line)
    except ValueError:
        expected = "error"
    try:
        got: list[str] | str = iptables.split_rule_line(line)
    except ValueError:
        got = "error"
    assert got == expected


def test_a_remembered_rule_line_is_still_checked_against_its_chains() -> None:
    text = data("iptables/kube-proxy-services.nft-save.txt")
    iptables.parse_iptables_save(text)  # every line remembered now
    undeclared = text.replace(":FLANNEL-FWD - [0:0]\n", "", 1)
    with pytest.raises(FactParseError, match="undeclared chain 'FLANNEL-FWD'"):
        iptables.parse_iptables_save(undeclared)


# --------------------------------------------------------------------------- nft -j


def plain_nft(text: str) -> object:
    """The whole-document path."""
    return nftables._build_nft(json.loads(text)["nftables"])


@pytest.mark.parametrize(
    "case", ["kube-proxy-services", "ufw-enabled", "kube-proxy-flannel", "nft-native-jump"]
)
def test_nft_read_table_by_table_equals_the_whole_document(case: str) -> None:
    text = data(f"nft/{case}.json")
    assert nftables.parse_nft_json(text) == plain_nft(text)
    other = re.sub(r'"packets": \d+', '"packets": 42', text)
    other = re.sub(r'("handle": )(\d+)', lambda m: f"{m[1]}{int(m[2]) + 5}", other)
    again = nftables.parse_nft_json(other)  # another node: other counters and handles
    assert again == plain_nft(other)
    rules = [r for t in again.tables for c in t.chains.values() for r in c.rules]
    assert rules == [r for t in plain_nft(other).tables for c in t.chains.values() for r in c.rules]


def test_nft_fast_path_falls_back_on_what_it_cannot_cut() -> None:
    text = data("nft/kube-proxy-flannel.json")
    pretty = json.dumps(json.loads(text), indent=2)
    assert nftables.parse_nft_json(pretty) == plain_nft(text)
    with pytest.raises(FactParseError, match="not JSON"):
        nftables.parse_nft_json(text[:-300] + "}]}")


# --------------------------------------------------------------------------- ip -j entries


def test_remembered_neighbour_and_route_entries_equal_fresh_ones() -> None:
    for case in ("incident002-slash8", "incident003-two-uplinks"):
        text = data(f"ip_neigh/{case}.json")
        assert parse_ip_neigh(text) == parse_ip_neigh(text)
        fresh = [Neighbour.model_validate({**e, "router": "router" in e}) for e in json.loads(text)]
        assert parse_ip_neigh(text).entries == fresh
    text = data("ip_route/incident003-two-uplinks.v4.json")  # has a multipath route
    assert parse_ip_route(text) == parse_ip_route(text)
    assert any(r.nexthops for r in parse_ip_route(text))
    assert all(isinstance(r, Route) for r in parse_ip_route(text))


def test_an_entry_that_does_not_cut_cleanly_takes_the_plain_path() -> None:
    text = '[{"dst":"10.0.0.1","dev":"a},{b","lladdr":"00:11:22:33:44:55","state":["STALE"]}]'
    [entry] = parse_ip_neigh(text).entries
    assert entry.dev == "a},{b"
    with pytest.raises(FactParseError, match=r"entry 1: dst 'x' is not an address"):
        parse_ip_neigh('[{"dst":"10.0.0.1"},{"dst":"x"}]')


# --------------------------------------------------------------------------- linking


def naive_link(findings: list[Finding], rules: list[type[Rule]]) -> list[Finding]:
    """The all-pairs definition of caused_by the indexed engine must reproduce."""
    causes_of = {r.id: set(r.causes) for r in rules}
    for finding in findings:
        finding.caused_by = sorted(
            {
                other.key
                for other in findings
                if other is not finding
                and finding.id in causes_of.get(other.id, ())
                and other.id not in finding.not_caused_by
                and (not other.nodes or set(other.nodes) & set(finding.nodes))
            }
        )
    return findings


def test_indexed_linking_finds_the_same_causes_as_all_pairs() -> None:
    rng = random.Random(4)
    ids = [f"a.r{i}" for i in range(5)]
    for _ in range(300):
        rules: list[type[Rule]] = [
            type(
                "R",
                (Rule,),
                {
                    "id": rid,
                    "causes": tuple(rng.sample(ids, rng.randint(0, 3))),
                    "severity": Severity.WARNING,
                    "title": "t",
                    "explanation": "e",
                    "needs": (),
                },
            )
            for rid in ids
        ]
        findings = [
            Finding(
                id=rng.choice([*ids, "x.unknown"]),
                severity=rng.choice(list(Severity)),
                nodes=rng.sample(["n1", "n2", "n3"], rng.choice([0, 1, 1, 2])),
                title="t",
                explanation="e",
                evidence=[],
                fix=[],
                not_caused_by=rng.sample(ids, rng.choice([0, 0, 1])),
            )
            for _ in range(rng.randint(0, 10))
        ]
        reference = naive_link(copy.deepcopy(findings), rules)
        linked = link_causes(findings, rules)  # sets caused_by in place, in the same order
        assert [f.caused_by for f in findings] == [f.caused_by for f in reference]
        assert all(f.root_cause == (not f.caused_by) for f in findings)
        assert sorted(map(id, linked)) == sorted(map(id, findings))


# --------------------------------------------------------------------------- the benchmark


def test_the_benchmarks_synthetic_cluster_shows_its_three_faults() -> None:
    """bench_analysis's nodes are valid (every fact parses) and its faults are found."""
    module = bench()
    collections, targets, cluster, kube = module.build_snapshot(30)
    enabled = gc.isenabled()
    report = analyse(collections, targets, cluster, all_rules(), kube)
    assert gc.isenabled() == enabled
    ids = {f.id: f for f in report.findings}
    assert ids["route.prefix-inconsistent"].nodes == ["node-0007"]
    assert ids["mtu.mismatch"].nodes == ["node-0011"]
    assert ids["flannel.vxlan-fdb-stale"].nodes[0] == "node-0013"
    broken = {
        f for status in report.nodes for f in status.facts_unavailable if "could not collect" in f
    }
    assert broken == set(), broken
    assert (DATA / "iptables/kube-proxy-services.nft-save.txt").exists()


# --------------------------------------------------------------------------- judged once


def test_identical_outputs_are_judged_once_per_analysis() -> None:
    """Nodes that print the same text share one Fact; a node that prints other text gets
    its own, equal to what judging it alone gives."""
    from cnidoctor.collect import NodeCollection, judge_facts
    from cnidoctor.collectors.sysctl import SysctlCollector
    from cnidoctor.transports.base import CommandResult

    argv = list(SysctlCollector.commands[0].argv)

    def node(name: str, capture: str) -> NodeCollection:
        result = CommandResult(argv=argv, rc=0, stdout=data(f"sysctl/{capture}"))
        return NodeCollection(
            name=name, spec="local", collected=True, results={"sysctls": [result]}
        )

    judged: dict = {}
    a, b, odd = (
        judge_facts(node(name, capture), [SysctlCollector], judged)["sysctls"]
        for name, capture in (
            ("a", "healthy.txt"),
            ("b", "healthy.txt"),
            ("c", "no-br-netfilter.txt"),
        )
    )
    assert a is b
    assert odd is not a and odd.value != a.value
    alone = judge_facts(node("c", "no-br-netfilter.txt"), [SysctlCollector])["sysctls"]
    assert odd.value == alone.value and odd.status == alone.status == "ok"
    assert len(judged) == 2
