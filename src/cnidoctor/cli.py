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


class Exit(IntEnum):
    OK = 0
    FINDINGS = 1
    TOOL_FAILED = 2
    INTERRUPTED = 130


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("text", "json", "markdown"), default="text")
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
    _common(diag)

    snap = sub.add_parser(
        "snapshot", help="collect without judging, to a file `diagnose --from` reads"
    )
    snap.add_argument("--inventory", metavar="FILE", required=True)
    snap.add_argument("-o", "--output", metavar="FILE", required=True)
    snap.add_argument("-q", "--quiet", action="store_true")

    explain = sub.add_parser("explain", help="name the failure mode behind an error line or log")
    explain.add_argument("message", nargs="?", help="the error message (quote it)")
    explain.add_argument("--file", metavar="LOG", help="a log file to scan (- reads stdin)")
    _common(explain)

    sub.add_parser("rules", help="list every rule: id, severity, title, what it needs")

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
    _common(run)
    return parser


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
            return _diagnose_snapshot(Path(args.from_snapshot), args, out)
        if args.inventory is None:
            return _diagnose_api_nodes(args, out)
        return _diagnose_inventory(Path(args.inventory), args, out)
    if args.command == "snapshot":
        return _snapshot(args)
    if args.command == "rules":
        from cnidoctor.reports import render_rules

        render_rules(all_rules(), out)
        return Exit.OK
    if args.command == "lab":
        return _lab(args, out)
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
    with progress(len(targets), args) as on_done:
        report = diagnose(targets, inventory.cluster, api=api, on_done=on_done)
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
    rules = all_rules()
    with progress(len(targets), args) as on_done:
        collections = collect(targets, rules, on_done)
    return _finish(analyse(collections, targets, cluster, rules, kube), args, out)


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
