"""`cnidoctor fix` and `cnidoctor guard`, between the CLI's parsed arguments and the library.

The diagnosis is the same pipeline `diagnose` uses (collect, analyse); the plan is built
from its findings and facts; --apply hands the plan to the Applier and ends with a fresh
diagnosis, whose remaining findings decide the exit status with --fail-on.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console

from cnidoctor.collect import NodeCollection
from cnidoctor.collectors.flannel import FlannelSubnetEnvCollector
from cnidoctor.diagnose import Target, analyse_full, collect_all, diagnose
from cnidoctor.errors import UsageError
from cnidoctor.facts.cluster import ClusterFacts
from cnidoctor.models import ClusterConfig, Report, Severity
from cnidoctor.remediation import guard
from cnidoctor.remediation.apply import Applier, ApplyOptions, Confirm
from cnidoctor.remediation.model import Plan, Step, StepState
from cnidoctor.remediation.plan import build_plan
from cnidoctor.remediation.render import render_markdown, render_script, render_text
from cnidoctor.remediation.shell import DONE_MARK, checks_script, step_script
from cnidoctor.rules import all_rules
from cnidoctor.transports import Command, transport_for

OK, FINDINGS, TOOL_FAILED = 0, 1, 2


@dataclass
class FixInput:
    """Where the diagnosis comes from: live nodes (and the API), or a snapshot."""

    targets: list[Target]
    cluster: ClusterConfig
    #: a snapshot's raw output; None = collect the nodes now
    collections: list[NodeCollection] | None = None
    kube: ClusterFacts | None = None
    api: Callable[[], ClusterFacts] | None = None

    @property
    def live(self) -> bool:
        return self.collections is None


def run_fix(
    source: FixInput, args: argparse.Namespace, out: Console, confirm: Confirm | None = None
) -> int:
    if not args.apply and (args.allow_disruptive or args.yes):
        raise UsageError("--allow-disruptive and --yes only matter with --apply")
    if args.apply and not source.live:
        raise UsageError("--apply needs live facts: use --inventory (a snapshot may be stale)")
    if args.apply and args.format == "script":
        raise UsageError("--format script prints the plan to run by hand: drop --apply")
    rules = all_rules()
    if source.collections is None:
        collections, kube = collect_all(source.targets, rules, api=source.api)
    else:
        collections, kube = source.collections, source.kube
    analysis = analyse_full(collections, source.targets, source.cluster, rules, kube)
    plan = build_plan(analysis, source.targets)
    if not any(n.collected for n in plan.nodes):
        _render(plan, args, out)
        errors = "; ".join(n.error or n.name for n in plan.nodes)
        print(f"cnidoctor: error: no node could be collected ({errors})", file=sys.stderr)
        return TOOL_FAILED
    if not args.apply:
        _render(plan, args, out)
        return exit_status(analysis.report, args.fail_on)
    options = ApplyOptions(
        allow_disruptive=args.allow_disruptive,
        confirm=confirm or terminal_confirm(args.yes),
        progress=None if args.quiet or args.format != "text" else _progress,
    )
    outcome = Applier(plan, source.targets, source.cluster, rules, collections, kube, options).run()
    fresh = diagnose(source.targets, source.cluster, rules, api=source.api)
    plan.remaining = fresh.findings
    _render(plan, args, out)
    if outcome.failed:
        return TOOL_FAILED
    if outcome.stopped_at is not None:
        return FINDINGS
    return exit_status(fresh, args.fail_on)


def exit_status(report: Report, fail_on: str) -> int:
    if fail_on == "never":
        return OK
    worst = report.worst()
    return FINDINGS if worst is not None and worst.at_least(Severity(fail_on)) else OK


def _render(plan: Plan, args: argparse.Namespace, out: Console) -> None:
    if args.format == "json":
        print(json.dumps(plan.to_json_dict(), indent=2))
    elif args.format == "markdown":
        print(render_markdown(plan), end="")
    elif args.format == "script":
        print(render_script(plan), end="")
    else:
        render_text(plan, out)


def _progress(step: Step) -> None:
    if step.state is not StepState.PENDING:
        print(f"cnidoctor: step {step.number} ({step.title}): {step.state.value}", file=sys.stderr)


def terminal_confirm(yes: bool) -> Confirm:
    """Ask once per node on the terminal (stderr/stdin); --yes answers for every node."""

    def ask(node: str, steps: list[Step]) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            print(
                f"cnidoctor: disruptive steps on {node} need a confirmation and there is no "
                "terminal to ask on (use --yes)",
                file=sys.stderr,
            )
            return False
        print(f"Disruptive steps on {node}:", file=sys.stderr)
        for step in steps:
            print(f"  {step.number}. {step.title}", file=sys.stderr)
            for action in step.actions[:3]:
                print(f"       {action.run}", file=sys.stderr)
        sys.stderr.write(f"Run them on {node}? [y/N] ")
        sys.stderr.flush()
        return sys.stdin.readline().strip().lower() in ("y", "yes")

    return ask


# -- guard ----------------------------------------------------------------------------------


def run_guard(args: argparse.Namespace, out: Console) -> int:
    settings = guard.GuardSettings(
        pod_cidr=args.pod_cidr, network=args.cluster_cidr, mtu=args.mtu, backup=args.backup
    )
    if args.print_format == "nixos":
        print(guard.print_nixos(settings), end="")
        return OK
    if args.print_format == "systemd":
        print(guard.print_systemd(settings), end="")
        return OK
    return install_guard(args.node, settings, quiet=args.quiet)


def install_guard(spec: str, settings: guard.GuardSettings, quiet: bool = False) -> int:
    """Install the guard through the node's transport; nothing changes when it is in place."""
    transport = transport_for(spec)
    checks = guard.install_checks()
    batch = transport.run_batch(
        [
            *FlannelSubnetEnvCollector.commands,
            *(Command(("sh", "-c", checks_script([c.run])), 10.0) for c in checks),
        ]
    )
    env_result, *check_results = batch.results
    for check, result in zip(checks, check_results, strict=True):
        if result.not_run is not None:
            raise UsageError(f"{spec}: {result.not_run}")
        if not result.ok:
            raise UsageError(f"{spec}: {check.reason}")
    settings = _from_live_file(settings, FlannelSubnetEnvCollector.judge([env_result]).value)
    actions = guard.install_actions(settings)
    timeout = sum(a.timeout for a in actions) + 5
    result = transport.run_batch([Command(("sh", "-c", step_script(actions)), timeout)])
    ran = result.results[0]
    if not ran.ok:
        lines = [ln for ln in ran.stderr.splitlines() if ln.strip()]
        raise UsageError(f"{spec}: installing the guard failed: {lines[-1] if lines else ran.rc}")
    changes = [
        ln
        for ln in ran.stdout.splitlines()
        if ln.strip() and not ln.startswith(DONE_MARK) and not ln.startswith("unchanged ")
    ]
    if not quiet:
        if changes:
            print(f"guard flannel-subnet-env installed on {spec}:")
            for line in changes:
                print(f"  {line}")
        else:
            print(f"guard flannel-subnet-env already in place on {spec}: nothing changed")
        print(
            f"  expects FLANNEL_SUBNET={settings.expected_subnet or 'unknown (not checked)'}, "
            f"FLANNEL_NETWORK={settings.normal_network or 'unknown (not checked)'}; "
            f"copy kept at {settings.backup}"
        )
    return OK


def _from_live_file(settings: guard.GuardSettings, env: object) -> guard.GuardSettings:
    """Fill what was not given from the node's current subnet.env (a healthy node's truth)."""
    if env is None:
        return settings
    subnet = getattr(env, "subnet_network", None)
    pod_cidr = settings.pod_cidr or (str(subnet) if subnet is not None else None)
    network = settings.network or getattr(env, "network", None)
    mtu = settings.mtu or getattr(env, "mtu", None)
    if settings.pod_cidr and subnet is not None:
        given = ipaddress.ip_network(settings.pod_cidr, strict=False)
        if given != subnet:
            print(
                f"cnidoctor: warning: the node's subnet.env has {subnet}, --pod-cidr says "
                f"{given}: the guard follows --pod-cidr",
                file=sys.stderr,
            )
    return guard.GuardSettings(
        pod_cidr=pod_cidr,
        network=network,
        mtu=mtu,
        backup=settings.backup,
        live=settings.live,
        script_path=settings.script_path,
    )
