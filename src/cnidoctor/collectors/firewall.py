"""Host firewall managers: ufw and firewalld, each optional.

Only whether they are active (and ufw's default policies): the rules they install are read
where they end up, from `cnidoctor.collectors.iptables` (iptables-save, both backends) and
`cnidoctor.collectors.nftables` (`nft -j list ruleset`).
"""

from __future__ import annotations

from collections.abc import Sequence

from cnidoctor.collectors.base import (
    Collector,
    FactAbsent,
    FactParseError,
    failure_reason,
    is_missing_file,
)
from cnidoctor.facts.firewall import Firewalld, Ufw
from cnidoctor.transports.base import Command, CommandResult

UFW_CONF = "/etc/ufw/ufw.conf"
UFW_DEFAULTS = "/etc/default/ufw"


def parse_shell_vars(text: str) -> dict[str, str]:
    """KEY=VALUE lines (quotes stripped); comments and blank lines skipped."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.replace("_", "").isalnum():
            raise FactParseError(f"not a KEY=VALUE line: {line[:60]!r}")
        out[key] = value.strip().strip("\"'")
    return out


def parse_ufw(conf: str, defaults: str | None) -> Ufw:
    values = parse_shell_vars(conf)
    if "ENABLED" not in values:
        raise FactParseError(f"{UFW_CONF} has no ENABLED= line")
    policies = parse_shell_vars(defaults) if defaults else {}
    return Ufw(
        enabled=values["ENABLED"].lower() == "yes",
        default_input_policy=policies.get("DEFAULT_INPUT_POLICY"),
        default_forward_policy=policies.get("DEFAULT_FORWARD_POLICY"),
    )


class UfwCollector(Collector):
    name = "ufw"
    description = "whether ufw is enabled, and its default INPUT/FORWARD policies"
    commands = (Command(("cat", UFW_CONF)), Command(("cat", UFW_DEFAULTS)))
    optional_commands = frozenset({0, 1})

    @classmethod
    def parse(cls, results: Sequence[CommandResult]) -> Ufw:
        conf, defaults = results
        if is_missing_file(conf):
            raise FactAbsent(f"ufw is not installed (no {UFW_CONF})")
        if not conf.ok:
            raise FactParseError(f"{conf.display}: {failure_reason(conf)}")
        return parse_ufw(conf.stdout, defaults.stdout if defaults.ok else None)


class FirewalldCollector(Collector):
    name = "firewalld"
    description = "whether firewalld is running (`firewall-cmd --state`)"
    commands = (Command(("firewall-cmd", "--state")),)
    optional_commands = frozenset({0})

    @classmethod
    def parse(cls, results: Sequence[CommandResult]) -> Firewalld:
        result = results[0]
        if result.program_missing:
            raise FactAbsent("firewalld is not installed (no firewall-cmd)")
        state = (result.stdout.strip() or result.stderr.strip()).splitlines()
        word = state[0].strip() if state else ""
        if result.timed_out or result.not_run:
            raise FactParseError(f"{result.display}: {failure_reason(result)}")
        if word == "running" and result.rc == 0:
            return Firewalld(running=True, state=word)
        if word == "not running":
            return Firewalld(running=False, state=word)
        raise FactParseError(f"firewall-cmd --state printed {word[:60]!r} (exit {result.rc})")
