"""The shell side of a step: small idempotent sh functions and the script a step runs as.

Steps show and run the same lines. Lines that edit files call the `cnd_*` functions
below (defined in every script that uses them) so each edit is atomic (temp file in the
same directory, then rename) and does nothing when the file is already right. Every
piece of node data in a line is quoted with shlex by the helpers that build it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence

from cnidoctor.remediation.model import Action

#: printed after each command of a step, so a failure names the command it stopped at
DONE_MARK = "@@cnidoctor-step-done"

#: the functions; cnd_write sets cnd_wrote=1 when it changed something (guard: daemon-reload)
FUNCTIONS: dict[str, str] = {
    "cnd_write": r"""cnd_write() {  # FILE MODE CONTENT: atomic write; nothing done when already so
  if [ -f "$1" ] && printf '%s' "$3" | cmp -s - "$1"; then
    if [ "$(stat -c %a "$1")" != "${2#0}" ]; then
      chmod "$2" "$1"; cnd_wrote=1; echo "chmod $2 $1"; return 0
    fi
    echo "unchanged $1"; return 0
  fi
  mkdir -p "$(dirname "$1")"
  cnd_t=$(mktemp "$(dirname "$1")/.cnidoctor.XXXXXX") || return 1
  if printf '%s' "$3" > "$cnd_t" && chmod "$2" "$cnd_t" && mv -f "$cnd_t" "$1"; then
    cnd_wrote=1; echo "wrote $1"; return 0
  fi
  rm -f "$cnd_t"; return 1
}""",
    "cnd_append": r"""cnd_append() {  # FILE LINE: FILE plus LINE, written atomically (mode 0644)
  mkdir -p "$(dirname "$1")"
  cnd_t=$(mktemp "$(dirname "$1")/.cnidoctor.XXXXXX") || return 1
  if { if [ -s "$1" ]; then cat "$1"; [ -z "$(tail -c 1 "$1")" ] || echo; fi
       printf '%s\n' "$2"; } > "$cnd_t" && chmod 0644 "$cnd_t" && mv -f "$cnd_t" "$1"; then
    echo "added to $1: $2"; return 0
  fi
  rm -f "$cnd_t"; return 1
}""",
    "cnd_ensure_line": r"""cnd_ensure_line() {  # FILE LINE: add LINE unless FILE has it already
  if [ -f "$1" ] && grep -qxF -- "$2" "$1"; then echo "unchanged $1"; return 0; fi
  cnd_append "$1" "$2"
}""",
    "cnd_ensure_sysctl": r"""cnd_ensure_sysctl() {  # FILE KEY VALUE: make KEY's last value VALUE
  cnd_v=$(awk -v k="$2" 'index($0, "=") { key = substr($0, 1, index($0, "=") - 1);
    gsub(/[ \t]/, "", key); if (key == k) { v = substr($0, index($0, "=") + 1);
    gsub(/^[ \t]+|[ \t]+$/, "", v); last = v } } END { print last }' "$1" 2>/dev/null || :)
  if [ "$cnd_v" = "$3" ]; then echo "unchanged $1"; return 0; fi
  cnd_append "$1" "$2 = $3"
}""",
    "cnd_ipt_delete": r"""cnd_ipt_delete() {  # TOOL TABLE CHAIN RULE...: delete that rule if there
  cnd_tool=$1; cnd_table=$2; cnd_chain=$3; shift 3
  if "$cnd_tool" -w 5 -t "$cnd_table" -C "$cnd_chain" "$@" 2>/dev/null; then
    "$cnd_tool" -w 5 -t "$cnd_table" -D "$cnd_chain" "$@"
    echo "deleted: $cnd_tool -t $cnd_table -A $cnd_chain $*"
  fi
}""",
    "cnd_ipt_flush_chain": r"""cnd_ipt_flush_chain() {  # TOOL TABLE CHAIN: empty that chain
  if "$1" -w 5 -t "$2" -S "$3" >/dev/null 2>&1; then "$1" -w 5 -t "$2" -F "$3"; fi
}""",
    "cnd_ipt_delete_chain": r"""cnd_ipt_delete_chain() {  # TOOL TABLE CHAIN: delete that chain
  if "$1" -w 5 -t "$2" -S "$3" >/dev/null 2>&1; then
    "$1" -w 5 -t "$2" -X "$3"; echo "deleted chain: $1 -t $2 $3"
  fi
}""",
}
#: functions that call others
DEPENDS = {"cnd_ensure_line": ("cnd_append",), "cnd_ensure_sysctl": ("cnd_append",)}
_CALL = re.compile(r"\bcnd_[a-z_]+\b")


def call(function: str, *args: str) -> str:
    """A line calling one of FUNCTIONS with quoted arguments."""
    if function not in FUNCTIONS:
        raise KeyError(function)
    return shlex.join([function, *args])


def action(*argv: str, timeout: float = 15.0) -> Action:
    return Action(run=shlex.join(argv), timeout=timeout)


def action_call(function: str, *args: str, timeout: float = 15.0) -> Action:
    return Action(run=call(function, *args), timeout=timeout)


def functions_for(lines: Iterable[str]) -> list[str]:
    """The definitions the lines need, dependencies first, each once."""
    wanted: list[str] = []

    def add(name: str) -> None:
        for dependency in DEPENDS.get(name, ()):
            add(dependency)
        if name not in wanted:
            wanted.append(name)

    for text in lines:
        for name in _CALL.findall(text):
            if name in FUNCTIONS:
                add(name)
    return [FUNCTIONS[name] for name in wanted]


def prelude(lines: Sequence[str]) -> list[str]:
    """`set -e`, a sane umask and the functions the lines call."""
    return ["set -e", "umask 022", *functions_for(lines)]


def step_script(actions: Sequence[Action]) -> str:
    """The actions as one sh script that stops at the first failure and marks each success."""
    runs = [a.run for a in actions]
    body = prelude(runs)
    for index, run in enumerate(runs):
        body += [run, f"echo {DONE_MARK} {index}"]
    return "\n".join(body) + "\n"


def done_count(stdout: str) -> int:
    """How many actions of a step_script finished."""
    return sum(1 for ln in stdout.splitlines() if ln.startswith(DONE_MARK + " "))


def checks_script(lines: Sequence[str]) -> str:
    """Lines that must all succeed (preconditions, verification), with the functions."""
    return "\n".join([*prelude(lines), *lines]) + "\n"
