"""`cnidoctor guard flannel-subnet-env`: incident 001's action items, as files to install.

/run/flannel/subnet.env lives on tmpfs; when k3s's embedded flannel does not write it
again after a reboot, every new pod on the node stays ContainerCreating. The guard is
one script and three units:

* restore (a oneshot pulled in by, and ordered before, k3s / k3s-agent / kubelet): when
  the live file is missing or not this node's, put back the persisted copy if it matches
  the node's podCIDR, else rebuild it from the podCIDR and cluster CIDR known at install;
* backup (a oneshot started by a path unit when flannel rewrites the file): persist a valid
  live file, only when it changed.

Every write is atomic (temp file in the target's directory, then rename) with mode 0644,
and nothing is written when the file is already right.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass

from cnidoctor.errors import UsageError
from cnidoctor.remediation.model import Action, Check
from cnidoctor.remediation.shell import action_call

SCRIPT_PATH = "/usr/local/sbin/cnidoctor-flannel-subnet-env"
UNIT_DIR = "/etc/systemd/system"
RESTORE_UNIT = "cnidoctor-flannel-restore.service"
BACKUP_UNIT = "cnidoctor-flannel-backup.service"
BACKUP_PATH_UNIT = "cnidoctor-flannel-backup.path"
LIVE = "/run/flannel/subnet.env"
#: where incident 001's operator kept the copy (k3s's data dir survives reboots)
DEFAULT_BACKUP = "/var/lib/rancher/k3s/flannel-subnet.env"
#: the units that read subnet.env through the CNI plugin: the restore runs before each
BEFORE = ("k3s.service", "k3s-agent.service", "kubelet.service")


@dataclass(frozen=True)
class GuardSettings:
    """What the guard bakes in. Unknown values (None) disable the check or rebuild that
    needs them; a persisted copy is then restored when it is well-formed."""

    pod_cidr: str | None = None
    network: str | None = None
    mtu: int | None = None
    backup: str = DEFAULT_BACKUP
    live: str = LIVE
    script_path: str = SCRIPT_PATH

    def __post_init__(self) -> None:
        for label, value in (("pod CIDR", self.pod_cidr), ("cluster CIDR", self.network)):
            if value is not None:
                try:
                    net = ipaddress.ip_network(value, strict=False)
                except ValueError as exc:
                    raise UsageError(f"{label} {value!r} is not a CIDR") from exc
                if net.version != 4:
                    raise UsageError(f"{label} {value}: the guard handles IPv4 flannel only")
        if self.mtu is not None and not 576 <= self.mtu <= 65535:
            raise UsageError(f"MTU {self.mtu} is out of range")
        for label, path in (("backup", self.backup), ("live", self.live)):
            if not path.startswith("/") or "\n" in path:
                raise UsageError(f"{label} path {path!r} must be absolute")

    @property
    def expected_subnet(self) -> str | None:
        """FLANNEL_SUBNET for the podCIDR: its first address with the prefix (10.42.0.1/24)."""
        if self.pod_cidr is None:
            return None
        net = ipaddress.ip_network(self.pod_cidr, strict=False)
        return f"{net.network_address + 1}/{net.prefixlen}"

    @property
    def normal_network(self) -> str | None:
        return str(ipaddress.ip_network(self.network, strict=False)) if self.network else None


SCRIPT_BODY = r"""
log() { echo "cnidoctor-flannel-subnet-env: $*" >&2; }

value() {  # FILE KEY: the last KEY=value of FILE
  sed -n "s/^$2=//p" "$1" 2>/dev/null | tail -n 1
}

valid() {  # FILE: flannel's keys are there, and they are this node's (when known)
  [ -s "$1" ] || return 1
  net=$(value "$1" FLANNEL_NETWORK)
  sub=$(value "$1" FLANNEL_SUBNET)
  case "$net" in */*) ;; *) return 1 ;; esac
  case "$sub" in */*) ;; *) return 1 ;; esac
  [ -z "$EXPECT_SUBNET" ] || [ "$sub" = "$EXPECT_SUBNET" ] || return 1
  [ -z "$EXPECT_NETWORK" ] || [ "$net" = "$EXPECT_NETWORK" ] || return 1
}

install_file() {  # SRC DEST: temp file next to DEST, mode 0644, then rename
  dir=$(dirname "$2")
  mkdir -p "$dir" || return 1
  tmp=$(mktemp "$dir/.cnidoctor-subnet-env.XXXXXX") || return 1
  if cat "$1" > "$tmp" && chmod 0644 "$tmp" && mv -f "$tmp" "$2"; then return 0; fi
  rm -f "$tmp"
  return 1
}

restore() {
  if valid "$LIVE"; then
    log "$LIVE is present and right: nothing to do"
    return 0
  fi
  if valid "$SAVED"; then
    install_file "$SAVED" "$LIVE" || return 1
    log "restored $LIVE from $SAVED"
    return 0
  fi
  if [ -n "$EXPECT_SUBNET" ] && [ -n "$EXPECT_NETWORK" ]; then
    dir=$(dirname "$LIVE")
    mkdir -p "$dir" || return 1
    tmp=$(mktemp "$dir/.cnidoctor-subnet-env.XXXXXX") || return 1
    if printf 'FLANNEL_NETWORK=%s\nFLANNEL_SUBNET=%s\nFLANNEL_MTU=%s\nFLANNEL_IPMASQ=true\n' \
        "$EXPECT_NETWORK" "$EXPECT_SUBNET" "$MTU" > "$tmp" \
        && chmod 0644 "$tmp" && mv -f "$tmp" "$LIVE"; then
      log "rebuilt $LIVE for podCIDR subnet $EXPECT_SUBNET"
      return 0
    fi
    rm -f "$tmp"
    return 1
  fi
  log "no valid copy at $SAVED and no podCIDR known: leaving $LIVE to flannel"
  return 0
}

backup() {
  if ! valid "$LIVE"; then
    log "$LIVE is missing or not this node's: not persisted"
    return 0
  fi
  if cmp -s "$LIVE" "$SAVED"; then
    return 0
  fi
  install_file "$LIVE" "$SAVED" || return 1
  log "persisted $LIVE to $SAVED"
}

case "${1:-}" in
  restore) restore ;;
  backup) backup ;;
  *) echo "usage: $0 restore|backup" >&2; exit 2 ;;
esac
"""


def guard_script(settings: GuardSettings) -> str:
    """The script both units run; the node's values are baked in (quoted)."""
    q = shlex.quote
    header = [
        "#!/bin/sh",
        "# cnidoctor guard flannel-subnet-env (generated; `cnidoctor guard flannel-subnet-env`",
        "# rewrites it). Keeps flannel's subnet.env across reboots: see incident 001.",
        "set -u",
        "umask 022",
        f"LIVE={q(settings.live)}",
        f"SAVED={q(settings.backup)}",
        f"EXPECT_SUBNET={q(settings.expected_subnet or '')}"
        + (f"   # spec.podCIDR {settings.pod_cidr}" if settings.pod_cidr else "   # unknown"),
        f"EXPECT_NETWORK={q(settings.normal_network or '')}",
        f"MTU={q(str(settings.mtu or 1450))}",
    ]
    return "\n".join(header) + "\n" + SCRIPT_BODY.lstrip("\n")


def units(settings: GuardSettings) -> dict[str, str]:
    """unit file name -> content."""
    before = " ".join(BEFORE)
    script = settings.script_path
    return {
        RESTORE_UNIT: (
            "[Unit]\n"
            "Description=Restore flannel's subnet.env before k3s or the kubelet start "
            "(cnidoctor guard)\n"
            f"Before={before}\n"
            "After=local-fs.target\n"
            "\n[Service]\n"
            "Type=oneshot\n"
            f"ExecStart={script} restore\n"
            "\n[Install]\n"
            f"WantedBy={before}\n"
        ),
        BACKUP_UNIT: (
            "[Unit]\n"
            "Description=Persist flannel's subnet.env once flannel wrote it (cnidoctor guard)\n"
            "After=local-fs.target\n"
            "\n[Service]\n"
            "Type=oneshot\n"
            f"ExecStart={script} backup\n"
        ),
        BACKUP_PATH_UNIT: (
            "[Unit]\n"
            "Description=Watch flannel's subnet.env to persist it (cnidoctor guard)\n"
            "\n[Path]\n"
            f"PathChanged={settings.live}\n"
            f"Unit={BACKUP_UNIT}\n"
            "\n[Install]\n"
            "WantedBy=multi-user.target\n"
        ),
    }


def files(settings: GuardSettings) -> dict[str, tuple[str, int]]:
    """Every file the guard installs: path -> (content, mode)."""
    out = {settings.script_path: (guard_script(settings), 0o755)}
    for name, text in units(settings).items():
        out[f"{UNIT_DIR}/{name}"] = (text, 0o644)
    return out


def print_systemd(settings: GuardSettings) -> str:
    """The files, each under a `# PATH (mode)` header, then how to enable them."""
    parts = []
    for path, (text, mode) in files(settings).items():
        parts.append(f"# ---- {path} (mode {mode:04o})\n{text}")
    parts.append(
        "# ---- then, as root:\n"
        "# systemctl daemon-reload\n"
        f"# systemctl enable --now {RESTORE_UNIT} {BACKUP_PATH_UNIT}\n"
        f"# {settings.script_path} backup\n"
    )
    return "\n".join(parts)


def _nix_string(text: str) -> str:
    """A Nix indented string ('' ... ''): escape '' and ${ inside it."""
    return "''\n" + text.replace("''", "'''").replace("${", "''${") + "''"


def print_nixos(settings: GuardSettings) -> str:
    """A NixOS module: the same script and units, declared (for deploy-rs and friends)."""
    body = guard_script(settings).split("\n", 1)[1]  # writeShellScript adds its own #!
    before = " ".join(f'"{unit}"' for unit in BEFORE)
    script = _nix_string(body)
    indented = "\n".join(("    " + ln) if ln else ln for ln in script.splitlines())
    return (
        "# cnidoctor guard flannel-subnet-env: NixOS module (import it from configuration.nix)\n"
        "{ pkgs, ... }:\n"
        "let\n"
        '  guard = pkgs.writeShellScript "cnidoctor-flannel-subnet-env"\n'
        f"{indented};\n"
        "  tools = with pkgs; [ coreutils gnused diffutils ];\n"
        "in\n"
        "{\n"
        "  systemd.services.cnidoctor-flannel-restore = {\n"
        '    description = "Restore flannel\'s subnet.env before k3s or the kubelet start";\n'
        f"    before = [ {before} ];\n"
        f"    wantedBy = [ {before} ];\n"
        '    after = [ "local-fs.target" ];\n'
        "    path = tools;\n"
        '    serviceConfig = { Type = "oneshot"; ExecStart = "${guard} restore"; };\n'
        "  };\n"
        "  systemd.services.cnidoctor-flannel-backup = {\n"
        '    description = "Persist flannel\'s subnet.env once flannel wrote it";\n'
        "    path = tools;\n"
        '    serviceConfig = { Type = "oneshot"; ExecStart = "${guard} backup"; };\n'
        "  };\n"
        "  systemd.paths.cnidoctor-flannel-backup = {\n"
        '    wantedBy = [ "multi-user.target" ];\n'
        f'    pathConfig = {{ PathChanged = "{settings.live}"; '
        f'Unit = "{BACKUP_UNIT}"; }};\n'
        "  };\n"
        "}\n"
    )


def install_checks() -> list[Check]:
    """Installing needs a systemd that owns /etc/systemd/system."""
    return [
        Check(
            run="test -d /run/systemd/system",
            reason="systemd is not running on the node: install by hand from "
            "`cnidoctor guard flannel-subnet-env --print systemd`",
        ),
        Check(
            run="test ! -e /etc/NIXOS",
            reason="NixOS generates /etc/systemd/system: add the module from "
            "`cnidoctor guard flannel-subnet-env --print nixos` to the configuration",
        ),
    ]


def install_actions(settings: GuardSettings) -> list[Action]:
    """Write the files (each only when it differs), then enable what is not enabled yet."""
    actions = [
        action_call("cnd_write", path, f"{mode:04o}", text)
        for path, (text, mode) in files(settings).items()
    ]
    actions += [
        Action(run='if [ -n "${cnd_wrote:-}" ]; then systemctl daemon-reload; fi', timeout=30),
        Action(
            run=f"for u in {RESTORE_UNIT} {BACKUP_PATH_UNIT}; do "
            'systemctl is-enabled --quiet "$u" || { systemctl enable --quiet "$u"; '
            'echo "enabled $u"; }; done',
            timeout=30,
        ),
        Action(
            run=f"systemctl is-active --quiet {BACKUP_PATH_UNIT} || "
            f'{{ systemctl start {BACKUP_PATH_UNIT}; echo "started {BACKUP_PATH_UNIT}"; }}',
            timeout=30,
        ),
        Action(run=shlex.join([settings.script_path, "backup"])),
    ]
    return actions


def install_verify(settings: GuardSettings) -> list[Action]:
    return [
        Action(run=shlex.join(["test", "-x", settings.script_path])),
        Action(run=f"systemctl is-enabled --quiet {RESTORE_UNIT}"),
    ]


def install_undo(settings: GuardSettings) -> list[str]:
    paths = [shlex.quote(p) for p in files(settings)]
    return [
        f"systemctl disable --now {RESTORE_UNIT} {BACKUP_PATH_UNIT}",
        "rm -f " + " ".join(paths),
        "systemctl daemon-reload",
    ]
