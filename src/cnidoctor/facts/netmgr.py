"""What NetworkManager and systemd-udevd `.link` files would do to the CNI's devices."""

from __future__ import annotations

from fnmatch import fnmatchcase

from pydantic import Field

from cnidoctor.facts.base import FactModel

#: the devices a CNI creates and must own alone (names as globs)
CNI_DEVICE_GLOBS = (
    "cni0",
    "flannel*",
    "veth*",
    "cali*",
    "vxlan.calico",
    "tunl0",
    "cilium_*",
    "lxc*",
)


def is_cni_device(name: str) -> bool:
    return any(fnmatchcase(name, glob) for glob in CNI_DEVICE_GLOBS)


class NmDevice(FactModel):
    device: str
    type: str
    state: str = Field(description="nmcli state: unmanaged, connected (externally), ...")

    @property
    def managed(self) -> bool:
        return self.state != "unmanaged"


class NmUnmanagedSetting(FactModel):
    path: str
    specs: list[str] = Field(description="unmanaged-devices entries, e.g. interface-name:cni0")


class LinkFile(FactModel):
    """One systemd .link file: its [Match] and [Link] keys (the effective copy of its name)."""

    path: str
    match: dict[str, str] = Field(default_factory=dict)
    link: dict[str, str] = Field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def mac_policy(self) -> str | None:
        return self.link.get("MACAddressPolicy")

    def matches(self, ifname: str, kind: str) -> bool:
        """Would udev apply this file to a virtual device of this name and kind?

        OriginalName, Kind, Type and Driver are judged (a virtual device's type is `ether`
        and its driver is its kind). Path cannot match: virtual devices have no bus path.
        Any other key (MACAddress, Property, Host...) is not judged and counts as no match,
        so interference is never claimed from a file we cannot read fully. An empty
        [Match] matches everything.
        """
        for key, value in self.match.items():
            words = value.split()
            negate = bool(words) and words[0].startswith("!")
            if negate:
                words = [words[0][1:], *words[1:]]
            if key == "OriginalName":
                subject = ifname
            elif key in ("Kind", "Driver"):
                subject = kind
            elif key == "Type":
                subject = "ether"
            else:
                return False
            hit = any(fnmatchcase(subject, w) for w in words if w)
            if hit == negate:
                return False
        return True


class NetworkManagerState(FactModel):
    """nmcli's device list (when NM runs), its unmanaged-devices settings, the .link files."""

    nm_installed: bool
    nm_running: bool
    nm_reason: str | None = Field(default=None, description="why there is no device list")
    devices: list[NmDevice] = Field(default_factory=list)
    unmanaged: list[NmUnmanagedSetting] = Field(default_factory=list)
    link_files: list[LinkFile] = Field(
        default_factory=list, description="effective .link files, in the order udev tries them"
    )

    def managed_cni_devices(self) -> list[NmDevice]:
        return [d for d in self.devices if d.managed and is_cni_device(d.device)]

    def first_link_file(self, ifname: str, kind: str) -> LinkFile | None:
        """The .link file udev applies: the first, in file-name order, that matches."""
        return next((f for f in self.link_files if f.matches(ifname, kind)), None)
