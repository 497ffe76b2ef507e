"""The signature table and the matcher: every real message it was written from is recognised,
variants are too, ordinary log lines are not, and no input can make it slow or crash."""

from __future__ import annotations

import re
import time
from re import _parser as sre_parse  # type: ignore[attr-defined]

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnidoctor.catalog import CATALOG, KNOWN_IDS
from cnidoctor.rules import all_rules
from cnidoctor.signatures import SIGNATURES, Match, explain
from cnidoctor.signatures.match import FLAGS, literal_length

EXAMPLES = [
    pytest.param(sig, example, id=f"{sig.id}:{example.source}:{index}")
    for index, sig in enumerate(SIGNATURES)
    for example in sig.examples
]


def ids(matches: list[Match]) -> list[str]:
    return [m.id for m in matches]


# --- the table as data ----------------------------------------------------------------------


def test_table_is_broad() -> None:
    assert len(SIGNATURES) >= 30
    assert len({sig.id for sig in SIGNATURES}) >= 20


@pytest.mark.parametrize(("sig", "example"), EXAMPLES)
def test_each_real_example_is_its_own_best_match(sig, example) -> None:
    matches = explain(example.text)
    assert matches, f"{example.source}: nothing matched"
    assert matches[0].id == sig.id
    assert 0.0 < matches[0].score <= 1.0
    assert matches[0].matched and matches[0].matched in example.text


@pytest.mark.parametrize(("sig", "example"), EXAMPLES)
def test_anchor_is_in_every_match(sig, example) -> None:
    """The prefilter must never hide a match: the anchor is part of what the regex matches."""
    found = re.search(sig.pattern, example.text, FLAGS)
    assert found is not None
    assert sig.anchor in found.group(0).lower()


@pytest.mark.parametrize("sig", SIGNATURES, ids=lambda s: s.id)
def test_entry_is_well_formed(sig) -> None:
    assert sig.id in KNOWN_IDS, "only catalog ids (a public contract)"
    assert sig.anchor == sig.anchor.lower() and sig.anchor.isascii() and sig.anchor.strip()
    assert 0.0 < sig.confidence <= 1.0
    assert sig.examples and sig.note
    for example in sig.examples:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+#\d+", example.source), example.source
    re.compile(sig.pattern, FLAGS)
    if sig.unless:
        re.compile(sig.unless, FLAGS)


def _nested_repeat(parsed: object, inside_repeat: bool = False) -> bool:
    """True when a repetition that can repeat more than once contains another repetition."""
    for op, arg in parsed:  # type: ignore[attr-defined]
        name = str(op)
        if name in ("MAX_REPEAT", "MIN_REPEAT"):
            _low, high, item = arg
            if inside_repeat or _nested_repeat(item, inside_repeat=high > 1):
                return True
        elif name == "SUBPATTERN":
            if _nested_repeat(arg[-1], inside_repeat):
                return True
        elif name == "BRANCH" and any(_nested_repeat(b, inside_repeat) for b in arg[1]):
            return True
    return False


@pytest.mark.parametrize("sig", SIGNATURES, ids=lambda s: s.id)
def test_patterns_have_no_nested_quantifiers_or_unbounded_repeats(sig) -> None:
    for pattern in filter(None, (sig.pattern, sig.unless)):
        assert not _nested_repeat(sre_parse.parse(pattern, FLAGS)), pattern
        assert not re.search(r"(?<!\\)[*+]", pattern), f"unbounded repeat in {pattern}"


def test_nested_repeat_checker_catches_the_classic() -> None:
    assert _nested_repeat(sre_parse.parse(r"(a+)+$", FLAGS))
    assert not _nested_repeat(sre_parse.parse(r"(?:ab\d{1,3})?x", FLAGS))


def test_every_signature_id_can_be_explained() -> None:
    """A recognised id must come with a title, explanation and fix (a rule's or the catalog's)."""
    rule_ids = {rule.id for rule in all_rules()}
    for sig in SIGNATURES:
        assert sig.id in rule_ids or sig.id in CATALOG, sig.id


def test_literal_length_counts_shortest_branch() -> None:
    assert literal_length(r"abc") == 3
    assert literal_length(r"a(?:bc|d)e") == 3
    assert literal_length(r"x\d{1,3}y{2}") == 3


# --- variants: other addresses, names, paths ------------------------------------------------

VARIANTS = [
    (
        'plugin type="flannel" failed (add): loadFlannelSubnetEnv failed: open '
        "/var/run/flannel/subnet.env: no such file or directory",
        "flannel.subnet-env-missing",
    ),
    (
        'failed to find plugin "bridge" in path [/var/lib/rancher/k3s/data/abc/bin]',
        "cni.binaries-missing",
    ),
    (
        'failed to find plugin \\\\\\"host-local\\\\\\" in path [/opt/cni/bin]',
        "cni.binaries-missing",
    ),
    (
        'network: failed to set bridge addr: "cni0" already has an IP address different from '
        "10.42.3.1/24",
        "cni.stale-bridge-address",
    ),
    (
        "Failed to create SubnetManager: error retrieving pod spec for "
        "'kube-flannel/kube-flannel-ds-abcde': Get \"https://10.43.0.1:443/api/v1/namespaces/"
        'kube-flannel/pods/kube-flannel-ds-abcde": dial tcp 10.43.0.1:443: connect: no route to '
        "host",
        "api.unreachable",
    ),
    ("dial tcp 172.20.0.1:443: i/o timeout", "api.unreachable"),
    (
        "Get https://10.0.0.9:10250/exec/x: dial tcp 10.0.0.9:10250: connect: no route to host",
        "kubelet.unreachable",
    ),
    (
        'failed to register network: failed to acquire lease: node "gpu-worker-7" pod cidr not '
        "assigned",
        "node.podcidr-missing",
    ),
    (
        '"msg":"prober detected unhealthy status","round-tripper-name":"ROUND_TRIPPER_SNAPSHOT",'
        '"error":"dial tcp 10.10.0.4:2380: connect: no route to host"',
        "etcd.peer-unreachable",
    ),
    (
        "failed to set interface flannel.2 to UP state: address already in use",
        "cni.stale-interfaces",
    ),
    (
        "network: open /proc/sys/net/ipv6/conf/vethd3adb33f/disable_ipv6: no such file or "
        "directory",
        "kernel.ipv6-disabled",
    ),
    ("[ 88.1] UDP: bad checksum. From 10.1.1.5:4000 to 10.1.1.6:4789 ulen 120", "nic.offload-bug"),
    ("calico-node-x7k2p    0/1    Init:CrashLoopBackOff   12   40m", "pods.cni-crashloop"),
    (
        "[ERROR] plugin/errors: 2 github.com. AAAA: read udp 10.42.1.9:51234->10.43.0.10:53: i/o "
        "timeout",
        "dns.failure",
    ),
    ("listen tcp 10.10.0.2:6443: bind: cannot assign requested address", "addr.node-ip-changed"),
    ("FAILED TO CHECK BR_NETFILTER", "kernel.br-netfilter-missing"),
]


@pytest.mark.parametrize(("text", "expected"), VARIANTS)
def test_variants_match(text: str, expected: str) -> None:
    assert ids(explain(text))[:1] == [expected]


def test_kubelet_tls_timeout_is_not_reported_as_api_tls() -> None:
    line = "Get https://10.1.2.3:10250/containerLogs/a/b/c: net/http: TLS handshake timeout"
    assert ids(explain(line)) == ["kubelet.unreachable"]


def test_bgp_to_docker0_is_the_wrong_interface_not_a_firewall() -> None:
    line = "calico/node is not ready: BIRD is not ready: BGP not established with 172.17.0.1"
    assert ids(explain(line)) == ["iface.wrong-interface-selected"]


def test_subnetmanager_rbac_error_is_not_api_unreachable() -> None:
    line = (
        "Failed to create SubnetManager: error retrieving pod spec for 'kube-flannel/x': pods "
        '"x" is forbidden: User "system:serviceaccount:kube-flannel:flannel" cannot get resource'
    )
    assert explain(line) == []


# --- what must not match ---------------------------------------------------------------------

#: ordinary lines from healthy components, as quoted in public issues
NORMAL_LINES = [
    # flannel-io/flannel#1012
    "I0628 21:39:33.843939       1 main.go:475] Determining IP address of default interface",
    "I0628 21:39:33.845296       1 main.go:488] Using interface with name enp129s0f0 and address "
    "10.80.15.6",
    "I0628 21:39:33.845312       1 main.go:505] Defaulting external address to interface address "
    "(10.80.15.6)",
    "kube-flannel-ds-h4wwx   1/1       Running            916        6d",
    # flannel-io/flannel#1716
    "I0207 07:04:42.724348       1 kube.go:144] Waiting 10m0s for node controller to sync",
    "I0207 07:04:42.724463       1 kube.go:482] Starting kube subnet manager",
    # k3d-io/k3d#525
    'I0523 14:08:36.107837       7 status_manager.go:158] "Starting to sync pod status with '
    'apiserver"',
    'I0523 14:08:36.107851       7 kubelet.go:1967] "Starting kubelet main sync loop"',
    # kubernetes-retired/bootkube#741
    "I1108 22:11:13.352515       1 server_others.go:122] Using iptables Proxier.",
    # k3s-io/k3s#4841
    "I1227 11:04:17.415757    3232 shared_informer.go:230] Caches are synced for resource quota",
    # coredns/coredns#3839
    "[INFO] plugin/reload: Running configuration MD5 = 4e235fcc3696966e76816bcd9034ebc7",
    # cilium/cilium#29881
    "level=info msg=\"  --enable-ipv4-masquerade='true'\" subsys=daemon",
    "level=info msg=\"  --cluster-pool-ipv4-cidr='10.96.128.0/18'\" subsys=daemon",
    # projectcalico/calico#3422
    "kube-system calico-node-bwhff 1/1 Running 2 9d 192.168.29.85 master",
    # projectcalico/calico#8929
    "Normal   Started    24m                kubelet            Started container upgrade-ipam",
]


@pytest.mark.parametrize("line", NORMAL_LINES)
def test_normal_lines_match_nothing(line: str) -> None:
    assert explain(line) == []


def test_unknown_message_returns_nothing() -> None:
    assert explain("segfault in libfoo.so at 0xdeadbeef") == []
    assert explain("") == []


# --- logs ------------------------------------------------------------------------------------


def test_mixed_log_reports_each_failure_once_best_first() -> None:
    log = "\n".join(
        [
            *NORMAL_LINES,
            "Failed to check br_netfilter: stat /proc/sys/net/bridge/bridge-nf-call-iptables: "
            "no such file or directory",
            'Error from server: Get "https://192.168.1.34:10250/containerLogs/kube-flannel/'
            'kube-flannel-ds-zhrzt/kube-flannel": dial tcp 192.168.1.34:10250: i/o timeout',
            "dial tcp 10.96.0.1:443: i/o timeout",
            "dial tcp 10.96.0.1:443: i/o timeout",
            "Unable to connect to the server: net/http: TLS handshake timeout",
        ]
    )
    matches = explain(log)
    assert ids(matches) == [
        "kernel.br-netfilter-missing",
        "kubelet.unreachable",
        "api.unreachable",
        "api.tls-handshake-timeout",
    ]
    scores = [m.score for m in matches]
    assert scores == sorted(scores, reverse=True)


def test_best_occurrence_is_kept_per_id() -> None:
    log = (
        "Unable to connect to the server: dial tcp 10.0.7.122:6443: i/o timeout\n"
        "Failed to create SubnetManager: error retrieving pod spec for 'kube-system/f': Get "
        '"https://10.96.0.1:443/api/v1/namespaces/kube-system/pods/f": dial tcp 10.96.0.1:443: '
        "i/o timeout\n"
    )
    [match] = explain(log)
    assert match.id == "api.unreachable"
    assert match.matched.startswith("Failed to create SubnetManager")


def test_crlf_log_and_non_ascii_text_keep_positions_right() -> None:
    # "İ" lower-cases to two characters: the anchor scan must still land on the right line
    log = "İİİ boot\r\nFailed to check br_netfilter: stat x\r\nİ\r\n"
    assert ids(explain(log)) == ["kernel.br-netfilter-missing"]


def test_deterministic() -> None:
    log = "\n".join(example.text for sig in SIGNATURES for example in sig.examples)
    assert explain(log) == explain(log)
    assert len(explain(log)) == len({sig.id for sig in SIGNATURES})


def test_ten_megabyte_log_is_fast() -> None:
    noise = "\n".join(NORMAL_LINES) + "\n"
    log = noise * (10_000_000 // len(noise))
    log += "loadFlannelSubnetEnv failed: open /run/flannel/subnet.env: no such file or directory\n"
    started = time.perf_counter()
    matches = explain(log)
    elapsed = time.perf_counter() - started
    assert ids(matches) == ["flannel.subnet-env-missing"]
    assert elapsed < 3.0, elapsed


def test_many_distinct_matching_lines_are_fast() -> None:
    log = "".join(f"dial tcp 10.0.{i // 250}.{i % 250}:2380: i/o timeout\n" for i in range(50_000))
    started = time.perf_counter()
    assert ids(explain(log)) == ["etcd.peer-unreachable"]
    assert time.perf_counter() - started < 3.0


@pytest.mark.parametrize("sig", SIGNATURES, ids=lambda s: s.id)
def test_hostile_lines_stay_fast(sig) -> None:
    """Long lines full of near-misses (the anchor again and again) cannot stall a pattern."""
    near_miss = (sig.anchor + " " + "1" * 50 + ":" + "a" * 50 + " ") * 400
    started = time.perf_counter()
    explain(near_miss + "\n" + sig.anchor * 2000)
    assert time.perf_counter() - started < 1.0


# --- properties -------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=2000))
def test_arbitrary_text_never_raises_and_scores_are_bounded(text: str) -> None:
    for match in explain(text):
        assert 0.0 <= match.score <= 1.0
        assert match.id in KNOWN_IDS
        assert match.matched


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="\n\r"), max_size=300), st.data())
def test_a_known_line_is_found_whatever_surrounds_the_log(noise: str, data) -> None:
    sig = data.draw(st.sampled_from(SIGNATURES))
    example = data.draw(st.sampled_from(sig.examples))
    log = f"{noise}\n{example.text}\n{noise}"
    assert sig.id in ids(explain(log))
