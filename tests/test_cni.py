"""CNI conf/bin dirs, flannel subnet.env, k3s settings: parsers on real captures, and rules.

Captures come from tests/data/cni/capture.py (product scripts run by the real transports
in a private mount namespace and a scratch network namespace).
"""

from __future__ import annotations

import pytest

from cnidoctor.analysis.cni_detect import cni_in_use
from cnidoctor.collectors.cni import CniBinCollector, CniConfigCollector
from cnidoctor.collectors.flannel import FlannelSubnetEnvCollector
from cnidoctor.collectors.k3s import K3sConfigCollector, parse_flags, split_exec_start
from cnidoctor.collectors.network import LinksCollector
from cnidoctor.facts.base import Fact, FactStatus
from cnidoctor.facts.cni import K3S_CNI_DIR, CniBins, CniConfig, FlannelSubnetEnv
from cnidoctor.facts.k3s import K3sConfig
from cnidoctor.facts.network import Links
from cnidoctor.models import ClusterConfig, Severity
from cnidoctor.rules import cni as rules
from cnidoctor.transports.base import CommandResult
from helpers import data, failed, findings, node

K3S_HASH_DIR = (
    "/var/lib/rancher/k3s/data/3f1e6c27bd4e5a9bd2e7c6b4e0f56b1e3e2c52b0c1a6f4c0e7b9d3d1f7c5a2b9"
)


def judge(collector: type, stdout: str) -> Fact:
    argv = list(collector.commands[0].argv)
    return collector.judge([CommandResult(argv=argv, rc=0, stdout=stdout)])


def cni(case: str) -> CniConfig:
    fact = judge(CniConfigCollector, data(f"cni/{case}.txt"))
    assert fact.ok, fact.reason
    return fact.value


def links(case: str) -> Links:
    return judge(LinksCollector, data(f"cni/links-{case}.json")).value


# --- CNI conf dirs ---------------------------------------------------------------------


def test_k3s_flannel_conflist_is_active_in_k3s_dir() -> None:
    config = cni("k3s-flannel")
    assert config.runtime_dir == K3S_CNI_DIR and config.is_k3s
    active = config.active
    assert active is not None and active.path == f"{K3S_CNI_DIR}/10-flannel.conflist"
    assert active.name == "cbr0" and active.cni_version == "1.0.0" and active.cni == "flannel"
    assert active.types == ["flannel", "portmap", "bandwidth"]
    assert active.plugins[0].delegate == {
        "hairpinMode": True,
        "forceAddress": True,
        "isDefaultGateway": True,
    }
    # flannel delegates to bridge with host-local IPAM unless told otherwise
    assert [b for b, _ in active.referenced_binaries()] == [
        "flannel",
        "bridge",
        "host-local",
        "portmap",
        "bandwidth",
    ]
    assert not active.uses_ipv6
    assert config.dir("/etc/cni/net.d").exists and config.dir("/etc/cni/net.d").files == []


def test_plain_dir_is_runtime_dir_without_k3s() -> None:
    config = cni("kubeadm-flannel")
    assert config.runtime_dir == "/etc/cni/net.d" and not config.is_k3s
    assert config.active_path == "/etc/cni/net.d/10-flannel.conflist"
    assert config.dir(K3S_CNI_DIR) is not None and not config.dir(K3S_CNI_DIR).exists


def test_calico_conflist_and_its_kubeconfig() -> None:
    config = cni("calico")
    active = config.active
    assert active.cni == "calico" and active.plugins[0].ipam_type == "calico-ipam"
    assert [b for b, _ in active.referenced_binaries()] == [
        "calico",
        "calico-ipam",
        "portmap",
        "bandwidth",
    ]
    kubeconfig = next(f for f in config.runtime.files if f.filename == "calico-kubeconfig")
    assert not kubeconfig.is_config and kubeconfig.error is None
    assert [c.filename for c in config.runtime.configs] == ["10-calico.conflist"]


def test_cilium_backup_files_are_not_configs() -> None:
    config = cni("cilium-exclusive")
    assert config.active.cni == "cilium" and config.active.types == ["cilium-cni"]
    assert len(config.runtime.files) == 2 and len(config.runtime.configs) == 1


def test_ipv6_ranges_and_routes_are_visible() -> None:
    config = cni("containerd-net-and-flannel")
    active = config.active
    assert active.filename == "10-containerd-net.conflist"  # sorts before 10-flannel
    assert active.cni == "bridge"
    assert active.plugins[0].subnets == ["10.88.0.0/16", "2001:4860:4860::/64"]
    assert active.plugins[0].routes == ["0.0.0.0/0", "::/0"]
    assert active.uses_ipv6


def test_broken_files_are_recorded_on_the_file_not_the_fact() -> None:
    config = cni("garbage")
    by_name = {f.filename: f for f in config.runtime.files}
    assert by_name["05-old.conflist"].read_error == "cannot read (exit status 1)"
    assert by_name["10-flannel.conflist"].error.startswith("not valid JSON")
    assert by_name["20-conflist-as-conf.conf"].error == "no type (a conflist in a .conf file?)"
    loopback = by_name["99-loopback.conf"]
    assert loopback.loadable and loopback.types == ["loopback"]
    assert config.runtime.subdirs == ["/etc/cni/net.d/backup"]
    assert config.active_path == "/etc/cni/net.d/05-old.conflist" and not config.active.loadable


def test_no_conf_dir_at_all_is_absent() -> None:
    fact = judge(CniConfigCollector, data("cni/none.txt"))
    assert fact.status is FactStatus.ABSENT
    assert fact.reason == (
        "neither /etc/cni/net.d nor /var/lib/rancher/k3s/agent/etc/cni/net.d exists"
    )


def test_empty_dir_is_a_fact_with_no_active_config() -> None:
    config = cni("empty")
    assert config.active is None and config.runtime.exists


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "does not start with the frame marker"),
        ("total 0\n10-flannel.conflist\n", "does not start with the frame marker"),
        (data("cni/k3s-flannel.txt")[:300], "truncated"),
        (data("cni/calico.txt").rsplit("DONE", 1)[0], "truncated"),
        ("MARKER nope\n", "malformed frame marker"),
    ],
)
def test_garbage_and_truncated_conf_listing(text: str, reason: str) -> None:
    fact = judge(CniConfigCollector, text)
    assert fact.status is FactStatus.ERROR and reason in fact.reason


def test_file_content_cannot_forge_frames() -> None:
    """Content that looks like another run's frame lines stays content."""
    text = data("cni/kubeadm-flannel.txt")
    marker = text.split()[1]
    forged = text.replace('"name": "cbr0"', '"name": "cbr0"\n@@cnidoctor-f-0000 END 0\nMARKER x')
    config = judge(CniConfigCollector, forged).value
    assert config.active.error is not None and "@@cnidoctor-f-0000" in config.active.content
    assert marker.startswith("@@cnidoctor-f-")


# --- CNI bin dirs ----------------------------------------------------------------------


def test_k3s_bin_dirs_follow_current() -> None:
    bins: CniBins = judge(CniBinCollector, data("cni/bin-k3s.txt")).value
    current = bins.dir("/var/lib/rancher/k3s/data/current/bin")
    assert current is not None and current.link_target == K3S_HASH_DIR
    assert {"flannel", "bridge", "host-local", "portmap", "cni"} <= set(current.plugins)
    assert bins.runtime_dirs(k3s=True) == ["/var/lib/rancher/k3s/data/current/bin"]
    assert bins.runtime_dirs(k3s=False) == ["/opt/cni/bin"]


def test_opt_cni_bin_executables_only() -> None:
    bins: CniBins = judge(CniBinCollector, data("cni/bin-kubeadm-no-flannel.txt")).value
    opt = bins.dir("/opt/cni/bin")
    assert "flannel" not in opt.plugins and "bridge" in opt.plugins and len(opt.plugins) == 18
    assert opt.not_executable == ["README.md"]


def test_no_bin_dir_is_absent_and_garbage_is_an_error() -> None:
    absent = judge(CniBinCollector, data("cni/bin-none.txt"))
    assert absent.status is FactStatus.ABSENT and "no CNI bin dir exists" in absent.reason
    cut = judge(CniBinCollector, data("cni/bin-k3s.txt")[:400])
    assert cut.status is FactStatus.ERROR and "truncated" in cut.reason
    bad = data("cni/bin-kubeadm-full.txt").replace(" F x bridge", " F y bridge")
    assert "bad entry" in judge(CniBinCollector, bad).reason


# --- flannel subnet.env ----------------------------------------------------------------


def subnet_env(case: str) -> Fact:
    return judge(FlannelSubnetEnvCollector, data(f"flannel/{case}.txt"))


def test_subnet_env_parsed() -> None:
    env: FlannelSubnetEnv = subnet_env("k3s").value
    assert (env.network, env.subnet, env.mtu, env.ipmasq) == (
        "10.42.0.0/16",
        "10.42.1.1/24",
        1450,
        True,
    )
    assert str(env.subnet_network) == "10.42.1.0/24"
    dual: FlannelSubnetEnv = subnet_env("dualstack").value
    assert dual.ipv6_subnet == "2001:cafe:42:2::1/64" and dual.values["FLANNEL_MTU"] == "1450"


def test_subnet_env_missing_is_absent_with_the_contract_reason() -> None:
    rc, stderr = data("flannel/missing.stderr").split("\n", 1)
    result = failed(int(rc.removeprefix("rc=")), stderr=stderr)
    fact = FlannelSubnetEnvCollector.judge([result.model_copy(update={"argv": ["cat"]})])
    assert fact.status is FactStatus.ABSENT
    assert fact.reason == "file /run/flannel/subnet.env does not exist"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (data("flannel/truncated.txt"), "FLANNEL_SUBNET='10.42.' is not a CIDR"),
        ("", "is empty"),
        ("FLANNEL_MTU=jumbo\n", "not a number"),
        ("<html>\n", "not KEY=VALUE"),
    ],
)
def test_subnet_env_garbage(text: str, reason: str) -> None:
    fact = judge(FlannelSubnetEnvCollector, text)
    assert fact.status is FactStatus.ERROR and reason in fact.reason


def test_subnet_env_unreadable_is_an_error_not_absent() -> None:
    stderr = "cat: /run/flannel/subnet.env: Permission denied"
    result = CommandResult(argv=["cat"], rc=1, stderr=stderr)
    fact = FlannelSubnetEnvCollector.judge([result])
    assert fact.status is FactStatus.ERROR and "Permission denied" in fact.reason


# --- k3s -------------------------------------------------------------------------------


def k3s(case: str) -> Fact:
    return judge(K3sConfigCollector, data(f"k3s/{case}.txt"))


def test_k3s_settings_merge_files_then_flags() -> None:
    config: K3sConfig = k3s("server").value
    assert config.role == "server" and config.data_dir
    assert config.flannel_iface == "enp4s0"  # the flag beats config.yaml's wlp2s0
    assert config.sources["flannel-iface"] == "ExecStart of /etc/systemd/system/k3s.service"
    assert config.node_ip == "192.168.1.34" and config.flannel_external_ip
    assert config.cluster_cidr == "10.42.0.0/16" and config.service_cidr == "10.43.0.0/16"
    assert config.flannel_backend == "vxlan" and config.flannel_enabled
    assert config.get("node-label") == ["gpu=true"]  # node-label+ from config.yaml.d
    assert config.describe("cluster-cidr") == (
        "cluster-cidr=10.42.0.0/16 (from /etc/rancher/k3s/config.yaml)"
    )


def test_k3s_secrets_never_leave_the_node() -> None:
    raw = data("k3s/server.txt")
    assert "K10c5d1e0f0b5e3d4b7a9" not in raw and raw.count("<redacted>") == 2
    assert k3s("server").value.get("token") == "<redacted>"


def test_k3s_agent_and_bad_yaml_and_absent() -> None:
    agent: K3sConfig = k3s("agent").value
    assert agent.role == "agent" and agent.settings == {} and agent.flannel_backend == "vxlan"
    bad: K3sConfig = k3s("bad-yaml").value
    assert bad.files[0].error.startswith("not valid YAML")
    assert bad.flannel_iface == "enp4s0"  # the unit's flags still count
    none = k3s("none")
    assert none.status is FactStatus.ABSENT and none.reason.startswith("k3s is not installed")
    cut = judge(K3sConfigCollector, data("k3s/server.txt")[:500])
    assert cut.status is FactStatus.ERROR and "truncated" in cut.reason


def test_flags_and_exec_start() -> None:
    flags = parse_flags(
        [
            "--flannel-external-ip",
            "--disable",
            "traefik",
            "--disable=servicelb",
            "--debug",
            "--node-ip",
            "10.0.0.1",
            "--cluster-init",
        ]
    )
    assert flags == {
        "flannel-external-ip": True,
        "disable": ["traefik", "servicelb"],
        "debug": True,
        "node-ip": "10.0.0.1",
        "cluster-init": True,
    }
    unit = (
        "ExecStart=/bin/k3s server --a 1\n[X]\nExecStart=\nExecStart=/bin/k3s agent \\\n  --b 2\n"
    )
    assert split_exec_start(unit) == ["/bin/k3s", "agent", "--b", "2"]


# --- CNI detection ---------------------------------------------------------------------


def test_cni_in_use() -> None:
    assert cni_in_use("cilium", cni("kubeadm-flannel"), None) == "cilium"
    assert cni_in_use("auto", cni("calico"), links("flannel-clean")) == "calico"
    assert cni_in_use("auto", None, links("flannel-clean")) == "flannel"
    assert cni_in_use("auto", cni("empty"), links("cilium-with-flannel-leftovers")) is None
    bridge_first = cni("containerd-net-and-flannel")
    assert cni_in_use("auto", bridge_first, links("flannel-clean")) == "flannel"
    assert cni_in_use("auto", cni("garbage"), None) is None


# --- rules -----------------------------------------------------------------------------


def test_binaries_missing_flannel_plugin() -> None:
    ctx = node(
        {
            CniConfigCollector: [data("cni/kubeadm-flannel.txt")],
            CniBinCollector: [data("cni/bin-kubeadm-no-flannel.txt")],
        },
        name="donovan-xps-8930",
    )
    [finding] = findings(rules.CniBinariesMissing, ctx)
    assert finding.id == "cni.binaries-missing" and finding.severity is Severity.CRITICAL
    assert finding.evidence == [
        "plugin flannel referenced by /etc/cni/net.d/10-flannel.conflist is not in /opt/cni/bin "
        "(has: bandwidth, bridge, dhcp, dummy, firewall, host-device, host-local, ipvlan, "
        "loopback, macvlan, portmap, ptp, ... (6 more))"
    ]
    assert any("github.com/flannel-io/cni-plugin" in f for f in finding.fix)
    assert any("spec.nodeName=donovan-xps-8930" in f for f in finding.fix)


def test_binaries_present_is_clean() -> None:
    for config, bins in (("kubeadm-flannel", "bin-kubeadm-full"), ("k3s-flannel", "bin-k3s")):
        ctx = node(
            {
                CniConfigCollector: [data(f"cni/{config}.txt")],
                CniBinCollector: [data(f"cni/{bins}.txt")],
            }
        )
        assert findings(rules.CniBinariesMissing, ctx) == []


def test_binaries_missing_on_k3s_when_plugins_sit_in_opt() -> None:
    ctx = node(
        {
            CniConfigCollector: [data("cni/k3s-flannel.txt")],
            CniBinCollector: [data("cni/bin-kubeadm-full.txt")],
        }
    )
    [finding] = findings(rules.CniBinariesMissing, ctx)
    assert finding.evidence[0] == (
        "plugin flannel referenced by /var/lib/rancher/k3s/agent/etc/cni/net.d/10-flannel.conflist"
        " is not in /var/lib/rancher/k3s/data/current/bin (which does not exist)"
    )
    assert "plugin bridge (flannel's delegate)" in finding.evidence[1]
    assert (
        "/opt/cni/bin/bridge exists, but the runtime does not search /opt/cni/bin"
        in finding.evidence
    )
    assert finding.fix[0].startswith("systemctl restart k3s")


def test_binaries_missing_when_no_bin_dir_and_calico_fix() -> None:
    ctx = node(
        {
            CniConfigCollector: [data("cni/calico.txt")],
            CniBinCollector: [data("cni/bin-none.txt")],
        }
    )
    [finding] = findings(rules.CniBinariesMissing, ctx)
    assert len(finding.evidence) == 4 and "calico-ipam" in finding.evidence[1]
    assert any("calico-node" in f for f in finding.fix)
    assert any("containernetworking" in f for f in finding.fix)


def test_config_missing_on_a_flannel_node() -> None:
    ctx = node({CniConfigCollector: [data("cni/empty.txt")]}, cluster=ClusterConfig(cni="flannel"))
    [finding] = findings(rules.CniConfigMissing, ctx)
    assert finding.evidence == [
        "/etc/cni/net.d has no .conf/.conflist/.json file (empty)",
        "a CNI is expected: the cluster's CNI is flannel",
    ]
    assert "kube-flannel" in finding.fix[0]


def test_config_missing_in_k3s_dir_while_etc_has_one() -> None:
    k3s_none = data("k3s/server.txt").replace("flannel-backend: vxlan", "flannel-backend: none")
    ctx = node(
        {
            CniConfigCollector: [data("cni/k3s-empty-etc-calico.txt")],
            K3sConfigCollector: [k3s_none],
        }
    )
    [finding] = findings(rules.CniConfigMissing, ctx)
    assert finding.evidence[1] == (
        "/etc/cni/net.d has 10-calico.conflist, but the runtime reads "
        "/var/lib/rancher/k3s/agent/etc/cni/net.d"
    )
    assert "flannel-backend=none" in finding.evidence[2]
    assert "cni.confPath" in finding.fix[0]


def test_config_missing_broken_first_config_and_absent_dirs() -> None:
    flannel = ClusterConfig(cni="flannel")
    ctx = node({CniConfigCollector: [data("cni/garbage.txt")]}, cluster=flannel)
    [finding] = findings(rules.CniConfigMissing, ctx)
    assert finding.title == "the CNI config the runtime loads first cannot be loaded"
    assert finding.evidence[0].startswith("/etc/cni/net.d/05-old.conflist is loaded first")
    ctx = node(
        {
            CniConfigCollector: [data("cni/none.txt")],
            K3sConfigCollector: [data("k3s/agent.txt")],
        }
    )
    [finding] = findings(rules.CniConfigMissing, ctx)
    assert finding.evidence[0].startswith(f"{K3S_CNI_DIR} does not exist")
    assert finding.fix[-1] == "systemctl restart k3s (k3s-agent on agents)"


def test_config_missing_clean_cases() -> None:
    flannel = ClusterConfig(cni="flannel")
    ok_node = node({CniConfigCollector: [data("cni/k3s-flannel.txt")]}, cluster=flannel)
    assert findings(rules.CniConfigMissing, ok_node) == []
    # a host not yet running Kubernetes: nothing says a CNI is expected
    outputs = {
        CniConfigCollector: [data("cni/empty.txt")],
        K3sConfigCollector: [data("k3s/none.txt")],
    }
    assert findings(rules.CniConfigMissing, node(outputs)) == []
    expected = node(outputs, cluster=ClusterConfig(cni="calico"))
    assert [f.id for f in findings(rules.CniConfigMissing, expected)] == ["cni.config-missing"]


def test_config_conflict_containerd_bridge_sorts_first() -> None:
    ctx = node(
        {
            CniConfigCollector: [data("cni/containerd-net-and-flannel.txt")],
            LinksCollector: [data("cni/links-flannel-clean.json")],
        }
    )
    [finding] = findings(rules.CniConfigConflict, ctx)
    assert finding.evidence[0] == (
        "loaded first: /etc/cni/net.d/10-containerd-net.conflist (bridge: plugins bridge, portmap)"
    )
    assert finding.evidence[1] == "the CNI in use is flannel (from devices flannel.1)"
    assert finding.fix[0] == (
        "mv /etc/cni/net.d/10-containerd-net.conflist "
        "/etc/cni/net.d/10-containerd-net.conflist.disabled"
    )


def test_config_conflict_cilium_before_flannel_and_clean_cases() -> None:
    ctx = node(
        {CniConfigCollector: [data("cni/cilium-and-flannel.txt")]},
        cluster=ClusterConfig(cni="flannel"),
    )
    [finding] = findings(rules.CniConfigConflict, ctx)
    assert "05-cilium.conflist (cilium" in finding.evidence[0]
    assert "from the cluster setting" in finding.evidence[1]
    for case, cluster_cni in (
        ("cilium-and-flannel", "cilium"),
        ("cilium-exclusive", "flannel"),
        ("kubeadm-flannel", "flannel"),
    ):
        clean = node(
            {CniConfigCollector: [data(f"cni/{case}.txt")]}, cluster=ClusterConfig(cni=cluster_cni)
        )
        assert findings(rules.CniConfigConflict, clean) == [], case
    # with auto and devices of two CNIs nobody can say which config is wrong
    unsure = node(
        {
            CniConfigCollector: [data("cni/cilium-and-flannel.txt")],
            LinksCollector: [data("cni/links-cilium-with-flannel-leftovers.json")],
        }
    )
    assert findings(rules.CniConfigConflict, unsure) == []


def test_stale_bridge_address() -> None:
    ctx = node(
        {
            LinksCollector: [data("cni/links-stale-bridge.json")],
            FlannelSubnetEnvCollector: [data("flannel/k3s.txt")],
        },
        name="boromir",
    )
    [finding] = findings(rules.CniStaleBridgeAddress, ctx)
    assert finding.evidence == [
        "cni0 has 10.244.2.1/24, outside FLANNEL_SUBNET=10.42.1.1/24 of /run/flannel/subnet.env"
    ]
    assert finding.fix[1] == "ip link delete cni0"
    assert finding.fix[0].startswith("kubectl drain boromir")
    clean = node(
        {
            LinksCollector: [data("cni/links-flannel-clean.json")],
            FlannelSubnetEnvCollector: [data("flannel/k3s.txt")],
        }
    )
    assert findings(rules.CniStaleBridgeAddress, clean) == []


def test_stale_cilium_devices_on_a_flannel_node() -> None:
    ctx = node(
        {
            LinksCollector: [data("cni/links-flannel-with-cilium-leftovers.json")],
            CniConfigCollector: [data("cni/kubeadm-flannel.txt")],
        }
    )
    [finding] = findings(rules.CniStaleInterfaces, ctx)
    assert finding.severity is Severity.WARNING  # flannel.1 got the port; cilium_vxlan is down
    assert (
        "cilium_vxlan (vxlan, down) belongs to cilium, but this node runs flannel"
        in finding.evidence
    )
    assert (
        "VXLAN devices share UDP port 8472: cilium_vxlan (down), flannel.1 (up)" in finding.evidence
    )
    # one end of the cilium_host/cilium_net pair is enough
    assert finding.fix[:2] == ["ip link delete cilium_net", "ip link delete cilium_vxlan"]
    assert finding.fix[2].startswith("restart the flannel agent")


def test_stale_flannel_device_blocks_cilium_vxlan() -> None:
    ctx = node(
        {LinksCollector: [data("cni/links-cilium-with-flannel-leftovers.json")]},
        cluster=ClusterConfig(cni="cilium"),
    )
    [finding] = findings(rules.CniStaleInterfaces, ctx)
    assert finding.severity is Severity.CRITICAL  # cilium_vxlan cannot come up
    assert finding.fix[0] == "ip link delete flannel.1"
    assert not any("cni0" in f for f in finding.fix)


def test_vxlan_port_clash_and_calico_leftover() -> None:
    ctx = node(
        {LinksCollector: [data("cni/links-vxlan-port-clash.json")]},
        cluster=ClusterConfig(cni="flannel"),
    )
    [finding] = findings(rules.CniStaleInterfaces, ctx)
    assert "VXLAN devices share UDP port 8472: flannel.1 (up), vxlan0 (up)" in finding.evidence
    assert set(finding.fix[:2]) == {"ip link delete vxlan.calico", "ip link delete vxlan0"}


def test_stale_interfaces_clean() -> None:
    ctx = node(
        {
            LinksCollector: [data("cni/links-flannel-clean.json")],
            CniConfigCollector: [data("cni/k3s-flannel.txt")],
        }
    )
    assert findings(rules.CniStaleInterfaces, ctx) == []


def test_rules_declare_catalog_ids() -> None:
    assert [r.id for r in rules.RULES] == [
        "cni.config-missing",
        "cni.binaries-missing",
        "cni.config-conflict",
        "cni.stale-bridge-address",
        "cni.stale-interfaces",
    ]
    for rule in rules.RULES:
        assert rule.explanation.count(".") >= 2 and rule.needs
