"""The one place cnidoctor talks to a Kubernetes API: lightkube, behind `collect_cluster`.

Why lightkube: about 14 MiB installed (the official `kubernetes` package is ~163 MiB), sync
and async clients, typed models, and no discovery round trips: a whole collection is a
handful of paged GETs. Its exec-plugin support is less complete than client-go's; a failing
plugin is reported like any other credential problem.

Nothing here raises to the caller: an API that cannot be read is a `ClusterFacts` with
`reachable=False` and one line saying what was tried and what failed, and a list that
fails while others work (events forbidden, say) is named in `partial`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from lightkube import ApiError, Client, ConfigError
from lightkube.config.client_adapter import httpx as _httpx  # httpx or httpx2: lightkube's own
from lightkube.config.kubeconfig import KubeConfig, SingleConfig
from lightkube.config.models import Cluster, User
from lightkube.generic_resource import create_global_resource
from lightkube.resources.apps_v1 import DaemonSet
from lightkube.resources.core_v1 import ConfigMap, Event, Node, Pod

from cnidoctor.collectors.base import FactParseError
from cnidoctor.facts.cluster import (
    CNI_CONFIG_MAPS,
    CNI_DAEMONSETS,
    ClusterFacts,
    KubeDaemonSet,
    KubeEvent,
    KubeNode,
    KubePod,
    config_map_data,
)
from cnidoctor.kube.access import KubeAccess, no_access_message, search_access

#: objects per list request: 5,000 pods are 10 requests, each answer a few MiB at most
PAGE_SIZE = 500
#: events kept (most recent first); the API keeps about an hour of them anyway
MAX_EVENTS = 2000
#: Normal-type events that still tell a story (a reboot, a node flapping, sandboxes rebuilt);
#: every Warning event is read
NORMAL_REASONS = ("NodeNotReady", "Starting", "SandboxChanged")

T = TypeVar("T")


class _Unreachable(Exception):
    """The API cannot be used at all (refused, timed out, credentials rejected)."""


class _AccessError(Exception):
    """The kubeconfig cannot be used (missing, malformed, no context): one line."""


def collect_from(
    explicit: str | None,
    inventory_kubeconfig: str | None,
    context: str | None = None,
    timeout: float = 10,
    **search: Any,
) -> ClusterFacts:
    """Find the credentials (see kube.access; `search` = its env/home/path overrides) and
    collect; never raises."""
    access, tried = search_access(explicit, inventory_kubeconfig, context, **search)
    if access is None:
        return ClusterFacts(reachable=False, error=no_access_message(tried))
    return collect_cluster(access, timeout=timeout)


def collect_cluster(
    access: KubeAccess,
    timeout: float = 10,
    *,
    page_size: int = PAGE_SIZE,
    max_events: int = MAX_EVENTS,
) -> ClusterFacts:
    """Nodes, pods (all namespaces), recent events and the CNI ConfigMaps, in one paged pass.

    `page_size` 0 asks for each list in one answer (unpaged). `timeout` bounds each request;
    after the first timeout nothing more is asked, so a dead API costs one timeout, not one
    per list. Never raises.
    """
    started = time.monotonic()
    chunk = page_size if page_size > 0 else None
    try:
        config = load_config(access)
    except _AccessError as exc:
        return ClusterFacts(reachable=False, error=str(exc), access=access.describe())
    server = config.cluster.server
    facts = ClusterFacts(reachable=True, server=server, access=access.describe())
    try:
        client = Client(config=config, timeout=_httpx.Timeout(timeout))
    except Exception as exc:  # CA file missing, bad client cert, unsupported auth provider
        facts.reachable = False
        facts.error = f"Kubernetes API not queried ({access.describe()}): {_reason(exc, timeout)}"
        return facts

    def fail(what: str, exc: BaseException) -> None:
        """A transport failure before anything worked = unreachable; later = partial."""
        reason = _reason(exc, timeout)
        if not facts.nodes and not facts.pods and not facts.partial:
            raise _Unreachable(
                f"Kubernetes API unreachable at {server} ({access.describe()}): {reason}"
            ) from exc
        facts.partial.append(f"{what}: {reason}")
        raise _Stop from exc

    try:
        with client:
            facts.nodes = _read_list(
                "nodes",
                lambda: client.list(Node, chunk_size=chunk),
                KubeNode.from_object,
                facts,
                fail,
            )
            facts.pods = _read_list(
                "pods",
                lambda: client.list(Pod, namespace="*", chunk_size=chunk),
                KubePod.from_object,
                facts,
                fail,
            )
            events = _read_list(
                "events",
                lambda: client.list(
                    Event, namespace="*", chunk_size=chunk, fields={"type": "Warning"}
                ),
                KubeEvent.from_object,
                facts,
                fail,
            )
            for reason in NORMAL_REASONS:
                events += _read_list(
                    f"events ({reason})",
                    lambda reason=reason: client.list(  # type: ignore[misc]
                        Event,
                        namespace="*",
                        chunk_size=chunk,
                        fields={"type": "Normal", "reason": reason},
                    ),
                    KubeEvent.from_object,
                    facts,
                    fail,
                )
            facts.events = _recent(events, max_events)
            for key in CNI_CONFIG_MAPS:
                found = _read_namespaced(client, ConfigMap, "configmap", key, facts, fail)
                if found is not None:
                    facts.config_maps[key] = config_map_data(found)[1]
            _read_cni_settings(client, facts, fail)
    except _Unreachable as exc:
        facts.reachable = False
        facts.error = str(exc)
    except _Stop:
        pass
    facts.duration_s = round(time.monotonic() - started, 3)
    return facts


#: the Tigera operator's Installation (calico's cluster-wide settings), cluster-scoped
Installation = create_global_resource("operator.tigera.io", "v1", "Installation", "installations")


def _read_cni_settings(
    client: Client, facts: ClusterFacts, fail: Callable[[str, BaseException], None]
) -> None:
    """The CNI DaemonSets' templates and calico's Installation: where the interface the CNI
    uses is pinned (calico IP_AUTODETECTION_METHOD, kube-flannel --iface). 404 = not there."""
    for key in CNI_DAEMONSETS:
        found = _read_namespaced(client, DaemonSet, "daemonset", key, facts, fail)
        if found is not None:
            try:
                facts.daemonsets[key] = KubeDaemonSet.from_object(found)
            except FactParseError as exc:
                facts.partial.append(f"daemonset {key}: not understood: {exc}")
    installation = _read_one(
        "installation default", lambda: client.get(Installation, "default"), facts, fail
    )
    if installation is not None:
        spec = installation.get("spec") if isinstance(installation.get("spec"), dict) else {}
        network = spec.get("calicoNetwork") if isinstance(spec, dict) else None
        facts.calico_installation = network if isinstance(network, dict) else {}


class _Stop(Exception):
    """Stop asking: the API stopped answering mid-way (already recorded in `partial`)."""


def _read_list(
    what: str,
    start: Callable[[], Iterable[Any]],
    parse: Callable[[Any], T],
    facts: ClusterFacts,
    fail: Callable[[str, BaseException], None],
) -> list[T]:
    """Every object of one (paged) list, parsed; failures become `partial` or unreachable."""
    out: list[T] = []
    bad: list[str] = []
    try:
        for obj in start():
            try:
                out.append(parse(obj.to_dict()))
            except FactParseError as exc:
                bad.append(str(exc))
    except _httpx.HTTPStatusError as exc:  # ApiError is one (a Status body); a proxy's is not
        _status_error(what, exc, facts)
        return out
    except (_httpx.HTTPError, ConfigError, OSError) as exc:
        fail(what, exc)
    except ValueError as exc:  # the answer did not decode as the resource (msgspec, JSON)
        facts.partial.append(f"{what}: answer not understood: {_one_line(exc)}")
    if bad:
        facts.partial.append(f"{what}: {len(bad)} object(s) not understood, first: {bad[0]}")
    return out


def _read_one(
    what: str,
    get: Callable[[], Any],
    facts: ClusterFacts,
    fail: Callable[[str, BaseException], None],
) -> dict[str, Any] | None:
    """One object as JSON, or None when it does not exist (404 is a fact, not a failure)."""
    try:
        return get().to_dict()  # type: ignore[no-any-return]
    except _httpx.HTTPStatusError as exc:
        if exc.response.status_code != 404:
            _status_error(what, exc, facts)
    except (_httpx.HTTPError, ConfigError, OSError) as exc:
        fail(what, exc)
    except ValueError as exc:
        facts.partial.append(f"{what}: answer not understood: {_one_line(exc)}")
    return None


def _read_namespaced(
    client: Client,
    resource: Any,
    kind: str,
    key: str,
    facts: ClusterFacts,
    fail: Callable[[str, BaseException], None],
) -> dict[str, Any] | None:
    """`_read_one` of the object at `key` ("namespace/name")."""
    namespace, name = key.split("/")
    return _read_one(
        f"{kind} {key}", lambda: client.get(resource, name, namespace=namespace), facts, fail
    )


def _status_error(what: str, exc: Any, facts: ClusterFacts) -> None:
    """An HTTP error answer: 401 makes the API unusable, anything else fails this list only."""
    code = exc.response.status_code
    if code == 401:
        raise _Unreachable(
            f"Kubernetes API at {facts.server} rejected the credentials of {facts.access} "
            f"(401 Unauthorized: expired or invalid token or certificate)"
        )
    if isinstance(exc, ApiError):
        reason, message = exc.status.reason or "", exc.status.message or ""
    else:
        reason, message = exc.response.reason_phrase, exc.response.text[:200]
    facts.partial.append(f"{what}: {code} {reason}: {_one_line(message)}".rstrip(": "))


def _recent(events: list[KubeEvent], limit: int) -> list[KubeEvent]:
    """Most recent first, without the duplicates two queries may both return."""
    seen: set[tuple[str, str]] = set()
    unique = []
    for event in events:
        if (event.namespace, event.name) not in seen:
            seen.add((event.namespace, event.name))
            unique.append(event)
    unique.sort(key=lambda e: e.last_timestamp.timestamp() if e.last_timestamp else 0, reverse=True)
    return unique[:limit]


def load_config(access: KubeAccess) -> SingleConfig:
    """The lightkube config for `access`; _AccessError (one line) when it cannot be used."""
    if access.in_cluster:
        sa = Path(access.service_account_dir)
        cluster = Cluster(server=access.server or "", certificate_auth=str(sa / "ca.crt"))
        user = User(token_file=str(sa / "token"))
        single = KubeConfig.from_one(cluster=cluster, user=user).get()
        assert single is not None  # from_one sets the current context
        return single
    where = f"kubeconfig {access.path} ({access.source})"
    path = Path(access.path or "")
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise _AccessError(f"Kubernetes API not queried: {where}: no such file") from None
    except OSError as exc:
        raise _AccessError(f"Kubernetes API not queried: {where}: {exc.strerror}") from None
    try:
        conf = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise _AccessError(f"Kubernetes API not queried: {where}: not valid YAML{at}") from None
    if not isinstance(conf, dict) or not isinstance(conf.get("clusters"), list):
        raise _AccessError(
            f"Kubernetes API not queried: {where}: not a kubeconfig (no clusters list)"
        )
    try:
        kubeconfig = KubeConfig.from_dict(conf, fname=path)
    except Exception as exc:  # KeyError, TypeError, msgspec.ValidationError: malformed entries
        raise _AccessError(
            f"Kubernetes API not queried: {where}: malformed kubeconfig ({_one_line(exc)})"
        ) from None
    context = access.context
    if context is None and not kubeconfig.current_context:
        raise _AccessError(
            f"Kubernetes API not queried: {where}: no current-context set and no context given"
        )
    try:
        single = kubeconfig.get(context)
    except ConfigError as exc:
        raise _AccessError(f"Kubernetes API not queried: {where}: {_one_line(exc)}") from None
    except KeyError as exc:
        raise _AccessError(
            f"Kubernetes API not queried: {where}: context "
            f"{context or kubeconfig.current_context} names {exc} which is not defined"
        ) from None
    if single is None:  # pragma: no cover - only with a default, which is never passed
        raise _AccessError(f"Kubernetes API not queried: {where}: no usable context")
    if single.user is None:  # lightkube insists on a user; anonymous access has an empty one
        single = single._replace(user=User())
    return single


_ERRNO = re.compile(r"^\[Errno -?\d+\]\s*")


def _reason(exc: BaseException, timeout: float) -> str:
    """What went wrong, in the words an operator searches for."""
    if isinstance(exc, _httpx.ConnectTimeout | _httpx.PoolTimeout):
        return f"no answer within {timeout:g}s (connect timeout: address down or filtered?)"
    if isinstance(exc, _httpx.TimeoutException):
        return f"connected, but no answer within {timeout:g}s"
    text = _one_line(exc)
    low = text.lower()
    if "certificate verify failed" in low or "certificate_verify_failed" in low:
        detail = text.split("certificate verify failed:")[-1].split("(_ssl")[0].strip()
        return f"TLS certificate not trusted ({detail or 'verify failed'})"
    if "connection refused" in low:
        return "connection refused (nothing listens there: API server down or wrong port?)"
    if "name or service not known" in low or "nodename nor servname" in low:
        return f"host name not resolved ({text})"
    return text


def _one_line(exc: BaseException | str) -> str:
    text = exc if isinstance(exc, str) else (str(exc) or type(exc).__name__)
    text = " ".join(text.split())
    text = _ERRNO.sub("", text)
    return text[:300]
