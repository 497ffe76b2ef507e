"""The inbound ports a node must accept from its peers, by role and CNI.

From the catalog row firewall.input-drop-blocks-cluster-ports.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Port:
    proto: str
    first: int
    last: int
    purpose: str

    @property
    def label(self) -> str:
        span = str(self.first) if self.first == self.last else f"{self.first}-{self.last}"
        return f"{span}/{self.proto}"

    @property
    def ufw_spec(self) -> str:
        """ufw's port syntax: `10250/tcp`, `2379:2380/tcp`."""
        span = str(self.first) if self.first == self.last else f"{self.first}:{self.last}"
        return f"{span}/{self.proto}"

    @property
    def iptables_spec(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}:{self.last}"


def required_ports(
    role: str, cni: str, etcd: bool | None = None, flannel_backend: str | None = None
) -> list[Port]:
    """Ports peers connect to on this node. `etcd` defaults to "is a control-plane node";
    cni "auto" is treated as flannel with its default VXLAN backend."""
    control_plane = role == "control-plane"
    etcd = control_plane if etcd is None else etcd
    ports = []
    if control_plane:
        ports.append(Port("tcp", 6443, 6443, "Kubernetes API server"))
    ports.append(Port("tcp", 10250, 10250, "kubelet"))
    if etcd:
        ports.append(Port("tcp", 2379, 2380, "etcd client and peer"))
    if cni in ("flannel", "auto"):
        backend = (flannel_backend or "vxlan").lower()
        if backend == "vxlan":
            ports.append(Port("udp", 8472, 8472, "flannel VXLAN"))
        elif backend in ("wireguard", "wireguard-native"):
            ports.append(Port("udp", 51820, 51821, "flannel WireGuard"))
    elif cni == "cilium":
        ports.append(Port("udp", 8472, 8472, "cilium VXLAN"))
        ports.append(Port("tcp", 4240, 4240, "cilium health checks"))
    elif cni == "calico":
        ports.append(Port("tcp", 179, 179, "calico BGP"))
        ports.append(Port("udp", 4789, 4789, "calico VXLAN"))
    return ports
