"""Where the credentials for the Kubernetes API come from, and what was tried to find them.

The search order follows what an operator expects: an explicit --kubeconfig, then the
inventory's, then $KUBECONFIG, ~/.kube/config, k3s's /etc/rancher/k3s/k3s.yaml, and last the
in-cluster service account. An explicit choice (flag or inventory) is binding: when it is
wrong the user hears so, rather than cnidoctor silently asking another cluster.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

K3S_KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@dataclass(frozen=True)
class KubeAccess:
    """How to reach one cluster's API: a kubeconfig file (and context) or in-cluster."""

    source: str
    """where it was found: --kubeconfig, inventory, $KUBECONFIG, ~/.kube/config, k3s,
    in-cluster"""
    path: str | None = None
    """the kubeconfig file; None for in-cluster"""
    context: str | None = None
    """the context to use; None = the file's current-context"""
    in_cluster: bool = False
    service_account_dir: str = SERVICE_ACCOUNT_DIR
    server: str | None = None
    """in-cluster only: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT"""
    tried: tuple[str, ...] = field(default=())
    """the candidates looked at before this one, each with why it was passed over"""

    def describe(self) -> str:
        """One phrase for messages: what is being used."""
        if self.in_cluster:
            where = f"in-cluster service account ({self.service_account_dir})"
        else:
            where = f"kubeconfig {self.path} ({self.source})"
        if self.context:
            where += f", context {self.context}"
        return where


def _kubeconfig_state(path: Path) -> str | None:
    """None when `path` is a readable file, else why it cannot be used."""
    try:
        if not path.exists():
            return "no such file"
        if not path.is_file():
            return "not a file"
        with path.open("rb"):
            return None
    except PermissionError:
        return "permission denied"
    except OSError as exc:
        return exc.strerror or str(exc)


def search_access(
    explicit: str | None,
    inventory_kubeconfig: str | None,
    context: str | None,
    *,
    env: Mapping[str, str] | None = None,
    home: str | None = None,
    k3s_kubeconfig: str = K3S_KUBECONFIG,
    service_account_dir: str = SERVICE_ACCOUNT_DIR,
) -> tuple[KubeAccess | None, list[str]]:
    """(the access found or None, every candidate tried with why it was passed over).

    `env`, `home` and the two fixed paths are parameters so tests need no real $HOME.
    """
    env = os.environ if env is None else env
    tried: list[str] = []

    # explicit choices are binding, even when the file is missing: the client says so
    for source, value in (("--kubeconfig", explicit), ("inventory", inventory_kubeconfig)):
        if value:
            path = str(Path(value).expanduser())
            return KubeAccess(source, path, context, tried=tuple(tried)), tried
        tried.append(f"{source}: not given")

    env_value = env.get("KUBECONFIG", "")
    if env_value:
        # kubectl merges a colon-separated list; cnidoctor uses its first usable file
        for part in [p for p in env_value.split(os.pathsep) if p]:
            path = Path(part).expanduser()
            problem = _kubeconfig_state(path)
            if problem is None:
                return KubeAccess("$KUBECONFIG", str(path), context, tried=tuple(tried)), tried
            tried.append(f"$KUBECONFIG {path}: {problem}")
    else:
        tried.append("$KUBECONFIG: not set")

    home_dir = Path(home) if home is not None else Path(env.get("HOME") or Path.home())
    for source, path in (("~/.kube/config", home_dir / ".kube" / "config"), ("k3s", None)):
        path = path or Path(k3s_kubeconfig)
        problem = _kubeconfig_state(path)
        if problem is None:
            return KubeAccess(source, str(path), context, tried=tuple(tried)), tried
        tried.append(f"{path}: {problem}")

    sa = Path(service_account_dir)
    if not env.get("KUBERNETES_SERVICE_HOST"):
        tried.append("in-cluster: KUBERNETES_SERVICE_HOST not set")
    elif _kubeconfig_state(sa / "token") is not None:
        tried.append(f"in-cluster: {sa / 'token'}: {_kubeconfig_state(sa / 'token')}")
    else:
        host = env["KUBERNETES_SERVICE_HOST"]
        host = f"[{host}]" if ":" in host else host
        access = KubeAccess(
            "in-cluster",
            None,
            None,
            in_cluster=True,
            service_account_dir=str(sa),
            server=f"https://{host}:{env.get('KUBERNETES_SERVICE_PORT') or '443'}",
            tried=tuple(tried),
        )
        return access, tried
    return None, tried


def no_access_message(tried: list[str]) -> str:
    """The one line reported when no kubeconfig was found."""
    return "Kubernetes API not queried: no kubeconfig found (tried " + "; ".join(tried) + ")"
