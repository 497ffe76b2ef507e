"""A real sshd for the lab: a server namespace and a client namespace joined by a veth pair.

The ssh:// transport is tested and benchmarked against it as it is (no patched client):
only its ssh process is started inside the client namespace, with the lab's own key and
no user ssh config. sshd runs in a private mount namespace so its privilege-separation
directory (/run/sshd) never touches the host's /run.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cnidoctor.lab.system import LabError
from cnidoctor.transports.ssh import SshTransport

SERVER_ADDR = "192.0.2.1"  # TEST-NET-1, only ever inside the lab's namespaces
CLIENT_ADDR = "192.0.2.2"
SSH_PORT = 2222
#: the veth ends: in the server namespace and in the client namespace
SERVER_DEV, CLIENT_DEV = "cnd-s", "cnd-c"
SSHD_WRAPPER = (
    "mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -m 0755 /run/sshd "
    '&& exec /usr/sbin/sshd -D -e -f "$1"'
)
START_TIMEOUT = 10.0


def _isolated(netns: str) -> list[str]:
    """argv prefix: enter `netns`, with a private mount namespace of its own."""
    return [
        "nsenter",
        f"--net=/run/netns/{netns}",
        "unshare",
        "--mount",
        "--propagation",
        "private",
    ]


class NetnsSshTransport(SshTransport):
    """SshTransport as is, with its ssh client started inside the client namespace."""

    def __init__(self, spec: str, netns: str, key: Path, connect_timeout: int = 5) -> None:
        options = (
            f"IdentityFile={key}",
            "IdentitiesOnly=yes",
            "UserKnownHostsFile=/dev/null",
            "GlobalKnownHostsFile=/dev/null",
            "StrictHostKeyChecking=no",
            "LogLevel=ERROR",
        )
        super().__init__(spec, connect_timeout=connect_timeout, options=options)
        self.netns = netns

    def shell_argv(self) -> list[str]:
        ssh, *rest = super().shell_argv()
        # -F /dev/null: the lab must not depend on the user's ~/.ssh/config
        return ["nsenter", f"--net=/run/netns/{self.netns}", ssh, "-F", "/dev/null", *rest]


@dataclass
class SshPair:
    client_ns: str
    server_ns: str
    key: Path
    log: Path

    def accepted(self) -> int:
        """Sessions sshd accepted so far (one per connection)."""
        return self.log.read_text().count("Accepted publickey for root")

    def transport(
        self, port: int = SSH_PORT, host: str = SERVER_ADDR, connect_timeout: int = 5
    ) -> NetnsSshTransport:
        spec = f"ssh://root@{host}:{port}"
        return NetnsSshTransport(spec, self.client_ns, self.key, connect_timeout=connect_timeout)


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")


@contextmanager
def ssh_pair(prefix: str = "cnd-ssh") -> Iterator[SshPair]:
    """Build the pair, start sshd, yield; everything is removed afterwards, also on error."""
    for program in ("ssh", "ssh-keygen", "nsenter", "unshare"):
        if shutil.which(program) is None:
            raise LabError(f"the ssh lab needs {program}")
    if not Path("/usr/sbin/sshd").exists():
        raise LabError("the ssh lab needs /usr/sbin/sshd (openssh-server)")
    tag = secrets.token_hex(3)
    server, client = f"{prefix}-s-{tag}", f"{prefix}-c-{tag}"
    workdir = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    sshd: subprocess.Popen[bytes] | None = None
    try:
        _run("ip", "netns", "add", server)
        _run("ip", "netns", "add", client)
        veth = (SERVER_DEV, "type", "veth", "peer", "name", CLIENT_DEV, "netns", client)
        _run("ip", "-n", server, "link", "add", *veth)
        for ns, dev, addr in ((server, SERVER_DEV, SERVER_ADDR), (client, CLIENT_DEV, CLIENT_ADDR)):
            _run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "-n", ns, "link", "set", dev, "up")
        for key in ("host_key", "user_key"):
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(workdir / key))
        shutil.copy(workdir / "user_key.pub", workdir / "authorized_keys")
        config = workdir / "sshd_config"
        config.write_text(
            f"ListenAddress {SERVER_ADDR}:{SSH_PORT}\n"
            f"HostKey {workdir / 'host_key'}\n"
            f"AuthorizedKeysFile {workdir / 'authorized_keys'}\n"
            "PermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            # the keys live under /tmp (world-writable), which strict modes refuse
            "StrictModes no\n"
            "MaxStartups 100\n"
            f"PidFile {workdir / 'sshd.pid'}\n"
        )
        log = workdir / "sshd.log"
        with log.open("wb") as log_file:
            sshd = subprocess.Popen(
                [
                    "nsenter",
                    f"--net=/run/netns/{server}",
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    SSHD_WRAPPER,
                    "sh",
                    str(config),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while "Server listening" not in log.read_text():
            if sshd.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"sshd did not start: {log.read_text().strip()[-300:]}")
            time.sleep(0.05)
        yield SshPair(client_ns=client, server_ns=server, key=workdir / "user_key", log=log)
    finally:
        if sshd is not None:
            sshd.terminate()
            try:
                sshd.wait(timeout=5)
            except subprocess.TimeoutExpired:
                sshd.kill()
                sshd.wait()
        for ns in (client, server):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)
