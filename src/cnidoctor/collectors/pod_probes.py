"""Pod network probes as a fact: the raw results the probe run records, and their parser.

The probes are not part of a node's ordinary batch (they send traffic, and they need the
other nodes' pod addresses first), so this collector has no commands of its own: the
probe run (cnidoctor.probes.pod) stores its raw results under this collector's name in the
node's collection, where snapshots keep them, and `judge` reads them like any fact. A
diagnosis without `--probe` gets the fact as absent, and rules that need it are skipped.

Raw results, in order: the discovery script (pod sandboxes from `crictl inspectp` and the
`/run/netns/cni-*` listing), the agent's run inside the chosen pod's network namespace,
and, in the lab only, what the lab's upstream and DNS pods saw (the far end).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from typing import Any

from cnidoctor.collectors.base import (
    Collector,
    FactAbsent,
    FactParseError,
    describe_failure,
)
from cnidoctor.facts.base import Fact, FactStatus
from cnidoctor.facts.probes import FarEnd, PodProbes, PodSandbox, ProbeResult
from cnidoctor.transports.base import Command, CommandResult

MARK = "@@cnidoctor-pods"
#: sandboxes inspected and namespaces listed at most, per node
MAX_SANDBOXES = 8
#: seconds the discovery script starts new work for (each step is bounded: 2-5 s more)
DISCOVERY_BUDGET = 10
#: argv[0] of the synthetic record of what the far end saw (written by the probe run)
FAR_END = "cnidoctor-far-end"

#: fixed text: no data from anywhere is ever put into it (ids come from crictl, quoted)
DISCOVERY_SCRIPT = f"""M={MARK}
n=0
end=$(( $(date +%s) + {DISCOVERY_BUDGET} ))
if command -v crictl >/dev/null 2>&1; then
  for id in $(timeout 5 crictl pods --state ready -q 2>/dev/null | head -n {MAX_SANDBOXES}); do
    [ "$(date +%s)" -lt "$end" ] || break
    printf '%s CRICTL %s\\n' "$M" "$id"
    timeout 2 crictl inspectp -o json "$id" 2>/dev/null | head -c 262144
    printf '\\n'
  done
fi
seen=" "
for p in /run/netns/cni-* /var/run/netns/cni-*; do
  [ -e "$p" ] || continue
  [ "$(date +%s)" -lt "$end" ] || break
  r=$(readlink -f -- "$p")
  case "$seen" in *" $r "*) continue ;; esac
  seen="$seen$r "
  n=$((n + 1))
  [ "$n" -le {MAX_SANDBOXES} ] || break
  printf '%s NETNS %s\\n' "$M" "$r"
  timeout 2 nsenter --net="$r" ip -j -4 addr show 2>&1 | head -c 65536
  printf '\\n'
done
printf '%s DONE\\n' "$M"
"""


def discovery_command() -> Command:
    return Command(("sh", "-c", DISCOVERY_SCRIPT), timeout=DISCOVERY_BUDGET + 8.0)


def agent_command(netns: str, source: str, spec: dict[str, Any], timeout: float) -> Command:
    """The agent, inside the pod's network namespace only (the node's files stay visible)."""
    argv = ("nsenter", f"--net={netns}", "python3", "-c", source, json.dumps(spec, sort_keys=True))
    return Command(argv, timeout=timeout)


def far_end_record(far_end: FarEnd) -> CommandResult:
    """The far end's view as a raw result, so snapshots replay it like the rest."""
    return CommandResult(argv=[FAR_END], rc=0, stdout=far_end.model_dump_json())


# --------------------------------------------------------------------------- parsers


def parse_discovery(text: str) -> list[PodSandbox]:
    """Pod sandboxes with their own network namespace: crictl's first, then the listing's.

    A namespace both name is kept once, with the runtime's name for it. Host-network
    sandboxes (no namespace of their own) and sandboxes that are not ready are left out.
    """
    if MARK + " DONE" not in text:
        raise FactParseError("pod discovery: output cut short (no DONE marker)")
    sections: list[tuple[str, str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith(MARK + " "):
            words = line.split(" ", 2)
            kind = words[1] if len(words) > 1 else ""
            arg = words[2] if len(words) > 2 else ""
            sections.append((kind, arg, []))
        elif sections:
            sections[-1][2].append(line)
    by_path: dict[str, PodSandbox] = {}
    for kind, arg, body in sections:
        if kind == "CRICTL":
            sandbox = _from_inspectp("\n".join(body))
            if sandbox is not None and sandbox.netns not in by_path:
                by_path[sandbox.netns] = sandbox
        elif kind == "NETNS" and arg:
            ip = _first_global_ipv4("\n".join(body))
            known = by_path.get(arg) or by_path.get(arg.replace("/var/run/", "/run/", 1))
            if known is not None:
                if known.ip is None and ip:
                    known.ip = ip
                continue
            if ip:
                by_path[arg] = PodSandbox(netns=arg, ip=ip, found_by="netns")
    return list(by_path.values())


def _from_inspectp(text: str) -> PodSandbox | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    status = data.get("status") if isinstance(data.get("status"), dict) else {}
    info = data.get("info") if isinstance(data.get("info"), dict) else {}
    if status.get("state") not in (None, "SANDBOX_READY"):
        return None
    options = (((status.get("linux") or {}).get("namespaces") or {}).get("options")) or {}
    if options.get("network") == "NODE" or options.get("hostNetwork") is True:
        return None
    path = info.get("netNamespace")
    spec_ns = ((info.get("runtimeSpec") or {}).get("linux") or {}).get("namespaces") or []
    for ns in spec_ns if isinstance(spec_ns, list) else []:
        if isinstance(ns, dict) and ns.get("type") == "network" and ns.get("path"):
            path = ns["path"]
    if not isinstance(path, str) or not path:
        return None
    meta = status.get("metadata") or {}
    labels = status.get("labels") or {}
    if labels.get("k8s-app") in ("kube-dns", "coredns"):
        return None  # querying the DNS service from its own endpoint tests hairpin NAT instead
    ip = (status.get("network") or {}).get("ip") or None
    return PodSandbox(
        netns=path.replace("/var/run/", "/run/", 1),
        ip=ip if _is_ipv4(ip) else None,
        name=meta.get("name") or None,
        namespace=meta.get("namespace") or None,
        found_by="crictl",
    )


def _first_global_ipv4(text: str) -> str | None:
    """The first global IPv4 address in `ip -j -4 addr` output (not on lo)."""
    try:
        links = json.loads(text)
    except ValueError:
        return None
    for link in links if isinstance(links, list) else []:
        if not isinstance(link, dict) or link.get("ifname") == "lo":
            continue
        for addr in link.get("addr_info") or []:
            if (
                isinstance(addr, dict)
                and addr.get("family") == "inet"
                and addr.get("scope", "global") == "global"
                and _is_ipv4(addr.get("local"))
            ):
                return str(addr["local"])
    return None


def _is_ipv4(value: Any) -> bool:
    try:
        return isinstance(value, str) and ipaddress.ip_address(value).version == 4
    except ValueError:
        return False


def choose_sandbox(sandboxes: Sequence[PodSandbox], pod_subnet: str | None) -> PodSandbox | None:
    """The pod to probe from: an address in the node's pod subnet, the runtime's first.

    Pods of the kube-system namespace come last: they are more often host-network-like
    or special (DNS, CNI agents), and a user's pod is what the question is about.
    """

    def rank(s: PodSandbox) -> tuple[int, int, int, str]:
        inside = 0
        if pod_subnet and s.ip:
            try:
                inside = 0 if ipaddress.ip_address(s.ip) in ipaddress.ip_network(pod_subnet) else 1
            except ValueError:
                inside = 1
        return (
            inside,
            0 if s.found_by == "crictl" else 1,
            1 if s.namespace == "kube-system" else 0,
            s.netns,
        )

    usable = [s for s in sandboxes if s.ip]
    return min(usable, key=rank) if usable else None


def _netns_of(argv: Sequence[str]) -> str | None:
    for arg in argv:
        if arg.startswith("--net="):
            return arg[len("--net=") :]
    return None


def parse_agent(text: str) -> list[ProbeResult]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise FactParseError(f"probe agent: not JSON ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise FactParseError("probe agent: no results list")
    return [ProbeResult.model_validate(r) for r in data["results"] if isinstance(r, dict)]


class PodProbesCollector(Collector):
    name = "pod_probes"
    description = (
        "probes from inside a pod's network namespace (egress source, DNS, API, other pods); "
        "run by `cnidoctor probe` / `diagnose --probe`"
    )
    #: none: the probe run records this fact's raw results itself
    commands = ()

    @classmethod
    def judge(cls, results: Sequence[CommandResult]) -> Fact:
        if not results:
            return Fact(
                name=cls.name,
                status=FactStatus.ABSENT,
                reason="the pod probes were not run (cnidoctor probe, or diagnose --probe)",
            )
        sources = [_short(r) for r in results]
        for result in results:
            problem = describe_failure(result)
            if problem is not None:
                status, reason = problem
                if result.program_missing:
                    reason = "python3 is not installed on the node (the pod probe agent needs it)"
                elif result.argv and result.argv[0] == "nsenter":
                    reason = f"{_short(result)}: {reason.split(': ', 1)[-1]}"
                return Fact(name=cls.name, status=status, reason=reason, sources=sources)
        return cls.parsed(results, sources, "pod probe output")

    @classmethod
    def parse(cls, results: Sequence[CommandResult]) -> PodProbes:
        sandboxes = parse_discovery(results[0].stdout)
        agent = next((r for r in results[1:] if r.argv and r.argv[0] == "nsenter"), None)
        if agent is None:
            if not sandboxes:
                raise FactAbsent(
                    "no pod with a network namespace of its own on this node "
                    "(neither crictl nor /run/netns/cni-* showed one)"
                )
            raise FactAbsent("the probe agent was not run on this node")
        netns = _netns_of(agent.argv) or ""
        pod = next((s for s in sandboxes if s.netns == netns), None) or PodSandbox(
            netns=netns, found_by="netns"
        )
        far = next((r for r in results if r.argv and r.argv[0] == FAR_END), None)
        return PodProbes(
            pod=pod,
            results=parse_agent(agent.stdout),
            far_end=FarEnd.model_validate_json(far.stdout) if far is not None else None,
            candidates=len(sandboxes),
        )


def _short(result: CommandResult) -> str:
    """A command for messages, without the inline scripts (the agent's source is ~10 KB)."""
    if result.argv and result.argv[0] == "nsenter":
        return f"nsenter --net={_netns_of(result.argv) or '?'} python3 -c <probe agent>"
    if result.argv[:2] == ["sh", "-c"]:
        return "sh -c <pod discovery: crictl inspectp, /run/netns/cni-*>"
    return result.display
