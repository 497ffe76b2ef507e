"""Kernel release, boot command line, IPv6/IPVS presence, modules; kube-proxy's mode; offloads."""

from __future__ import annotations

import re
from collections.abc import Sequence

from cnidoctor.collectors.base import Collector, FactAbsent, FactParseError, describe_failure
from cnidoctor.facts.kernel import Feature, KernelInfo, KubeProxyMode, Offloads
from cnidoctor.transports.base import Command, CommandResult

#: checks a file inside the directory: a tmpfs mask (labs) leaves the directory itself
PROC_PATHS = ("/proc/sys/net/ipv6/conf/all", "/proc/net/ip_vs")
PROC_PATHS_SCRIPT = (
    "for p in " + " ".join(PROC_PATHS) + '; do if [ -e "$p" ]; then echo "present $p"; '
    'else echo "absent $p"; fi; done'
)


def parse_proc_paths(text: str) -> dict[str, bool]:
    """`present PATH` / `absent PATH` lines -> path -> exists; every path must be there."""
    seen: dict[str, bool] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        word, _, path = line.partition(" ")
        if word not in ("present", "absent") or path not in PROC_PATHS:
            raise FactParseError(f"kernel: unexpected line {line[:120]!r}")
        seen[path] = word == "present"
    lost = [p for p in PROC_PATHS if p not in seen]
    if lost:
        raise FactParseError(f"kernel: output truncated (nothing about {', '.join(lost)})")
    return seen


def parse_proc_modules(text: str) -> list[str]:
    """/proc/modules: `name size refcount deps state address` per line -> names."""
    names = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) < 6 or not fields[1].isdigit():
            raise FactParseError(f"/proc/modules: unexpected line {line[:120]!r}")
        names.append(fields[0])
    return names


class KernelCollector(Collector):
    name = "kernel"
    description = "kernel release, boot command line, IPv6 and IPVS presence, loaded modules"
    commands = (
        Command(("uname", "-r")),
        Command(("cat", "/proc/cmdline")),
        Command(("sh", "-c", PROC_PATHS_SCRIPT)),
        Command(("cat", "/proc/modules")),
    )
    #: a kernel built without module support has no /proc/modules
    optional_commands = frozenset({3})

    @classmethod
    def parse(cls, results: Sequence[CommandResult]) -> KernelInfo:
        release = results[0].stdout.strip()
        if not release or len(release.split()) != 1:
            raise FactParseError(f"uname -r: unexpected output {release[:80]!r}")
        paths = parse_proc_paths(results[2].stdout)
        modules: list[str] | None = None
        reason: str | None = None
        problem = describe_failure(results[3])
        if problem is None:
            modules = parse_proc_modules(results[3].stdout)
        else:
            reason = problem[1]
        return KernelInfo(
            release=release,
            cmdline=results[1].stdout.strip(),
            ipv6_present=paths["/proc/sys/net/ipv6/conf/all"],
            ip_vs_present=paths["/proc/net/ip_vs"],
            modules=modules,
            modules_reason=reason,
        )


#: where a node's own files say which mode kube-proxy runs in: k3s (config, drop-ins, units
#: and their env files) and a kube-proxy config file kept on the host. kubeadm keeps it in
#: the kube-proxy ConfigMap, which no node file shows.
KUBE_PROXY_FILES = (
    "/etc/rancher/k3s/config.yaml",
    "/etc/rancher/k3s/config.yaml.d/*.yaml",
    "/etc/systemd/system/k3s*.service",
    "/etc/systemd/system/k3s*.service.env",
    "/var/lib/kube-proxy/config.conf",
    "/etc/kubernetes/kube-proxy-config.yaml",
)
KUBE_PROXY_SCRIPT = (
    "grep -H -s -E 'proxy-mode|^[[:space:]]*mode:' " + " ".join(KUBE_PROXY_FILES) + "; true"
)
_PROXY_MODE_FLAG = re.compile(r"proxy-mode[= ]+[\"']?([a-z]+)")
_PROXY_MODE_YAML = re.compile(r"^\s*mode:\s*[\"']?([a-z]*)[\"']?\s*(#.*)?$")


def parse_kube_proxy_mode(text: str) -> KubeProxyMode:
    """`PATH:LINE` lines -> the last explicit mode (later files and lines win)."""
    found: KubeProxyMode | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        path, sep, content = line.partition(":")
        if not sep or not path.startswith("/"):
            raise FactParseError(f"kube-proxy mode: unexpected line {line[:120]!r}")
        if content.lstrip().startswith("#"):
            continue
        match = _PROXY_MODE_FLAG.search(content)
        if match is None and "kube-proxy" in path:
            yaml_match = _PROXY_MODE_YAML.match(content)
            if yaml_match and yaml_match.group(1):
                match = yaml_match
        if match:
            found = KubeProxyMode(mode=match.group(1), source=f"{path}: {content.strip()}")
    if found is None:
        raise FactAbsent(
            "no kube-proxy mode set in k3s config/units or a kube-proxy config file on the node"
        )
    return found


class KubeProxyModeCollector(Collector):
    name = "kube_proxy_mode"
    description = "kube-proxy's proxy mode as set in k3s config/units or a host kube-proxy config"
    commands = (Command(("sh", "-c", KUBE_PROXY_SCRIPT)),)

    @classmethod
    def parse(cls, results: Sequence[CommandResult]) -> KubeProxyMode:
        return parse_kube_proxy_mode(results[0].stdout)


_FEATURE = re.compile(r"^\t?([a-z0-9_-]+): (on|off)( \[fixed\]| \[requested (?:on|off)\])?$")


#: (state, fixed, requested) -> the Feature (never modified after parsing)
_FEATURES: dict[tuple[str, bool, str | None], Feature] = {}


def parse_ethtool_features(text: str) -> Offloads:
    """`ethtool -k DEV`: a `Features for DEV:` header, then `name: on|off [fixed]` lines."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("Features for ") or not lines[0].endswith(":"):
        raise FactParseError("ethtool -k: no 'Features for DEV:' header")
    device = lines[0][len("Features for ") : -1]
    features: dict[str, Feature] = {}
    for line in lines[1:]:
        match = _FEATURE.match(line)
        if match is None:
            raise FactParseError(f"ethtool -k: unexpected line {line[:120]!r}")
        name, state, extra = match.groups()
        requested = None
        if extra and "requested" in extra:
            requested = extra.strip()[len("[requested ") : -1]
        key = (state, extra == " [fixed]", requested)
        feature = _FEATURES.get(key)
        if feature is None:  # a handful of distinct values, shared by every node's 60 features
            feature = _FEATURES[key] = Feature.trusted(
                state=state, fixed=key[1], requested=requested
            )
        features[name] = feature
    if not features:
        raise FactParseError("ethtool -k: no features listed")
    return Offloads(device=device, features=features)


class EthtoolCollector(Collector):
    name = "offloads"
    description = "offload features of flannel.1 (ethtool -k)"
    commands = (Command(("ethtool", "-k", "flannel.1")),)
    optional_commands = frozenset({0})

    @classmethod
    def parse(cls, results: Sequence[CommandResult]) -> Offloads:
        result = results[0]
        if result.program_missing:
            raise FactAbsent("ethtool is not installed")
        if result.ok:
            return parse_ethtool_features(result.stdout)
        if "No such device" in result.stderr or "no device matches name" in result.stderr:
            raise FactAbsent("there is no flannel.1 device")
        problem = describe_failure(result)
        raise FactParseError(problem[1] if problem else "ethtool -k flannel.1 failed")
