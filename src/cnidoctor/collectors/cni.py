"""CNI conf dirs and bin dirs, each read by one constant `sh -c` script.

File contents are framed by a marker the script draws from /dev/urandom at run time
and prints first, so no file content can forge or end a frame. The scripts read fixed
paths only; nothing from the node is ever put into a command.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cnidoctor.collectors.base import Collector, FactAbsent, FactParseError
from cnidoctor.facts.cni import (
    ETC_CNI_DIR,
    K3S_CNI_DIR,
    CniBinDir,
    CniBins,
    CniConfDir,
    CniConfig,
    CniConfigFile,
    CniPlugin,
)
from cnidoctor.transports.base import Command, CommandResult

#: shared preamble: a random marker, announced on the first line
MARKER_PREAMBLE = (
    "M=\"@@cnidoctor-f-$(od -An -N12 -tx1 /dev/urandom 2>/dev/null | tr -d ' \\n')\"\n"
    "printf 'MARKER %s\\n' \"$M\"\n"
)

#: the cap on one file's size: CNI configs are a few KiB, this bounds a runaway file
MAX_FILE_BYTES = 262144

CNI_CONFIG_SCRIPT = (
    MARKER_PREAMBLE
    + f"""for d in {ETC_CNI_DIR} {K3S_CNI_DIR}; do
  if [ ! -d "$d" ]; then printf '%s NODIR %s\\n' "$M" "$d"; continue; fi
  printf '%s DIR %s\\n' "$M" "$d"
  for f in "$d"/*; do
    [ -e "$f" ] || [ -L "$f" ] || continue
    if [ -d "$f" ]; then printf '%s SUBDIR %s\\n' "$M" "$f"; continue; fi
    printf '%s FILE %s\\n' "$M" "$f"
    head -c {MAX_FILE_BYTES} -- "$f" 2>/dev/null; rc=$?
    printf '\\n%s END %d\\n' "$M" "$rc"
  done
done
printf '%s DONE\\n' "$M"
"""
)

CNI_BIN_SCRIPT = (
    MARKER_PREAMBLE
    + """for d in /opt/cni/bin /var/lib/rancher/k3s/data/cni /var/lib/rancher/k3s/data/*/bin; do
  case "$d" in *'*'*) continue ;; esac
  if [ ! -d "$d" ]; then printf '%s NODIR %s\\n' "$M" "$d"; continue; fi
  printf '%s DIR %s\\n' "$M" "$d"
  for l in "$d" "${d%/bin}"; do
    if [ -L "$l" ]; then printf '%s LINK %s\\n' "$M" "$(readlink "$l")"; break; fi
  done
  for f in "$d"/*; do
    [ -e "$f" ] || [ -L "$f" ] || continue
    if [ -f "$f" ] && [ -x "$f" ]; then x=x; else x=-; fi
    printf '%s F %s %s\\n' "$M" "$x" "${f##*/}"
  done
done
printf '%s DONE\\n' "$M"
"""
)


@dataclass
class Record:
    """One marker line of a framed listing: its tag, argument and, for FILE, the body."""

    tag: str
    arg: str
    body: str = ""
    rc: int | None = None
    extra: list[str] = field(default_factory=list)


def parse_frames(text: str, what: str) -> list[Record]:
    """Split a framed listing; FactParseError when it is not one or was cut short."""
    lines = text.splitlines(keepends=True)
    if not lines or not lines[0].startswith("MARKER "):
        raise FactParseError(f"{what}: output does not start with the frame marker")
    marker = lines[0].split(maxsplit=1)[1].strip() if len(lines[0].split()) > 1 else ""
    if not marker.startswith("@@cnidoctor-f-"):
        raise FactParseError(f"{what}: malformed frame marker line")
    prefix = marker + " "
    records: list[Record] = []
    body: list[str] | None = None
    done = False
    for line in lines[1:]:
        if not line.startswith(prefix):
            if body is not None:
                body.append(line)
            elif records and records[-1].tag == "F":
                # a file name with a newline in it: keep it whole rather than fail
                records[-1].arg += "\n" + line.rstrip("\n")
            elif line.strip():
                raise FactParseError(f"{what}: unframed line {line.strip()[:60]!r}")
            continue
        tag, _, arg = line[len(prefix) :].rstrip("\n").partition(" ")
        if body is not None:
            if tag != "END":
                body.append(line)
                continue
            text_body = "".join(body)
            records[-1].body = text_body[:-1] if text_body.endswith("\n") else text_body
            try:
                records[-1].rc = int(arg)
            except ValueError as exc:
                raise FactParseError(f"{what}: bad END line {line.strip()!r}") from exc
            body = None
            continue
        if tag == "DONE":
            done = True
            break
        records.append(Record(tag=tag, arg=arg))
        if tag == "FILE":
            body = []
    if body is not None:
        raise FactParseError(f"{what}: output ends inside {records[-1].arg} (truncated)")
    if not done:
        raise FactParseError(f"{what}: output ends before the end marker (truncated)")
    return records


def parse_cni_file(path: str, content: str) -> CniConfigFile:
    """One conf-dir file; a file that is not a loadable config says why on itself."""
    entry = CniConfigFile(path=path, content=content)
    if not entry.is_config:
        return entry
    try:
        data = json.loads(content)
    except json.JSONDecodeError as exc:
        return entry.model_copy(
            update={"error": f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"}
        )
    if not isinstance(data, dict):
        return entry.model_copy(update={"error": "not a JSON object"})
    raw_plugins: Any
    if path.endswith(".conflist"):
        raw_plugins = data.get("plugins")
        if not isinstance(raw_plugins, list) or not raw_plugins:
            error = "a .conflist without a plugins list"
            return entry.model_copy(update={"error": error, **_header(data)})
    else:
        if not isinstance(data.get("type"), str) or not data.get("type"):
            why = "no type (a conflist in a .conf file?)" if "plugins" in data else "no type"
            return entry.model_copy(update={"error": why, **_header(data)})
        raw_plugins = [data]
    plugins = []
    for index, raw in enumerate(raw_plugins):
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str) or not raw["type"]:
            error = f"plugin {index} has no type"
            return entry.model_copy(update={"error": error, **_header(data)})
        plugins.append(_plugin(raw))
    return entry.model_copy(update={"plugins": plugins, **_header(data)})


def _header(data: dict[str, Any]) -> dict[str, Any]:
    name = data.get("name")
    version = data.get("cniVersion")
    return {
        "name": name if isinstance(name, str) else None,
        "cni_version": version if isinstance(version, str) else None,
    }


def _plugin(raw: dict[str, Any]) -> CniPlugin:
    ipam = raw.get("ipam") if isinstance(raw.get("ipam"), dict) else {}
    subnets: list[str] = []
    routes: list[str] = []
    _collect_ipam(ipam, subnets, routes)
    delegate = raw.get("delegate") if isinstance(raw.get("delegate"), dict) else None
    if delegate is not None and isinstance(delegate.get("ipam"), dict):
        _collect_ipam(delegate["ipam"], subnets, routes)
    ipam_type = ipam.get("type")
    bridge = raw.get("bridge")
    return CniPlugin(
        type=raw["type"],
        ipam_type=ipam_type if isinstance(ipam_type, str) and ipam_type else None,
        subnets=subnets,
        routes=routes,
        delegate=delegate,
        bridge=bridge if isinstance(bridge, str) else None,
    )


def _collect_ipam(ipam: dict[str, Any], subnets: list[str], routes: list[str]) -> None:
    if isinstance(ipam.get("subnet"), str):
        subnets.append(ipam["subnet"])
    for range_set in ipam.get("ranges") or []:
        for item in range_set if isinstance(range_set, list) else [range_set]:
            if isinstance(item, dict) and isinstance(item.get("subnet"), str):
                subnets.append(item["subnet"])
    for route in ipam.get("routes") or []:
        if isinstance(route, dict) and isinstance(route.get("dst"), str):
            routes.append(route["dst"])


def parse_cni_config(text: str) -> CniConfig:
    records = parse_frames(text, "CNI conf dirs")
    dirs: dict[str, CniConfDir] = {}
    current: CniConfDir | None = None
    for record in records:
        if record.tag in ("DIR", "NODIR"):
            current = CniConfDir(path=record.arg, exists=record.tag == "DIR")
            dirs[record.arg] = current
        elif current is None:
            raise FactParseError(f"CNI conf dirs: {record.tag} before any DIR line")
        elif record.tag == "SUBDIR":
            current.subdirs.append(record.arg)
        elif record.tag == "FILE":
            if record.rc:
                problem = f"cannot read (exit status {record.rc})"
                current.files.append(CniConfigFile(path=record.arg, read_error=problem))
            else:
                current.files.append(parse_cni_file(record.arg, record.body))
        else:
            raise FactParseError(f"CNI conf dirs: unknown record {record.tag!r}")
    if not any(d.exists for d in dirs.values()):
        raise FactAbsent(f"neither {ETC_CNI_DIR} nor {K3S_CNI_DIR} exists")
    k3s = dirs.get(K3S_CNI_DIR)
    runtime_dir = K3S_CNI_DIR if k3s is not None and k3s.exists else ETC_CNI_DIR
    runtime = dirs.get(runtime_dir)
    configs = runtime.configs if runtime is not None else []
    return CniConfig(
        dirs=list(dirs.values()),
        runtime_dir=runtime_dir,
        active_path=configs[0].path if configs else None,
    )


def parse_cni_bins(text: str) -> CniBins:
    records = parse_frames(text, "CNI bin dirs")
    dirs: list[CniBinDir] = []
    looked: list[str] = []
    for record in records:
        if record.tag == "NODIR":
            looked.append(record.arg)
        elif record.tag == "DIR":
            looked.append(record.arg)
            dirs.append(CniBinDir(path=record.arg))
        elif not dirs:
            raise FactParseError(f"CNI bin dirs: {record.tag} before any DIR line")
        elif record.tag == "LINK":
            dirs[-1].link_target = record.arg
        elif record.tag == "F":
            flag, _, name = record.arg.partition(" ")
            if flag not in ("x", "-") or not name:
                raise FactParseError(f"CNI bin dirs: bad entry {record.arg!r}")
            (dirs[-1].plugins if flag == "x" else dirs[-1].not_executable).append(name)
        else:
            raise FactParseError(f"CNI bin dirs: unknown record {record.tag!r}")
    if not dirs:
        raise FactAbsent(f"no CNI bin dir exists (looked at {', '.join(looked)})")
    return CniBins(dirs=dirs)


class CniConfigCollector(Collector):
    name = "cni_config"
    description = "every file of the CNI conf dirs (/etc/cni/net.d, k3s's agent dir), parsed"
    commands = (Command(("sh", "-c", CNI_CONFIG_SCRIPT)),)

    @classmethod
    def parse(cls, results: Sequence[CommandResult]) -> CniConfig:
        return parse_cni_config(results[0].stdout)


class CniBinCollector(Collector):
    name = "cni_bin"
    description = "CNI plugin binaries in /opt/cni/bin and k3s's data dirs"
    commands = (Command(("sh", "-c", CNI_BIN_SCRIPT)),)

    @classmethod
    def parse(cls, results: Sequence[CommandResult]) -> CniBins:
        return parse_cni_bins(results[0].stdout)
