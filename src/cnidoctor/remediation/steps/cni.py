"""CNI files on a node: a missing plugin binary is copied from a peer that has it.

Why a peer: the plugin a node lacks is, on a working node of the same cluster, the very
binary (same version, same architecture) that the CNI's installer would have put there;
copying it needs neither the API (often unreachable in the incident that loses it) nor
the internet, and the copy is checked (architecture before, sha256 after) and atomic.
Where no peer has it, the step is manual and says exactly how to reinstall it.
"""

from __future__ import annotations

import shlex

from cnidoctor.analysis.cni_detect import cni_in_use, device_owner
from cnidoctor.collectors.cni import CniBinCollector, CniConfigCollector
from cnidoctor.collectors.network import LinksCollector
from cnidoctor.facts.cni import CniBins, CniConfig
from cnidoctor.remediation.model import Risk, Step, Transfer
from cnidoctor.remediation.shell import action
from cnidoctor.remediation.steps.base import Builder, StepContext, make_step
from cnidoctor.remediation.steps.flannel import restart_flannel_step
from cnidoctor.rules.base import NodeContext
from cnidoctor.rules.cni import K3S_BUNDLED


def _runtime_view(node: NodeContext) -> tuple[CniConfig, CniBins, list[str]] | None:
    config: CniConfig | None = node.fact_or_none(CniConfigCollector)
    bins: CniBins | None = node.fact_or_none(CniBinCollector)
    if config is None or bins is None:
        return None
    return config, bins, bins.runtime_dirs(config.is_k3s)


def _peer_with(ctx: StepContext, name: str, k3s: bool) -> tuple[NodeContext, str] | None:
    """A collected peer whose runtime bin dir has `name` as an executable: (peer, path)."""
    for peer in ctx.peers():
        view = _runtime_view(peer)
        if view is None or view[0].is_k3s != k3s:
            continue
        _, bins, dirs = view
        for directory in dirs:
            found = bins.dir(directory)
            if found is not None and name in found.plugins:
                return peer, f"{directory}/{name}"
    return None


def _not_executable(bins: CniBins, directory: str) -> list[str]:
    found = bins.dir(directory)
    return found.not_executable if found is not None else []


def binaries_missing(ctx: StepContext) -> list[Step] | None:
    node = ctx.node
    view = _runtime_view(node) if node is not None else None
    if node is None or view is None or view[0].active is None:
        return None
    config, bins, dirs = view
    assert config.active is not None
    available: set[str] = set()
    for directory in dirs:
        found = bins.dir(directory)
        available |= set(found.plugins) if found is not None else set()
    missing = [b for b, _ in config.active.referenced_binaries() if b not in available]
    if not missing:
        return None
    steps: list[Step] = []
    manual: list[str] = []
    for name in missing:
        dest = f"{dirs[0]}/{name}"
        unexecutable = next((d for d in dirs if name in _not_executable(bins, d)), None)
        if unexecutable is not None:
            path = f"{unexecutable}/{name}"
            steps.append(
                make_step(
                    ctx,
                    key=f"chmod:{path}",
                    title=f"make {path} executable",
                    risk=Risk.SAFE,
                    actions=[action("chmod", "0755", path)],
                    verify=[action("test", "-x", path)],
                    undo=[shlex.join(["chmod", "0644", path])],
                )
            )
            continue
        if config.is_k3s and name in K3S_BUNDLED:
            steps.append(restart_flannel_step(ctx, wait_for_vxlan=False))
            continue
        peer = _peer_with(ctx, name, config.is_k3s)
        if peer is None:
            manual.append(name)
            continue
        source, source_path = peer
        steps.append(
            make_step(
                ctx,
                key=f"copy:{dest}",
                title=f"copy the {name} CNI plugin from {source.name} to {dest}",
                risk=Risk.SAFE,
                transfer=Transfer(
                    source_node=source.name,
                    source_spec=ctx.spec(source.name) or source.name,
                    source_path=source_path,
                    dest_path=dest,
                ),
                verify=[action("test", "-x", dest)],
                undo=[shlex.join(["rm", "-f", dest])],
                notes=[
                    f"{source.name} runs the same CNI with this binary; the copy is made only "
                    "when both nodes report the same architecture (uname -m), is checked by "
                    "sha256 and installed atomically (temp file, mode 0755, rename)",
                    "the runtime runs it on the next pod sandbox: no restart needed",
                ],
            )
        )
    if manual:
        steps.append(
            make_step(
                ctx,
                key="cni-reinstall",
                title=f"reinstall the {', '.join(manual)} CNI plugin(s) on {node.name}",
                risk=Risk.MANUAL,
                instructions=list(ctx.finding.fix),
                notes=["no collected peer has it in the same kind of bin dir to copy it from"],
            )
        )
    return steps


def stale_interfaces(ctx: StepContext) -> list[Step] | None:
    """Devices of a CNI other than the configured one: `ip link delete` (disruptive)."""
    node = ctx.node
    links = ctx.fact(LinksCollector)
    if node is None or links is None or ctx.cluster.cluster.cni == "auto":
        return None  # with the CNI not configured, which one is stale is a human's call
    in_use = cni_in_use(ctx.cluster.cluster.cni, None, links)
    stale = [link for link in links.links if device_owner(link.ifname) not in (None, in_use)]
    if not stale:
        return None
    names = [link.ifname for link in stale]
    return [
        make_step(
            ctx,
            key="cni-stale-devices",
            title=f"delete the leftover devices {', '.join(names)}",
            risk=Risk.DISRUPTIVE,
            actions=[
                action(
                    "sh",
                    "-c",
                    'if ip link show dev "$1" >/dev/null 2>&1; then ip link delete dev "$1"; fi',
                    "sh",
                    name,
                )
                for name in names
            ],
            verify=[
                action("sh", "-c", '! ip link show dev "$1" >/dev/null 2>&1', "sh", name)
                for name in names
            ],
            undo=["# nothing restores them but the CNI that made them (not in use)"],
            notes=[f"restart the {in_use} agent afterwards so it recreates its own devices"],
        )
    ]


BUILDERS: dict[str, Builder] = {
    "cni.binaries-missing": binaries_missing,
    "cni.stale-interfaces": stale_interfaces,
}
