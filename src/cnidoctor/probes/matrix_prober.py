"""What runs on a source node: one process that sends every probe of that node at once.

The node gets one shell (through its Transport, so netns: and ssh:// alike) that runs
the PYTHON prober when the node has python3 and may open raw sockets, else the BASH
fallback. Both speak one line protocol on stdout, which runner.py reads:

    READY                        the observer is listening; waiting for "GO" on stdin
    M WHAT DETAIL...             something is missing (a tool, a permission)
    R ID STATUS DETAIL...        the final status of probe ID
    I ID KIND FROM [EXTRA]       an ICMP message about probe ID (redirect, time-exceeded,
                                 unreachable), FROM the router or host that sent it
    H ID TTL HOP KIND            limited-TTL probe: the hop that answered at TTL (or *)
    L ID LINE / E ID RC          (bash) a line of ping's output, then ping's exit status
    U INDEX SRC IFACE            the observer saw node INDEX's UDP probe arrive
    DONE

Arguments (argv after the program name), all produced by runner.py from validated data:
TIMEOUT TOKEN SELF OBSERVE_PORT EXPECTED PROBE..., where EXPECTED is a comma list of the
node indices whose UDP probes this node should see, and each PROBE is ID,KIND,ADDR,PORT
with KIND icmp, tcp or udp.

UDP design. A VXLAN device (flannel.1) owns its UDP port in its namespace: bind() on
8472 fails there, so no responder can listen where the overlay already runs. The
destination therefore *observes* instead of answering: an AF_PACKET socket (with a BPF
filter for the port) sees a probe arrive at the NIC whoever owns the port, and the probe
carries the run's token and its sender's index. AF_PACKET sees packets before netfilter:
"arrived" means the path delivered it; whether the node's own INPUT rules would accept it
is judged afterwards from its firewall facts. Without python3 (or root) on a node, its
arrivals cannot be observed and its UDP cells stay unknown, said so with an M line.

The python prober sends ICMP echo through a raw socket with TTL 64 plus TTL 1..3 (the
limited-TTL probes that draw the path), so redirects, time-exceeded and unreachable
messages, and the hops, are read from the replies themselves; TCP connects are
non-blocking (open / refused / unreachable / timeout from SO_ERROR). Everything ends at
the deadline, or as soon as every probe has an answer.
"""

from __future__ import annotations

import shlex

#: exit status of the python prober when it cannot run here (no raw socket): use bash
FALLBACK_RC = 3
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
#: TTLs of the limited-TTL probes sent with every ICMP probe (python prober only)
PATH_TTLS = (1, 2, 3)

PYTHON = r"""
import _socket as socket, array, errno, os, select, struct, sys, time
ETH_P_IP, SO_ATTACH_FILTER = 0x0800, 26
PATH_TTLS = (1, 2, 3)

def out(*words):
    sys.stdout.write(" ".join(str(w) for w in words) + "\n")

def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF

def observer(port):
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    try:  # udp, not a fragment, destination port == port
        prog = [(0x30, 0, 0, 9), (0x15, 0, 6, 17), (0x28, 0, 0, 6), (0x45, 4, 0, 0x1FFF),
                (0xB1, 0, 0, 0), (0x48, 0, 0, 2), (0x15, 0, 1, port), (0x06, 0, 0, 65535),
                (0x06, 0, 0, 0)]
        buf = array.array("B", b"".join(struct.pack("HBBI", *ins) for ins in prog))
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                        struct.pack("HL", len(prog), buf.buffer_info()[0]))
    except Exception:
        pass  # filtered below anyway
    sock.setblocking(False)
    return sock

def main(argv):
    timeout, token, me, obs_port = float(argv[0]), argv[1], argv[2], int(argv[3])
    expected = set(x for x in argv[4].split(",") if x)
    specs = [p.split(",") for p in argv[5:]]
    try:
        icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    except OSError as exc:
        out("M", "raw-socket", exc.strerror)
        sys.stdout.flush()
        return 3
    icmp.setblocking(False)
    obs = None
    if obs_port:
        try:
            obs = observer(obs_port)
        except OSError as exc:
            out("M", "observer", exc.strerror)
    out("READY")
    sys.stdout.flush()
    if not sys.stdin.readline().startswith("GO"):
        return 0
    deadline = time.monotonic() + timeout
    marker = ("cnidoctor-matrix %s %s" % (token, me)).encode()
    ident = os.getpid() & 0xFFFF
    poller = select.poll()
    poller.register(icmp, select.POLLIN)
    if obs is not None:
        poller.register(obs, select.POLLIN)
    tcp, by_port, echo = {}, {}, {}
    pending, failed = set(), set()
    answered, others, seen = {}, set(), set()

    def pump(until, done):
        while not done():
            left = until - time.monotonic()
            if left <= 0:
                return
            for fd, _ in poller.poll(left * 1000):
                if fd in tcp:
                    finish_tcp(poller, tcp, fd)
                elif fd == icmp.fileno():
                    while True:
                        try:
                            data, (src, _) = icmp.recvfrom(4096)
                        except OSError:
                            break
                        handle_icmp(data, src, ident, echo, pending, answered, by_port, others)
                elif obs is not None and fd == obs.fileno():
                    while True:
                        try:
                            data, addr = obs.recvfrom(2048)
                        except OSError:
                            break
                        saw(data, addr, obs_port, token, seen)

    # The limited-TTL probes go out first, alone for a moment: a hop's ICMP error allowance
    # for our address is spent by the redirects that full-TTL packets draw (kernel rate
    # limit), and only their TTL exceeded answers draw the path.
    for ttl in PATH_TTLS:
        for index, (pid, kind, addr, port) in enumerate(specs):
            if kind == "icmp" and pid not in failed:
                send_echo(icmp, index, pid, addr, ttl, ident, marker, echo, pending, failed)
    pump(min(deadline, time.monotonic() + min(0.05, timeout / 4)), lambda: not pending)
    for index, (pid, kind, addr, port) in enumerate(specs):
        if kind == "icmp" and pid not in failed:
            send_echo(icmp, index, pid, addr, 64, ident, marker, echo, pending, failed)
    for pid, kind, addr, port in specs:
        if kind == "tcp":
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            err = sock.connect_ex((addr, int(port)))
            if err not in (0, errno.EINPROGRESS):
                out("R", pid, "unreachable" if err in (errno.ENETUNREACH, errno.EHOSTUNREACH)
                    else "error", os.strerror(err))
                sock.close()
                continue
            tcp[sock.fileno()] = (pid, sock)
            by_port[sock.getsockname()[1]] = pid
            poller.register(sock, select.POLLOUT)
    for pid, kind, addr, port in specs:
        if kind == "udp":
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                for _ in range(2):
                    udp.sendto(marker, (addr, int(port)))
                out("R", pid, "sent")
            except OSError as exc:
                unreach = exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)
                out("R", pid, "unreachable" if unreach else "error", exc.strerror)
            udp.close()
    pump(deadline, lambda: not tcp and not pending and (obs is None or expected <= seen))
    for fd, (pid, sock) in tcp.items():
        out("R", pid, "timeout")
        sock.close()
    report_icmp(echo, answered)
    out("DONE")
    return 0

def finish_tcp(poller, tcp, fd):
    pid, sock = tcp.pop(fd)
    poller.unregister(fd)
    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err == 0:
        out("R", pid, "open")
    elif err == errno.ECONNREFUSED:
        out("R", pid, "refused", os.strerror(err))
    elif err in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        out("R", pid, "unreachable", os.strerror(err))
    else:
        out("R", pid, "error", os.strerror(err))
    sock.close()

def send_echo(icmp, index, pid, addr, ttl, ident, marker, echo, pending, failed):
    slot = PATH_TTLS.index(ttl) + 1 if ttl in PATH_TTLS else 0
    seq = (index * 4 + slot) & 0xFFFF
    head = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    body = marker[:48]
    packet = struct.pack("!BBHHH", 8, 0, checksum(head + body), ident, seq) + body
    try:
        icmp.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        icmp.sendto(packet, (addr, 0))
    except OSError as exc:
        failed.add(pid)
        unreach = exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)
        out("R", pid, "unreachable" if unreach else "error", exc.strerror)
        return
    echo[seq] = (pid, ttl, addr)
    pending.add(seq)

def handle_icmp(data, src, ident, echo, pending, answered, by_port, others):
    ihl = (data[0] & 15) * 4
    icmp = data[ihl:]
    if len(icmp) < 8:
        return
    kind, code = icmp[0], icmp[1]
    if kind == 0:
        if struct.unpack("!H", icmp[4:6])[0] == ident:
            seq = struct.unpack("!H", icmp[6:8])[0]
            if seq in echo and seq in pending:
                pending.discard(seq)
                answered[seq] = ("reply", src, "")
        return
    if kind not in (3, 5, 11) or len(icmp) < 36:
        return
    inner = icmp[8:]
    inner_ihl = (inner[0] & 15) * 4
    proto, payload = inner[9], inner[inner_ihl:inner_ihl + 8]
    if len(payload) < 8:
        return
    what = {3: "unreachable", 5: "redirect", 11: "time-exceeded"}[kind]
    extra = socket.inet_ntoa(icmp[4:8]) if kind == 5 else str(code)
    ours = None
    if proto == 1 and struct.unpack("!H", payload[4:6])[0] == ident:
        ours = struct.unpack("!H", payload[6:8])[0]
    elif proto == 6:
        ours = by_port.get(struct.unpack("!H", payload[0:2])[0])
    if ours is None or (proto == 1 and ours not in echo):
        # about another packet of ours (a reply, a SYN-ACK, flannel's traffic): still a
        # redirect or TTL exceeded on the way from this node to that address
        key = (what, src, socket.inet_ntoa(inner[16:20]))
        if kind != 3 and key not in others:
            others.add(key)
            out("X", key[2], what, src, extra)
        return
    if proto == 1:
        seq = ours
        pid, ttl, _ = echo[seq]
        if kind == 5:
            out("I", pid, what, src, extra)
            return
        if ttl == 64:
            out("I", pid, what, src, extra)
        if seq in pending:
            pending.discard(seq)
            answered[seq] = (what, src, extra)
    else:
        out("I", ours, what, src, extra)

def saw(data, addr, port, token, seen):
    if addr[2] == socket.PACKET_OUTGOING or len(data) < 28 or data[9] != 17:
        return
    ihl = (data[0] & 15) * 4
    if struct.unpack("!H", data[ihl + 2:ihl + 4])[0] != port:
        return
    words = data[ihl + 8:].split()
    if len(words) >= 3 and words[0] == b"cnidoctor-matrix" and words[1] == token.encode():
        index = words[2].decode("ascii", "replace")
        if index not in seen:
            seen.add(index)
            out("U", index, socket.inet_ntoa(data[12:16]), addr[0])

def report_icmp(echo, answered):
    for seq in sorted(echo):
        pid, ttl, addr = echo[seq]
        kind, src, extra = answered.get(seq, ("none", "*", ""))
        if ttl == 64:
            if kind == "reply":
                out("R", pid, "open")
            elif kind == "none":
                out("R", pid, "timeout")
            elif kind == "unreachable":
                out("R", pid, "unreachable", "code", extra, "from", src)
            else:
                out("R", pid, kind, "from", src)
        else:
            out("H", pid, ttl, src, kind)

if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    except BrokenPipeError:
        code = 0
    sys.stdout.flush()
    sys.exit(code)
"""

BASH = r"""
T=$1 TOKEN=$2 ME=$3 OBS=$4 EXPECT=$5
shift 5
TI=${T%.*}
[ "$TI" = "$T" ] || TI=$((TI + 1))
[ "$TI" -ge 1 ] 2>/dev/null || TI=1
set -m
have() { command -v "$1" >/dev/null 2>&1; }
[ "$OBS" = 0 ] || echo "M observer python3 with root is needed to see UDP probes arrive"
have ping || echo "M ping not installed: ICMP probes and the loop detector cannot run"
echo READY
IFS= read -r go || exit 0
case $go in GO*) ;; *) exit 0 ;; esac
exec 2>/dev/null # job control's "Done" notices; every result goes to stdout

probe_tcp() {
  local err
  if err=$({ exec 3<>"/dev/tcp/$2/$3"; } 2>&1); then
    echo "R $1 open"
    return
  fi
  err=${err##*: }
  case $err in
    *refused*) echo "R $1 refused $err" ;;
    *"No route"* | *unreachable*) echo "R $1 unreachable $err" ;;
    *"timed out"*) echo "R $1 timeout $err" ;;
    *) echo "R $1 error $err" ;;
  esac
}

probe_icmp() {
  ping -n -c 1 -W "$TI" -w "$TI" "$2" 2>&1 | while IFS= read -r line; do
    echo "L $1 $line"
  done
  echo "E $1 ${PIPESTATUS[0]}"
}

pids=()
for spec in "$@"; do
  id=${spec%%,*} rest=${spec#*,}
  kind=${rest%%,*} rest=${rest#*,}
  addr=${rest%%,*} port=${rest#*,}
  case $kind in
    udp)
      if err=$({ printf 'cnidoctor-matrix %s %s\n' "$TOKEN" "$ME" >"/dev/udp/$addr/$port"; } 2>&1)
      then
        echo "R $id sent"
      else
        echo "R $id error ${err##*: }"
      fi
      ;;
    tcp) probe_tcp "$id" "$addr" "$port" & pids+=($!) ;;
    icmp)
      if have ping; then
        probe_icmp "$id" "$addr" & pids+=($!)
      else
        echo "R $id error ping not installed"
      fi
      ;;
  esac
done
# each job is its own process group (set -m): at the deadline the watchdog kills what is
# left of them (ping's own -w ends it just before: its lines are flushed only at exit)
if [ "${#pids[@]}" -gt 0 ]; then
  groups=$(printf -- '-%s ' "${pids[@]}")
  (sleep "$T"; sleep 0.3; kill -KILL -- $groups) 2>/dev/null &
  watchdog=$!
  wait "${pids[@]}" 2>/dev/null
  kill -KILL -- "-$watchdog" 2>/dev/null
fi
echo DONE
"""


def wrapper(python_args: list[str], prober: str = "auto") -> str:
    """The sh script fed to the node's shell: python prober if it can run, else bash.

    `prober` "bash" skips python (tests and benchmarks of the fallback)."""
    args = shlex.join(python_args)
    python = "command -v python3 >/dev/null 2>&1" if prober == "auto" else "false"
    why = "not installed" if prober == "auto" else "not used (--prober bash)"
    return "\n".join(
        [
            "export LC_ALL=C PATH=" + SAFE_PATH,
            f"if {python}; then",
            f"  python3 -I -S -c {shlex.quote(PYTHON)} {args}",
            "  rc=$?",
            f'  [ "$rc" = {FALLBACK_RC} ] || exit "$rc"',
            "else",
            f"  echo 'M python3 {why}: the bash prober runs instead (no limited-TTL path)'",
            "fi",
            "if command -v bash >/dev/null 2>&1; then",
            f"  exec bash -c {shlex.quote(BASH)} cnidoctor-matrix {args}",
            "fi",
            "echo 'M bash not installed: cannot probe from this node (neither python3 nor bash)'",
            "echo FATAL",
            "",
        ]
    )
