"""The command line: parse arguments, call the library, render. Nothing else lives here."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Callable, Sequence
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError
from rich.console import Console

from cnidoctor import __version__
from cnidoctor.diagnose import (
    Target,
    analyse,
    cluster_from_api,
    collect,
    collect_all,
    diagnose,
    targets_from_api,
    targets_from_inventory,
)
from cnidoctor.errors import CnidoctorError, UsageError
from cnidoctor.facts.cluster import ClusterFacts
from cnidoctor.inventory import first_error, load_inventory
from cnidoctor.models import CNI_CHOICES, ClusterConfig, Report, Severity
from cnidoctor.progress import progress
from cnidoctor.rules import all_rules
from cnidoctor.snapshot import load_snapshot, save_snapshot
from cnidoctor.transports import transport_for

if TYPE_CHECKING:
    from cnidoctor.probes.pod import PodProbeOptions
    from cnidoctor.rules.base import Rule


class Exit(IntEnum):
    OK = 0
    FINDINGS = 1
    TOOL_FAILED = 2
    INTERRUPTED = 130


def _common(parser: argparse.ArgumentParser, formats: tuple[str, ...] = ()) -> None:
    parser.add_argument("--format", choices=("text", "json", "markdown", *formats), default="text")
    parser.add_argument(
        "--fail-on",
        choices=("critical", "warning", "never"),
        default="critical",
        help="exit 1 when a finding is at or above this severity (default: critical)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the report")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also show skipped rules and missing facts"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnidoctor",
        description="Names the node networking failure behind a broken Kubernetes pod network.",
    )
    parser.add_argument("--version", action="version", version=f"cnidoctor {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    pre = sub.add_parser(
        "preflight", help="check one host: prerequisites, firewall, routes, CNI files"
    )
    pre.add_argument(
        "--node",
        default="local",
        metavar="SPEC",
        help="local, netns:NAME or ssh://[USER@]HOST[:PORT]",
    )
    pre.add_argument("--name", help="the node's name in the report (default: its spec or hostname)")
    pre.add_argument("--role", choices=("control-plane", "worker"), default="worker")
    pre.add_argument("--address", help="the node's InternalIP, when it matters (node-ip checks)")
    pre.add_argument("--cni", choices=CNI_CHOICES, default="auto")
    pre.add_argument("--pod-cidr", metavar="CIDR")
    pre.add_argument("--service-cidr", metavar="CIDR")
    _common(pre)

    diag = sub.add_parser(
        "diagnose", help="collect every inventory node, run every rule, order by cause"
    )
    # neither: the node list comes from the Kubernetes API (ssh:// to each InternalIP)
    source = diag.add_mutually_exclusive_group()
    source.add_argument("--inventory", metavar="FILE")
    source.add_argument(
        "--from",
        dest="from_snapshot",
        metavar="SNAPSHOT",
        help="analyse a snapshot instead of collecting",
    )
    diag.add_argument("--kubeconfig", metavar="FILE")
    _probe_flags(diag)
    _common(diag)

    snap = sub.add_parser(
        "snapshot", help="collect without judging, to a file `diagnose --from` reads"
    )
    snap.add_argument("--inventory", metavar="FILE", required=True)
    snap.add_argument("-o", "--output", metavar="FILE", required=True)
    snap.add_argument("-q", "--quiet", action="store_true")

    matrix = sub.add_parser(
        "matrix", help="node-to-node probes: ICMP, 6443/10250/2379/2380, VXLAN, loops"
    )
    matrix.add_argument("--inventory", metavar="FILE")
    matrix.add_argument("--kubeconfig", metavar="FILE", help="without --inventory: the nodes")
    matrix.add_argument(
        "--timeout", type=float, default=1.0, metavar="S", help="per probe (default 1s)"
    )
    _common(matrix)

    explain = sub.add_parser("explain", help="name the failure mode behind an error line or log")
    explain.add_argument("message", nargs="?", help="the error message (quote it)")
    explain.add_argument("--file", metavar="LOG", help="a log file to scan (- reads stdin)")
    _common(explain)

    sub.add_parser("rules", help="list every rule: id, severity, title, what it needs")

    probe = sub.add_parser(
        "probe", help="probe from a pod on every node: egress SNAT, DNS, the API, other pods"
    )
    probe.add_argument("--inventory", metavar="FILE")
    probe.add_argument("--kubeconfig", metavar="FILE")
    _probe_flags(probe, always=True)
    _common(probe)

    fix = sub.add_parser("fix", help="a remediation plan, ordered by cause; --apply runs it")
    fix_source = fix.add_mutually_exclusive_group(required=True)
    fix_source.add_argument("--inventory", metavar="FILE")
    fix_source.add_argument("--from", dest="from_snapshot", metavar="SNAPSHOT")
    fix.add_argument("--kubeconfig", metavar="FILE")
    fix.add_argument("--apply", action="store_true", help="run the safe steps on the nodes")
    fix.add_argument(
        "--allow-disruptive",
        action="store_true",
        help="with --apply: also run disruptive steps (UFW off, k3s restart), after a "
        "confirmation per node",
    )
    fix.add_argument("--yes", action="store_true", help="confirm disruptive steps for every node")
    _common(fix, formats=("script",))

    guard = sub.add_parser("guard", help="install safeguards that keep a fix across reboots")
    guard_sub = guard.add_subparsers(dest="guard_name", required=True, metavar="GUARD")
    subnet = guard_sub.add_parser(
        "flannel-subnet-env",
        help="restore /run/flannel/subnet.env before k3s starts, persist it after (incident 001)",
    )
    where = subnet.add_mutually_exclusive_group(required=True)
    where.add_argument("--node", metavar="SPEC", help="install on this node")
    where.add_argument(
        "--print", dest="print_format", choices=("systemd", "nixos"), help="print, install nothing"
    )
    subnet.add_argument("--pod-cidr", metavar="CIDR", help="the node's spec.podCIDR")
    subnet.add_argument("--cluster-cidr", metavar="CIDR", help="FLANNEL_NETWORK")
    subnet.add_argument("--mtu", type=int, help="FLANNEL_MTU for a rebuilt file")
    subnet.add_argument(
        "--backup",
        metavar="PATH",
        default="/var/lib/rancher/k3s/flannel-subnet.env",
        help="where the copy is kept (default: %(default)s)",
    )
    subnet.add_argument("-q", "--quiet", action="store_true")

    lab = sub.add_parser("lab", help="incident replay in network namespaces (root only)")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True, metavar="ACTION")
    lab_sub.add_parser("list", help="the scenarios")
    for action, text in (
        ("up", "build a scenario"),
        ("down", "remove a scenario"),
        ("inventory", "print the inventory path of a scenario that is up"),
    ):
        lab_sub.add_parser(action, help=text).add_argument("name")
    api = lab_sub.add_parser("api", help="serve Kubernetes objects at the real REST paths")
    api.add_argument("--objects", metavar="PATH", required=True, help="YAML/JSON file or dir")
    api.add_argument("--listen", metavar="HOST:PORT", required=True)
    api.add_argument("--netns", metavar="NAME", help="listen inside this network namespace")
    api.add_argument("--token", help="require this bearer token (others get 401)")
    api.add_argument("--tls", action="store_true", help="HTTPS with a self-signed certificate")
    run = lab_sub.add_parser("run", help="up, diagnose, down")
    run.add_argument("name")
    run.add_argument("--kubeconfig", metavar="FILE")
    _probe_flags(run)
    _common(run)
    return parser


def _probe_flags(parser: argparse.ArgumentParser, always: bool = False) -> None:
    """The pod probe options (cnidoctor.probes.pod); `always`: the command is the probe."""
    if always:
        parser.set_defaults(probe=True)
    else:
        parser.add_argument(
            "--probe",
            action="store_true",
            help="also probe from a pod on every node (egress SNAT, DNS, the API, other pods)",
        )
    parser.add_argument(
        "--egress-url",
        metavar="URL",
        help="probes: a URL outside the cluster that answers with the caller's address "
        "(there is no default: cnidoctor never picks an internet target itself)",
    )
    parser.add_argument(
        "--dns-name",
        metavar="NAME",
        action="append",
        default=[],
        help="probes: an external name to resolve through the cluster DNS "
        "(default: the --egress-url host)",
    )


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed its message
        return Exit.OK if exc.code == 0 else Exit.TOOL_FAILED
    # a pipe or a file gets a fixed, roomy width rather than rich's 80 columns
    out = console or Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    try:
        return _dispatch(args, out)
    except CnidoctorError as exc:
        print(f"cnidoctor: error: {exc}", file=sys.stderr)
        return Exit.TOOL_FAILED
    except KeyboardInterrupt:
        print("cnidoctor: interrupted", file=sys.stderr)
        return Exit.INTERRUPTED


def entrypoint() -> None:
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader went away (`cnidoctor ... | head`): not an error, and no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = Exit.OK
    sys.exit(status)


def _dispatch(args: argparse.Namespace, out: Console) -> int:
    if args.command == "preflight":
        return _preflight(args, out)
    if args.command == "diagnose":
        if args.from_snapshot:
            if _probe_options(args, None) is not None:
                raise UsageError("--probe needs live nodes: it cannot run on a snapshot (--from)")
            return _diagnose_snapshot(Path(args.from_snapshot), args, out)
        if args.inventory is None:
            return _diagnose_api_nodes(args, out)
        return _diagnose_inventory(Path(args.inventory), args, out)
    if args.command == "snapshot":
        return _snapshot(args)
    if args.command == "matrix":
        return _matrix(args, out)
    if args.command == "probe":
        if args.inventory is None:
            return _diagnose_api_nodes(args, out)
        return _diagnose_inventory(Path(args.inventory), args, out)
    if args.command == "rules":
        from cnidoctor.reports import render_rules

        render_rules(all_rules(), out)
        return Exit.OK
    if args.command == "lab":
        return _lab(args, out)
    if args.command == "fix":
        return _fix(args, out)
    if args.command == "guard":
        from cnidoctor.remediation.command import run_guard

        return run_guard(args, out)
    if args.command == "explain":
        from cnidoctor.reports.explain import read_explain_input, run_explain

        return run_explain(
            read_explain_input(args.message, args.file), args.format, out, args.fail_on
        )
    raise UsageError(f"unknown command {args.command}")


def _preflight(args: argparse.Namespace, out: Console) -> int:
    transport_for(args.node)  # a bad spec is a usage error, before anything runs
    try:
        cluster = ClusterConfig(
            cni=args.cni, pod_cidr=args.pod_cidr, service_cidr=args.service_cidr
        )
    except ValidationError as exc:
        raise UsageError(first_error(exc).split(": ", 1)[-1]) from exc
    name = args.name or (socket.gethostname() if args.node == "local" else args.node)
    target = Target(name=name, spec=args.node, address=args.address, role=args.role)
    report = diagnose([target], cluster)
    return _finish(report, args, out)


def _diagnose_inventory(
    path: Path, args: argparse.Namespace, out: Console, discover: bool = True
) -> int:
    inventory = load_inventory(path)
    api = _api_source(args.kubeconfig, inventory.cluster.kubeconfig, discover)
    targets = targets_from_inventory(inventory)
    probes = _probe_options(args, path)
    with progress(len(targets), args) as on_done:
        report = diagnose(
            targets,
            inventory.cluster,
            rules=_rules_for(args),
            api=api,
            on_done=on_done,
            probes=probes,
        )
    return _finish(report, args, out)


def _diagnose_api_nodes(args: argparse.Namespace, out: Console) -> int:
    """No inventory: ask the API for the nodes, then reach each over ssh:// at its InternalIP."""
    from cnidoctor.kube.client import collect_from

    kube = collect_from(args.kubeconfig, None)
    if not kube.reachable:
        raise UsageError(f"no --inventory, and no node list from the API: {kube.error}")
    targets = targets_from_api(kube)
    if not targets:
        raise UsageError("no --inventory, and the API lists no nodes")
    cluster = cluster_from_api(kube)
    rules = _rules_for(args) or all_rules()
    with progress(len(targets), args) as on_done:
        collections = collect(targets, rules, on_done)
    probes = _probe_options(args, None)
    if probes is not None:
        from cnidoctor.probes.pod import run_pod_probes

        subnets = {n.name: n.pod_cidrs[0] for n in kube.nodes if n.pod_cidrs}
        run_pod_probes(targets, cluster, collections, probes, subnets)
    return _finish(analyse(collections, targets, cluster, rules, kube), args, out)


def _probe_options(args: argparse.Namespace, inventory: Path | None) -> PodProbeOptions | None:
    """The pod probes asked for (--probe, or the probe command), or None; a lab inventory
    brings the lab's far end (its echo service, resolvers and API listener)."""
    egress = getattr(args, "egress_url", None)
    names = getattr(args, "dns_name", None) or []
    if not (getattr(args, "probe", False) or egress or names):
        return None
    from cnidoctor.lab.podnet import far_end_for_inventory
    from cnidoctor.probes.pod import PodProbeOptions, check_dns_name, check_egress_url

    return PodProbeOptions(
        egress_url=check_egress_url(egress) if egress else None,
        dns_names=tuple(check_dns_name(n) for n in names),
        far_end=far_end_for_inventory(inventory) if inventory is not None else None,
    )


def _rules_for(args: argparse.Namespace) -> list[type[Rule]] | None:
    """`probe` judges only what the probes bear on; everything else runs every rule."""
    if args.command != "probe":
        return None
    from cnidoctor.rules import egress, probes

    return [*egress.RULES, *probes.RULES]


def _fix(args: argparse.Namespace, out: Console) -> int:
    """The same inputs as `diagnose` (inventory + API, or a snapshot), then a plan."""
    from cnidoctor.remediation.command import FixInput, run_fix

    if args.from_snapshot:
        snap = load_snapshot(Path(args.from_snapshot))
        source = FixInput(snap.target_list(), snap.cluster, snap.collections, snap.kube)
    else:
        inventory = load_inventory(Path(args.inventory))
        api = _api_source(args.kubeconfig, inventory.cluster.kubeconfig, discover=True)
        source = FixInput(targets_from_inventory(inventory), inventory.cluster, api=api)
    return run_fix(source, args, out)


def _api_source(
    explicit: str | None, from_inventory: str | None, discover: bool
) -> Callable[[], ClusterFacts] | None:
    """How the API will be read: the given kubeconfig, else (when `discover`) the usual
    places ($KUBECONFIG, ~/.kube/config, k3s.yaml, in-cluster); None = not at all."""
    if not (explicit or from_inventory or discover):
        return None
    from cnidoctor.kube.client import collect_from

    return lambda: collect_from(explicit, from_inventory)


def _diagnose_snapshot(path: Path, args: argparse.Namespace, out: Console) -> int:
    snapshot = load_snapshot(path)
    rules = all_rules()
    report = analyse(
        snapshot.collections, snapshot.target_list(), snapshot.cluster, rules, snapshot.kube
    )
    return _finish(report, args, out)


def _matrix(args: argparse.Namespace, out: Console) -> int:
    """Probe every pair of nodes (inventory, else the API's node list) and judge it."""
    from cnidoctor.probes.matrix import matrix_report, nodes_from_inventory, nodes_from_targets
    from cnidoctor.probes.matrix_render import render_matrix

    if args.inventory is not None:
        inventory = load_inventory(Path(args.inventory))
        nodes, cluster = nodes_from_inventory(inventory), inventory.cluster
    else:
        from cnidoctor.kube.client import collect_from

        kube = collect_from(args.kubeconfig, None)
        if not kube.reachable:
            raise UsageError(f"no --inventory, and no node list from the API: {kube.error}")
        nodes, cluster = nodes_from_targets(targets_from_api(kube)), cluster_from_api(kube)
    result, report = matrix_report(nodes, cluster, args.timeout)
    if args.format == "text" and not args.quiet:
        render_matrix(result, out, verbose=args.verbose)
    return _finish(report, args, out)


def _snapshot(args: argparse.Namespace) -> int:
    inventory = load_inventory(Path(args.inventory))
    targets = targets_from_inventory(inventory)
    api = _api_source(None, inventory.cluster.kubeconfig, discover=True)
    collections, kube = collect_all(targets, all_rules(), api=api)
    save_snapshot(Path(args.output), inventory.cluster, targets, collections, kube)
    if not any(c.collected for c in collections):
        errors = "; ".join(c.error or c.name for c in collections)
        print(f"cnidoctor: error: no node could be collected ({errors})", file=sys.stderr)
        return Exit.TOOL_FAILED
    if not args.quiet:
        print(args.output)
    return Exit.OK


def _lab(args: argparse.Namespace, out: Console) -> int:
    from cnidoctor import lab

    if args.lab_command == "list":
        for info in lab.list_scenarios():
            out.print(f"{info.name:<16} {info.description}", soft_wrap=True)
        return Exit.OK
    if args.lab_command == "up":
        print(lab.up(args.name))
        return Exit.OK
    if args.lab_command == "down":
        lab.down(args.name)
        return Exit.OK
    if args.lab_command == "inventory":
        print(lab.inventory_path(args.name))
        return Exit.OK
    if args.lab_command == "api":
        from cnidoctor.lab.apiserver import run_api

        return run_api(args)
    inventory = lab.up(args.name)
    try:
        # a lab is self-contained: its API (if any) is the inventory's, never ~/.kube/config
        return _diagnose_inventory(inventory, args, out, discover=False)
    finally:
        lab.down(args.name)


def _finish(report: Report, args: argparse.Namespace, out: Console) -> int:
    """Render the report and turn it into the contract's exit status."""
    if args.format == "json":
        print(json.dumps(report.to_json_dict(), indent=2))
    elif args.format == "markdown":
        from cnidoctor.reports import render_markdown

        print(render_markdown(report))
    else:
        from cnidoctor.reports import render_text

        render_text(report, out, verbose=args.verbose)
    if not any(n.collected for n in report.nodes):
        errors = "; ".join(n.error or n.name for n in report.nodes)
        print(f"cnidoctor: error: no node could be collected ({errors})", file=sys.stderr)
        return Exit.TOOL_FAILED
    return exit_status(report, args.fail_on)


def exit_status(report: Report, fail_on: str) -> int:
    if fail_on == "never":
        return Exit.OK
    threshold = Severity(fail_on)
    worst = report.worst()
    return Exit.FINDINGS if worst is not None and worst.at_least(threshold) else Exit.OK
