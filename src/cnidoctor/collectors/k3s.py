"""k3s's settings: config.yaml, config.yaml.d/*.yaml and the ExecStart of its systemd units.

Secrets never leave the node: the script passes every file through an awk filter that
blanks the values of token/datastore settings (YAML keys, `--token X`, `--token=X`,
K3S_TOKEN=), so raw snapshots hold no join token.
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Sequence
from typing import Any

import yaml

from cnidoctor.collectors.base import Collector, FactAbsent, FactParseError
from cnidoctor.collectors.cni import MARKER_PREAMBLE, MAX_FILE_BYTES, parse_frames
from cnidoctor.facts.k3s import K3sConfig, K3sFile, K3sUnit
from cnidoctor.transports.base import Command, CommandResult

CONFIG_FILE = "/etc/rancher/k3s/config.yaml"
CONFIG_DROPINS = "/etc/rancher/k3s/config.yaml.d"
REDACTED = "<redacted>"

#: settings whose values are secrets
_SECRETS = "token|agent-token|datastore-endpoint|etcd-s3-access-key|etcd-s3-secret-key|vpn-auth"

#: awk: blank secret values; written without single quotes to sit inside sh '...'
REDACT_AWK = (
    'BEGIN { q = sprintf("%c", 39); s = "^-?-(' + _SECRETS + '|t)" }\n'
    "{\n"
    '  if ($0 ~ "^[ \\t]*[\\"" q "]?(' + _SECRETS + ')[\\"" q "]?[ \\t]*:") {\n'
    '    sub(/:.*/, ": ' + REDACTED + '"); print; next }\n'
    '  gsub(/K3S_(TOKEN|AGENT_TOKEN|DATASTORE_ENDPOINT)=[^ \\t"]*/, "K3S_SECRET='
    + REDACTED
    + '")\n'
    "  for (i = 1; i <= NF; i++) {\n"
    '    w = $i; gsub("[\\"" q "]", "", w)\n'
    '    if (w == "\\\\") continue\n'
    '    if (pending) { $i = "' + REDACTED + '"; pending = 0; continue }\n'
    '    if (w ~ (s "$")) { pending = 1; continue }\n'
    '    if (w ~ (s "=")) { sub(/=.*/, "=' + REDACTED + '", w); $i = w }\n'
    "  }\n"
    "  print\n"
    "}\n"
)

K3S_SCRIPT = (
    MARKER_PREAMBLE
    + "P='"
    + REDACT_AWK
    + "'\n"
    + f"""for f in {CONFIG_FILE} {CONFIG_DROPINS}/*.yaml /etc/systemd/system/k3s*.service \\
    /usr/lib/systemd/system/k3s*.service; do
  [ -f "$f" ] || continue
  printf '%s FILE %s\\n' "$M" "$f"
  head -c {MAX_FILE_BYTES} -- "$f" 2>/dev/null | awk "$P"; rc=$?
  printf '\\n%s END %d\\n' "$M" "$rc"
done
if [ -d /var/lib/rancher/k3s ]; then printf '%s DATADIR yes\\n' "$M"; fi
b=$(command -v k3s 2>/dev/null) && printf '%s BINARY %s\\n' "$M" "$b"
printf '%s DONE\\n' "$M"
"""
)

#: k3s flags that take no value (so the next word is not theirs)
BOOL_FLAGS = frozenset(
    {
        "flannel-external-ip",
        "flannel-ipv6-masq",
        "disable-network-policy",
        "disable-kube-proxy",
        "disable-cloud-controller",
        "disable-helm-controller",
        "disable-scheduler",
        "disable-apiserver",
        "disable-etcd",
        "disable-controller-manager",
        "cluster-init",
        "cluster-reset",
        "secrets-encryption",
        "selinux",
        "rootless",
        "prefer-bundled-bin",
        "docker",
        "debug",
        "embedded-registry",
        "protect-kernel-defaults",
        "no-flannel",
        "supervisor-metrics",
        "enable-pprof",
        "etcd-expose-metrics",
        "disable-default-registry-endpoint",
        "write-kubeconfig-group",
    }
)


def split_exec_start(unit_text: str) -> list[str] | None:
    """The words of the unit's effective ExecStart (the last one; continuations joined)."""
    joined = unit_text.replace("\\\r\n", " ").replace("\\\n", " ")
    argv: list[str] | None = None
    for line in joined.splitlines():
        stripped = line.strip()
        if not stripped.startswith("ExecStart="):
            continue
        command = stripped[len("ExecStart=") :].strip().lstrip("-@:+!")
        if not command:
            argv = None  # an empty ExecStart= resets the list
            continue
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise FactParseError(f"ExecStart is not valid shell words: {exc}") from exc
    return argv


def parse_flags(args: Sequence[str]) -> dict[str, Any]:
    """`--a b --c=d --flag` -> {a: b, c: d, flag: True}; a repeated flag gives a list."""
    flags: dict[str, Any] = {}
    i = 0
    while i < len(args):
        word = args[i]
        i += 1
        if not word.startswith("-") or word in ("-", "--"):
            continue
        name, eq, value = word.lstrip("-").partition("=")
        parsed: Any
        if eq:
            parsed = value
        elif name in BOOL_FLAGS or i >= len(args) or args[i].startswith("-"):
            parsed = True
        else:
            parsed = args[i]
            i += 1
        if name in flags:
            previous = flags[name]
            flags[name] = [*previous, parsed] if isinstance(previous, list) else [previous, parsed]
        else:
            flags[name] = parsed
    return flags


def parse_unit(path: str, text: str) -> K3sUnit:
    name = posixpath.basename(path)
    argv = split_exec_start(text) or []
    role = None
    flags: dict[str, Any] = {}
    for index, word in enumerate(argv[1:], start=1):
        if word in ("server", "agent"):
            role = word
            flags = parse_flags(argv[index + 1 :])
            break
    return K3sUnit(path=path, name=name, role=role, argv=argv, flags=flags)


def merge_config(
    settings: dict[str, Any], sources: dict[str, str], data: dict[str, Any], source: str
) -> None:
    """k3s's merge: later files override; `key+:` appends to the list of `key`."""
    for raw_key, value in data.items():
        key = str(raw_key)
        if key.endswith("+"):
            key = key[:-1]
            old = settings.get(key)
            old_list = old if isinstance(old, list) else ([] if old is None else [old])
            new = value if isinstance(value, list) else [value]
            settings[key] = [*old_list, *new]
        else:
            settings[key] = value
        sources[key] = source


def parse_k3s(text: str) -> K3sConfig:
    records = parse_frames(text, "k3s settings")
    files: list[K3sFile] = []
    units: list[K3sUnit] = []
    settings: dict[str, Any] = {}
    sources: dict[str, str] = {}
    binary = None
    data_dir = False
    seen_units: set[str] = set()
    for record in records:
        if record.tag == "DATADIR":
            data_dir = True
        elif record.tag == "BINARY":
            binary = record.arg
        elif record.tag != "FILE":
            raise FactParseError(f"k3s settings: unknown record {record.tag!r}")
        elif record.arg.endswith(".service"):
            unit = parse_unit(record.arg, record.body)
            if unit.name not in seen_units:  # /etc/systemd/system overrides /usr/lib
                seen_units.add(unit.name)
                units.append(unit)
        elif record.rc:
            files.append(K3sFile(path=record.arg, error=f"cannot read (exit status {record.rc})"))
        else:
            try:
                data = yaml.safe_load(record.body)
            except yaml.YAMLError as exc:
                problem = str(exc).splitlines()[0]
                files.append(K3sFile(path=record.arg, error=f"not valid YAML: {problem}"))
                continue
            if data is None:
                data = {}
            if not isinstance(data, dict):
                files.append(K3sFile(path=record.arg, error="not a YAML mapping"))
                continue
            files.append(K3sFile(path=record.arg))
            merge_config(settings, sources, data, record.arg)
    if not files and not units and not data_dir and binary is None:
        raise FactAbsent(
            f"k3s is not installed: no {CONFIG_FILE}, no k3s systemd unit, "
            "no /var/lib/rancher/k3s, no k3s binary"
        )
    main = K3sConfig(units=units).unit
    if main is not None:
        for key, value in main.flags.items():
            settings[key] = value
            sources[key] = f"ExecStart of {main.path}"
    return K3sConfig(
        files=files,
        units=units,
        settings=settings,
        sources=sources,
        binary=binary,
        data_dir=data_dir,
    )


class K3sConfigCollector(Collector):
    name = "k3s"
    description = "k3s settings from config.yaml(.d) and the k3s systemd units (secrets blanked)"
    commands = (Command(("sh", "-c", K3S_SCRIPT)),)

    @classmethod
    def parse(cls, results: Sequence[CommandResult]) -> K3sConfig:
        return parse_k3s(results[0].stdout)
