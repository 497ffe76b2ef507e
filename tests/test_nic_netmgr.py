"""Offload and NetworkManager/.link facts (parsers on real captures) and nic.py's rules."""

from __future__ import annotations

import pytest
from tests.helpers import data, failed, findings, node

from cnidoctor.collectors.base import FactParseError
from cnidoctor.collectors.kernel import EthtoolCollector, KernelCollector, parse_ethtool_features
from cnidoctor.collectors.netmgr import (
    NetworkManagerCollector,
    parse_link_files,
    parse_nmcli_devices,
    parse_unmanaged,
    split_nmcli_terse,
)
from cnidoctor.collectors.network import LinksCollector
from cnidoctor.facts.base import FactStatus
from cnidoctor.models import ClusterConfig, Severity
from cnidoctor.rules.nic import NetmgrInterferes, OffloadBug
from cnidoctor.transports.base import CommandResult

TXCSUM_ON = data("ethtool/flannel1-txcsum-on.txt")
TXCSUM_OFF = data("ethtool/flannel1-txcsum-off.txt")
NO_DEVICE = failed(1, stderr=data("ethtool/no-device.stderr"))
KERNEL = [
    data("kernel/uname.txt"),
    data("kernel/cmdline.txt"),
    data("kernel/paths-default.txt"),
    failed(1, stderr=data("kernel/modules-missing.stderr")),
]

# --- ethtool ---------------------------------------------------------------------------


def test_parse_ethtool_features() -> None:
    offloads = parse_ethtool_features(TXCSUM_ON)
    assert offloads.device == "flannel.1"
    assert offloads.is_on("tx-checksum-ip-generic") is True
    assert offloads.features["tx-checksum-ipv4"].fixed
    assert offloads.is_on("no-such-feature") is None
    after = parse_ethtool_features(TXCSUM_OFF)
    assert after.is_on("tx-checksum-ip-generic") is False
    assert after.features["tx-tcp-segmentation"].requested == "on"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "rx-checksumming: on\n",  # no header
        "Features for flannel.1:\n",  # nothing listed
        TXCSUM_ON[: TXCSUM_ON.index("tx-checksum-ip-generic") + 12],  # cut inside a line
        "Features for flannel.1:\nrx-checksumming: maybe\n",
    ],
)
def test_malformed_ethtool(text: str) -> None:
    with pytest.raises(FactParseError):
        parse_ethtool_features(text)


def test_ethtool_absent_reasons() -> None:
    no_dev = node({EthtoolCollector: [NO_DEVICE]}).facts["offloads"]
    assert no_dev.status is FactStatus.ABSENT and no_dev.reason == "there is no flannel.1 device"
    no_tool = node({EthtoolCollector: [failed(127, stderr="sh: ethtool: not found")]})
    assert no_tool.facts["offloads"].status is FactStatus.ABSENT
    assert no_tool.facts["offloads"].reason == "ethtool is not installed"
    timed_out = CommandResult(argv=["x"], rc=124, timed_out=True)
    assert node({EthtoolCollector: [timed_out]}).facts["offloads"].status is FactStatus.ERROR


def test_offload_bug_triggers() -> None:
    ctx = node({EthtoolCollector: [TXCSUM_ON], KernelCollector: KERNEL})
    (finding,) = findings(OffloadBug, ctx)
    assert finding.severity is Severity.INFO
    assert finding.evidence == [
        "ethtool -k flannel.1: tx-checksum-ip-generic: on",
        "kernel 6.18.44-fc-v782",
    ]
    assert finding.fix[0] == "ethtool -K flannel.1 tx-checksum-ip-generic off"
    assert "/etc/udev/rules.d/90-flannel-offload.rules" in finding.fix[1]


def test_offload_bug_clean_when_off_or_no_flannel() -> None:
    assert (
        findings(OffloadBug, node({EthtoolCollector: [TXCSUM_OFF], KernelCollector: KERNEL})) == []
    )
    # no flannel.1: not skipped, simply nothing to judge
    assert (
        findings(OffloadBug, node({EthtoolCollector: [NO_DEVICE], KernelCollector: KERNEL})) == []
    )


# --- NetworkManager / .link -------------------------------------------------------------


def test_parse_nmcli_real_output() -> None:
    devices = {d.device: d for d in parse_nmcli_devices(data("netmgr/nmcli-default.txt"))}
    assert devices["cni0"].state == "connected (externally)" and devices["cni0"].managed
    assert devices["flannel.1"].type == "vxlan" and not devices["flannel.1"].managed


def test_nmcli_terse_escapes() -> None:
    assert split_nmcli_terse(r"eth0\:1:ethernet:connected") == ["eth0:1", "ethernet", "connected"]
    with pytest.raises(FactParseError):
        parse_nmcli_devices("cni0:bridge\n")  # truncated line


def test_parse_unmanaged_skips_comments() -> None:
    (setting,) = parse_unmanaged(data("netmgr/nmconf-unmanaged.txt"))
    assert setting.path == "/etc/NetworkManager/conf.d/cni.conf"
    assert "interface-name:flannel*" in setting.specs
    assert parse_unmanaged(data("netmgr/nmconf-none.txt")) == []
    with pytest.raises(FactParseError):
        parse_unmanaged("unmanaged-devices=foo\n")


def test_parse_link_files_precedence_and_order() -> None:
    files = parse_link_files(data("netmgr/links-stock.txt"))
    # /lib and /usr/lib copies of one name count once, highest-precedence dir kept
    assert [f.path for f in files] == [
        "/usr/lib/systemd/network/73-usb-net-by-mac.link",
        "/usr/lib/systemd/network/99-default.link",
    ]
    assert files[1].match == {"OriginalName": "*"}
    assert files[1].mac_policy == "persistent"
    assert not files[0].matches("flannel.1", "vxlan")  # Path= never matches a virtual device
    overridden = parse_link_files(data("netmgr/links-default-overridden.txt"))
    assert overridden[1].path == "/etc/systemd/network/99-default.link"
    assert overridden[1].mac_policy == "none"
    with pytest.raises(FactParseError):
        parse_link_files("/etc/systemd/network/10-x.link:OriginalName\n")
    with pytest.raises(FactParseError):
        parse_link_files("not a path\n")


def _nm_node(nmcli: str | CommandResult, conf: str, links: str, cni: str = "flannel"):
    return node(
        {
            NetworkManagerCollector: [
                nmcli,
                data(f"netmgr/{conf}.txt"),
                data(f"netmgr/{links}.txt"),
            ],
            LinksCollector: [data("sysctl/one-uplink.addr.json")],
        },
        cluster=ClusterConfig(cni=cni),
    )


NOT_RUNNING = failed(8, stderr=data("netmgr/nmcli-not-running.stderr"))
NOT_INSTALLED = failed(127, stderr="sh: 1: nmcli: not found")


def test_netmgr_fact_states() -> None:
    ctx = _nm_node(NOT_RUNNING, "nmconf-none", "links-stock")
    state = ctx.facts["netmgr"].value
    assert state.nm_installed and not state.nm_running
    assert state.nm_reason == "NetworkManager is not running"
    no_dbus = failed(1, stderr=data("netmgr/nmcli-no-dbus.stderr"))
    assert _nm_node(no_dbus, "nmconf-none", "links-stock").facts["netmgr"].value.nm_reason == (
        "NetworkManager is not running"
    )
    absent = node({NetworkManagerCollector: [NOT_INSTALLED, "", ""]}).facts["netmgr"]
    assert absent.status is FactStatus.ABSENT


def test_netmgr_manages_cni_devices() -> None:
    ctx = _nm_node(data("netmgr/nmcli-default.txt"), "nmconf-none", "links-flannel-override")
    (finding,) = findings(NetmgrInterferes, ctx)
    assert finding.title == "NetworkManager manages the CNI's devices"
    assert "nmcli: cni0 (bridge) connected (externally)" in finding.evidence
    assert "nmcli: veth1a2b3c4d (ethernet) connected (externally)" in finding.evidence
    assert not any("eth0 " in e or "lo " in e for e in finding.evidence)
    assert finding.fix[0].endswith("> /etc/NetworkManager/conf.d/cni.conf")
    assert "interface-name:veth*" in finding.fix[0]


def test_netmgr_unmanaged_and_link_override_is_clean() -> None:
    ctx = _nm_node(
        data("netmgr/nmcli-unmanaged-conf.txt"), "nmconf-unmanaged", "links-flannel-override"
    )
    assert findings(NetmgrInterferes, ctx) == []


def test_stock_99_default_link_on_flannel_node() -> None:
    ctx = _nm_node(NOT_INSTALLED, "nmconf-none", "links-stock")
    (finding,) = findings(NetmgrInterferes, ctx)
    assert finding.evidence == [
        "/usr/lib/systemd/network/99-default.link applies to flannel.1 (OriginalName=*): "
        "MACAddressPolicy=persistent",
        "/usr/lib/systemd/network/99-default.link applies to cni0 (OriginalName=*): "
        "MACAddressPolicy=persistent",
    ]
    assert "MACAddressPolicy=none" in finding.fix[0]
    assert "flannel.vxlan-fdb-stale" in NetmgrInterferes.causes


def test_stock_link_not_reported_on_cilium_node() -> None:
    assert (
        findings(NetmgrInterferes, _nm_node(NOT_INSTALLED, "nmconf-none", "links-stock", "cilium"))
        == []
    )


def test_auto_cni_detects_flannel_from_links() -> None:
    # cni auto + flannel.1 in `ip -j -d addr` (one-uplink capture has it)
    ctx = _nm_node(NOT_RUNNING, "nmconf-none", "links-stock", "auto")
    assert len(findings(NetmgrInterferes, ctx)) == 1
