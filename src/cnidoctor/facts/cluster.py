"""What the Kubernetes API says about the cluster: nodes, pods, events, the CNI's ConfigMaps.

The models are built by pure parsers (`from_object`) from the API's JSON objects, so the
same code serves a live cluster, the lab's API stand-in, a snapshot and golden test files.
Only the fields the rules reason about are kept: a 5,000-pod cluster stays small.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar

from pydantic import Field, ValidationError

from cnidoctor.collectors.base import FactParseError
from cnidoctor.facts.base import FactModel

M = TypeVar("M", bound=FactModel)

#: annotations flannel writes on each Node (the VTEP it announces, its backend)
FLANNEL_ANNOTATION_PREFIX = "flannel.alpha.coreos.com/"
#: annotations too big to carry and useless for diagnosis
DROPPED_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})
#: ConfigMaps that hold a CNI's cluster-wide configuration, as "namespace/name"
CNI_CONFIG_MAPS = (
    "kube-flannel/kube-flannel-cfg",
    "kube-system/kube-flannel-cfg",
    "kube-system/cilium-config",
    "kube-system/calico-config",
)
#: DaemonSets whose pod template carries a CNI's interface setting (env, args)
CNI_DAEMONSETS = (
    "kube-system/calico-node",
    "calico-system/calico-node",
    "kube-system/cilium",
    "kube-flannel/kube-flannel-ds",
    "kube-system/kube-flannel-ds",
)


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise FactParseError(f"{what}: expected an object, got {type(value).__name__}")
    return value


def _items(value: Any, what: str) -> list[Mapping[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise FactParseError(f"{what}: expected a list of objects")
    return value


def _meta(obj: Any, kind: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise FactParseError(f"{kind}: expected an object, got {type(obj).__name__}")
    meta = _mapping(obj.get("metadata"), f"{kind}.metadata")
    if not isinstance(meta.get("name"), str) or not meta["name"]:
        raise FactParseError(f"{kind}: no metadata.name (truncated or not a {kind})")
    return meta


def _build(model: type[M], data: dict[str, Any], what: str) -> M:
    """Validate, turning pydantic's multi-line report into one FactParseError line."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise FactParseError(f"{what}: {where}: {first['msg']}") from exc


class KubeCondition(FactModel):
    type: str
    status: str = Field(description="True, False or Unknown")
    reason: str | None = None
    message: str | None = None
    last_transition_time: datetime | None = None
    last_heartbeat_time: datetime | None = None


class KubeTaint(FactModel):
    key: str
    value: str | None = None
    effect: str | None = None


class KubeAddress(FactModel):
    type: str = Field(description="InternalIP, ExternalIP, Hostname...")
    address: str


class KubeNode(FactModel):
    name: str
    created: datetime | None = None
    conditions: list[KubeCondition] = Field(default_factory=list)
    pod_cidrs: list[str] = Field(
        default_factory=list, description="spec.podCIDRs (spec.podCIDR first when only it is set)"
    )
    addresses: list[KubeAddress] = Field(default_factory=list)
    taints: list[KubeTaint] = Field(default_factory=list)
    unschedulable: bool = False
    boot_id: str | None = None
    kubelet_version: str | None = None
    kernel_version: str | None = None
    container_runtime_version: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @property
    def k3s_node_args(self) -> list[str] | None:
        """k3s's command line as k3s records it on its Node (annotation k3s.io/node-args,
        a JSON list: ["server", "--flannel-iface", "eth1", ...]); None when absent or bad."""
        raw = self.annotations.get("k3s.io/node-args")
        try:
            args = json.loads(raw) if raw else None
        except ValueError:
            return None
        return [str(a) for a in args] if isinstance(args, list) else None

    @classmethod
    def from_object(cls, obj: Any) -> KubeNode:
        """A v1 Node (as JSON) -> KubeNode; FactParseError on something that is not a Node."""
        meta = _meta(obj, "Node")
        spec = _mapping(obj.get("spec"), "Node.spec")
        status = _mapping(obj.get("status"), "Node.status")
        info = _mapping(status.get("nodeInfo"), "Node.status.nodeInfo")
        cidrs = list(spec.get("podCIDRs") or [])
        if spec.get("podCIDR") and spec["podCIDR"] not in cidrs:
            cidrs.insert(0, spec["podCIDR"])
        annotations = {
            k: v
            for k, v in _mapping(meta.get("annotations"), "Node.annotations").items()
            if k not in DROPPED_ANNOTATIONS
        }
        return _build(
            cls,
            {
                "name": meta["name"],
                "created": meta.get("creationTimestamp"),
                "conditions": [
                    _condition(c) for c in _items(status.get("conditions"), "Node.conditions")
                ],
                "pod_cidrs": cidrs,
                "addresses": _items(status.get("addresses"), "Node.addresses"),
                "taints": _items(spec.get("taints"), "Node.taints"),
                "unschedulable": bool(spec.get("unschedulable")),
                "boot_id": info.get("bootID") or None,
                "kubelet_version": info.get("kubeletVersion") or None,
                "kernel_version": info.get("kernelVersion") or None,
                "container_runtime_version": info.get("containerRuntimeVersion") or None,
                "labels": meta.get("labels") or {},
                "annotations": annotations,
            },
            f"Node {meta['name']}",
        )

    def condition(self, type_: str) -> KubeCondition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    @property
    def ready(self) -> bool:
        """The kubelet's Ready condition: True means the kubelet posts status, not that pods
        can get an address (incident 001: Ready nodes, no subnet.env)."""
        cond = self.condition("Ready")
        return cond is not None and cond.status == "True"

    @property
    def internal_ip(self) -> str | None:
        return next((a.address for a in self.addresses if a.type == "InternalIP"), None)

    @property
    def flannel_annotations(self) -> dict[str, str]:
        prefix = FLANNEL_ANNOTATION_PREFIX
        return {k: v for k, v in self.annotations.items() if k.startswith(prefix)}

    @property
    def flannel_public_ip(self) -> str | None:
        return self.annotations.get(FLANNEL_ANNOTATION_PREFIX + "public-ip")

    @property
    def flannel_backend_type(self) -> str | None:
        return self.annotations.get(FLANNEL_ANNOTATION_PREFIX + "backend-type")

    @property
    def flannel_backend_data(self) -> dict[str, Any] | None:
        """backend-data as JSON ({"VNI": 1, "VtepMAC": "..."}); None when absent or not JSON."""
        raw = self.annotations.get(FLANNEL_ANNOTATION_PREFIX + "backend-data")
        try:
            value = json.loads(raw) if raw else None
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


def _condition(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": raw.get("type"),
        "status": raw.get("status"),
        "reason": raw.get("reason") or None,
        "message": raw.get("message") or None,
        "last_transition_time": raw.get("lastTransitionTime"),
        "last_heartbeat_time": raw.get("lastHeartbeatTime"),
    }


class KubeContainerStatus(FactModel):
    name: str
    init: bool = Field(default=False, description="an init container")
    ready: bool = False
    restart_count: int = 0
    state: str | None = Field(default=None, description="waiting, running or terminated")
    reason: str | None = Field(default=None, description="of the current state (CrashLoopBackOff)")
    message: str | None = None
    exit_code: int | None = None
    started_at: datetime | None = None
    last_reason: str | None = Field(default=None, description="the last termination's reason")
    last_message: str | None = None
    last_exit_code: int | None = None


def _container(raw: Mapping[str, Any], init: bool) -> dict[str, Any]:
    state = _mapping(raw.get("state"), "containerStatus.state")
    kind = next((k for k in ("waiting", "running", "terminated") if k in state), None)
    detail = _mapping(state.get(kind), "containerStatus.state") if kind else {}
    last = _mapping(
        _mapping(raw.get("lastState"), "containerStatus.lastState").get("terminated"),
        "containerStatus.lastState.terminated",
    )
    return {
        "name": raw.get("name"),
        "init": init,
        "ready": bool(raw.get("ready")),
        "restart_count": raw.get("restartCount") or 0,
        "state": kind,
        "reason": detail.get("reason") or None,
        "message": detail.get("message") or None,
        "exit_code": detail.get("exitCode"),
        "started_at": detail.get("startedAt"),
        "last_reason": last.get("reason") or None,
        "last_message": last.get("message") or None,
        "last_exit_code": last.get("exitCode"),
    }


class KubePod(FactModel):
    namespace: str
    name: str
    node: str | None = Field(default=None, description="spec.nodeName; None while unscheduled")
    phase: str | None = Field(default=None, description="Pending, Running, ..., Unknown")
    reason: str | None = Field(default=None, description="status.reason (NodeLost, Evicted...)")
    message: str | None = None
    created: datetime | None = None
    start_time: datetime | None = None
    deleting: bool = Field(default=False, description="metadata.deletionTimestamp is set")
    host_network: bool = Field(default=False, description="needs no CNI address")
    pod_ips: list[str] = Field(default_factory=list)
    owner_kind: str | None = Field(default=None, description="DaemonSet, ReplicaSet, Node...")
    owner_name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    conditions: list[KubeCondition] = Field(default_factory=list)
    containers: list[KubeContainerStatus] = Field(default_factory=list)

    @classmethod
    def from_object(cls, obj: Any) -> KubePod:
        """A v1 Pod (as JSON) -> KubePod; FactParseError on something that is not a Pod."""
        meta = _meta(obj, "Pod")
        spec = _mapping(obj.get("spec"), "Pod.spec")
        status = _mapping(obj.get("status"), "Pod.status")
        owners = _items(meta.get("ownerReferences"), "Pod.ownerReferences")
        owner = next((o for o in owners if o.get("controller")), owners[0] if owners else {})
        ips = [p.get("ip") for p in _items(status.get("podIPs"), "Pod.podIPs") if p.get("ip")]
        if not ips and status.get("podIP"):
            ips = [status["podIP"]]
        containers = [
            _container(c, init=True)
            for c in _items(status.get("initContainerStatuses"), "Pod.initContainerStatuses")
        ] + [
            _container(c, init=False)
            for c in _items(status.get("containerStatuses"), "Pod.containerStatuses")
        ]
        return _build(
            cls,
            {
                "namespace": meta.get("namespace") or "default",
                "name": meta["name"],
                "node": spec.get("nodeName") or None,
                "phase": status.get("phase") or None,
                "reason": status.get("reason") or None,
                "message": status.get("message") or None,
                "created": meta.get("creationTimestamp"),
                "start_time": status.get("startTime"),
                "deleting": meta.get("deletionTimestamp") is not None,
                "host_network": bool(spec.get("hostNetwork")),
                "pod_ips": ips,
                "owner_kind": owner.get("kind"),
                "owner_name": owner.get("name"),
                "labels": meta.get("labels") or {},
                "conditions": [
                    _condition(c) for c in _items(status.get("conditions"), "Pod.conditions")
                ],
                "containers": containers,
            },
            f"Pod {meta.get('namespace') or 'default'}/{meta['name']}",
        )

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def waiting_reasons(self) -> list[str]:
        """Reasons of the containers that wait (ContainerCreating, CrashLoopBackOff...)."""
        return [c.reason for c in self.containers if c.state == "waiting" and c.reason]


class KubeEvent(FactModel):
    namespace: str
    name: str
    kind: str | None = Field(default=None, description="involvedObject.kind (Pod, Node...)")
    object_name: str | None = Field(default=None, description="involvedObject.name")
    object_namespace: str | None = None
    reason: str | None = None
    message: str | None = None
    type: str | None = Field(default=None, description="Normal or Warning")
    count: int = 1
    first_timestamp: datetime | None = None
    last_timestamp: datetime | None = None
    source_component: str | None = None
    source_host: str | None = Field(default=None, description="the node that reported it")

    @classmethod
    def from_object(cls, obj: Any) -> KubeEvent:
        """A core v1 Event (as JSON) -> KubeEvent. Newer reporters fill eventTime/series and
        reportingController/Instance instead of the timestamps and source: both are read."""
        meta = _meta(obj, "Event")
        involved = _mapping(obj.get("involvedObject"), "Event.involvedObject")
        source = _mapping(obj.get("source"), "Event.source")
        series = _mapping(obj.get("series"), "Event.series")
        first = obj.get("firstTimestamp") or obj.get("eventTime") or meta.get("creationTimestamp")
        last = obj.get("lastTimestamp") or series.get("lastObservedTime") or first
        count = obj.get("count") or series.get("count") or 1
        return _build(
            cls,
            {
                "namespace": meta.get("namespace") or "default",
                "name": meta["name"],
                "kind": involved.get("kind"),
                "object_name": involved.get("name"),
                "object_namespace": involved.get("namespace"),
                "reason": obj.get("reason") or None,
                "message": obj.get("message") or None,
                "type": obj.get("type") or None,
                "count": count,
                "first_timestamp": first,
                "last_timestamp": last,
                "source_component": source.get("component") or obj.get("reportingComponent"),
                "source_host": source.get("host") or obj.get("reportingInstance") or None,
            },
            f"Event {meta.get('namespace') or 'default'}/{meta['name']}",
        )


def config_map_data(obj: Any) -> tuple[str, dict[str, str]]:
    """A v1 ConfigMap (as JSON) -> ("namespace/name", data)."""
    meta = _meta(obj, "ConfigMap")
    data = _mapping(obj.get("data"), "ConfigMap.data")
    if not all(isinstance(v, str) for v in data.values()):
        raise FactParseError(f"ConfigMap {meta['name']}: data values must be strings")
    return f"{meta.get('namespace') or 'default'}/{meta['name']}", dict(data)


class KubeContainerSpec(FactModel):
    """A container of a pod template: what it runs with (env values only, never secrets:
    valueFrom entries are kept as where they come from)."""

    name: str
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)


class KubeDaemonSet(FactModel):
    namespace: str
    name: str
    containers: list[KubeContainerSpec] = Field(default_factory=list)

    @classmethod
    def from_object(cls, obj: Any) -> KubeDaemonSet:
        """An apps/v1 DaemonSet (as JSON) -> its template's containers (init ones too)."""
        meta = _meta(obj, "DaemonSet")
        spec = _mapping(obj.get("spec"), "DaemonSet.spec")
        template = _mapping(spec.get("template"), "DaemonSet.spec.template")
        pod = _mapping(template.get("spec"), "DaemonSet.spec.template.spec")
        containers = []
        for raw in _items(pod.get("initContainers"), "initContainers") + _items(
            pod.get("containers"), "containers"
        ):
            env = {}
            for item in _items(raw.get("env"), "container.env"):
                if "value" in item:
                    env[str(item.get("name"))] = str(item.get("value"))
                elif item.get("valueFrom") is not None:
                    source = next(iter(_mapping(item["valueFrom"], "env.valueFrom")), "?")
                    env[str(item.get("name"))] = f"<from {source}>"
            containers.append(
                {
                    "name": raw.get("name") or "?",
                    "command": [str(a) for a in raw.get("command") or []],
                    "args": [str(a) for a in raw.get("args") or []],
                    "env": env,
                }
            )
        name = meta["name"]
        namespace = meta.get("namespace") or "default"
        return _build(
            cls,
            {"namespace": namespace, "name": name, "containers": containers},
            f"DaemonSet {namespace}/{name}",
        )

    def env(self, key: str) -> str | None:
        """The first container's value for `key` (init containers last), or None."""
        for container in sorted(self.containers, key=lambda c: c.name.startswith("install")):
            if key in container.env:
                return container.env[key]
        return None

    def flag(self, name: str) -> str | None:
        """The value of `--name=V` / `--name V` in any container's command or args."""
        for container in self.containers:
            value = flag_value([*container.command, *container.args], name)
            if value is not None:
                return value
        return None


def flag_value(words: list[str], name: str) -> str | None:
    """The value of `--name=V` or `--name V` in a command line's words."""
    for i, word in enumerate(words):
        if word == f"--{name}" and i + 1 < len(words):
            return words[i + 1]
        if word.startswith(f"--{name}="):
            return word.split("=", 1)[1]
    return None


class ClusterFacts(FactModel):
    """Everything read from the API in one pass. When the API could not be read at all,
    `reachable` is false and `error` says, in one line, what was tried and what failed;
    diagnosis then goes on from the node facts alone."""

    reachable: bool
    error: str | None = Field(default=None, description="one line: what was tried, what failed")
    server: str | None = Field(default=None, description="the API server URL used")
    access: str | None = Field(default=None, description="where the credentials came from")
    nodes: list[KubeNode] = Field(default_factory=list)
    pods: list[KubePod] = Field(default_factory=list)
    events: list[KubeEvent] = Field(default_factory=list)
    config_maps: dict[str, dict[str, str]] = Field(
        default_factory=dict, description='"namespace/name" -> data, for the CNI ConfigMaps found'
    )
    daemonsets: dict[str, KubeDaemonSet] = Field(
        default_factory=dict, description='"namespace/name" -> template, for the CNI DaemonSets'
    )
    calico_installation: dict[str, Any] | None = Field(
        default=None,
        description="spec.calicoNetwork of the Tigera operator's Installation `default`, if any",
    )
    partial: list[str] = Field(
        default_factory=list, description="lists that failed while others worked, with why"
    )
    duration_s: float | None = None

    def node(self, name: str) -> KubeNode | None:
        return next((n for n in self.nodes if n.name == name), None)

    def pods_on(self, node: str) -> list[KubePod]:
        return [p for p in self.pods if p.node == node]

    def events_about(self, kind: str, name: str, namespace: str | None = None) -> list[KubeEvent]:
        return [
            e
            for e in self.events
            if e.kind == kind
            and e.object_name == name
            and (namespace is None or e.object_namespace in (None, namespace))
        ]

    def flannel_net_conf(self) -> dict[str, Any] | None:
        """net-conf.json of kube-flannel-cfg (Network, Backend.Type...), wherever it lives."""
        for key in ("kube-flannel/kube-flannel-cfg", "kube-system/kube-flannel-cfg"):
            raw = self.config_maps.get(key, {}).get("net-conf.json")
            if raw:
                try:
                    value = json.loads(raw)
                except ValueError:
                    return None
                return value if isinstance(value, dict) else None
        return None
