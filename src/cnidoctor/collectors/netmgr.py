"""NetworkManager's view of the CNI devices and the systemd .link files udev applies to them.

NetworkManager that manages cni0/veth* re-applies addresses and routes under the CNI;
a .link file with MACAddressPolicy=persistent (the stock 99-default.link) gives flannel.1
a new MAC that no peer's fdb knows. Both are read from files and nmcli, never guessed.
"""

from __future__ import annotations

from collections.abc import Sequence

from cnidoctor.collectors.base import Collector, FactAbsent, FactParseError, describe_failure
from cnidoctor.facts.netmgr import LinkFile, NetworkManagerState, NmDevice, NmUnmanagedSetting
from cnidoctor.transports.base import Command, CommandResult

NM_CONF_FILES = (
    "/etc/NetworkManager/NetworkManager.conf",
    "/etc/NetworkManager/conf.d/*.conf",
    "/run/NetworkManager/conf.d/*.conf",
    "/usr/lib/NetworkManager/conf.d/*.conf",
)
NM_CONF_SCRIPT = "grep -H -s '^[[:space:]]*unmanaged-devices' " + " ".join(NM_CONF_FILES) + "; true"
#: udev's search path, highest precedence first: a file name in /etc hides the same name below
LINK_DIRS = (
    "/etc/systemd/network",
    "/run/systemd/network",
    "/usr/lib/systemd/network",
    "/lib/systemd/network",
)
LINK_SCRIPT = (
    "grep -H -s -v -E '^[[:space:]]*([#;]|$)' "
    + " ".join(f"{d}/*.link" for d in LINK_DIRS)
    + "; true"
)
#: nmcli's exit status when the daemon is not running
NMCLI_NOT_RUNNING = 8


def split_nmcli_terse(line: str) -> list[str]:
    """nmcli -t separates fields with ':' and escapes ':' and '\\' inside values."""
    fields, current, escaped = [], [], False
    for char in line:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(char)
    fields.append("".join(current))
    return fields


def parse_nmcli_devices(text: str) -> list[NmDevice]:
    devices = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = split_nmcli_terse(line)
        if len(fields) != 3 or not fields[0] or not fields[2]:
            raise FactParseError(f"nmcli -t device: expected DEVICE:TYPE:STATE, got {line[:120]!r}")
        devices.append(NmDevice(device=fields[0], type=fields[1], state=fields[2]))
    return devices


def parse_unmanaged(text: str) -> list[NmUnmanagedSetting]:
    """`PATH:unmanaged-devices=spec;spec` lines (grep -H) -> settings per file."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        path, sep, content = line.partition(":")
        key, eq, value = content.partition("=")
        if (
            not sep
            or not path.startswith("/")
            or not eq
            or not key.strip().startswith("unmanaged-devices")
        ):
            raise FactParseError(f"NetworkManager config: unexpected line {line[:120]!r}")
        specs = [s.strip() for s in value.split(";") if s.strip()]
        out.append(NmUnmanagedSetting(path=path, specs=specs))
    return out


def parse_link_files(text: str) -> list[LinkFile]:
    """`PATH:LINE` lines of .link files -> the effective files in udev's order.

    udev sorts .link files by file name across its directories; of several files with
    the same name only the one in the highest-precedence directory counts.
    """
    by_path: dict[str, LinkFile] = {}
    sections: dict[str, str] = {}  # path -> the section its last header opened
    for line in text.splitlines():
        if not line.strip():
            continue
        path, sep, content = line.partition(":")
        if not sep or not path.endswith(".link") or "/" not in path:
            raise FactParseError(f".link files: unexpected line {line[:120]!r}")
        content = content.strip()
        link_file = by_path.setdefault(path, LinkFile(path=path))
        if content.startswith("[") and content.endswith("]"):
            sections[path] = content[1:-1]
            continue
        key, eq, value = content.partition("=")
        if not eq:
            raise FactParseError(f".link files: unexpected line {line[:120]!r}")
        section = sections.get(path)
        if section == "Match":
            link_file.match[key.strip()] = value.strip()
        elif section == "Link":
            link_file.link[key.strip()] = value.strip()
    effective: dict[str, LinkFile] = {}
    for link_file in by_path.values():
        current = effective.get(link_file.name)
        if current is None or _rank(link_file.path) < _rank(current.path):
            effective[link_file.name] = link_file
    return [effective[name] for name in sorted(effective)]


def _rank(path: str) -> int:
    directory = path.rsplit("/", 1)[0]
    return LINK_DIRS.index(directory) if directory in LINK_DIRS else len(LINK_DIRS)


class NetworkManagerCollector(Collector):
    name = "netmgr"
    description = "NetworkManager device states and unmanaged-devices config; systemd .link files"
    commands = (
        Command(("nmcli", "-t", "-f", "DEVICE,TYPE,STATE", "device")),
        Command(("sh", "-c", NM_CONF_SCRIPT)),
        Command(("sh", "-c", LINK_SCRIPT)),
    )
    #: nmcli is often not installed or its daemon not running: parse() reads that itself
    optional_commands = frozenset({0})

    @classmethod
    def parse(cls, results: Sequence[CommandResult]) -> NetworkManagerState:
        nmcli = results[0]
        devices: list[NmDevice] = []
        installed, running, reason = True, False, None
        if nmcli.program_missing:
            installed, reason = False, "nmcli is not installed"
        elif nmcli.ok:
            devices = parse_nmcli_devices(nmcli.stdout)
            running = True
        elif nmcli.rc == NMCLI_NOT_RUNNING or "could not connect" in nmcli.stderr.lower():
            reason = "NetworkManager is not running"
        else:
            problem = describe_failure(nmcli)
            reason = problem[1] if problem else "nmcli failed"
        unmanaged = parse_unmanaged(results[1].stdout)
        link_files = parse_link_files(results[2].stdout)
        if not installed and not unmanaged and not link_files:
            raise FactAbsent("neither NetworkManager (nmcli) nor systemd .link files are present")
        return NetworkManagerState(
            nm_installed=installed,
            nm_running=running,
            nm_reason=reason,
            devices=devices,
            unmanaged=unmanaged,
            link_files=link_files,
        )
