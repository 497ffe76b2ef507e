"""The lab's stand-in for a Kubernetes API server: serves given objects at the real REST paths.

Lab scenarios replay an incident's API view (nodes Ready, pods Unknown, sandbox events)
next to the nodes' namespaces; the product reads it through the very client code it uses
for real clusters (kube/client.py), and `kubectl get` works against it too. It serves
reads only: discovery (/version, /api, /apis...), list and get for the resources in
`RESOURCES`, fieldSelector, labelSelector, `limit`/`continue` paging with an opaque
token, a list resourceVersion, Status objects for errors, and optional bearer-token auth
(to replay expired credentials). Plain HTTP by default, HTTPS with a throwaway
self-signed certificate on request.

    cnidoctor lab api --objects PATH --listen HOST:PORT [--netns NAME]
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from cnidoctor.errors import CnidoctorError, UsageError

SERVER_VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.4+cnidoctor-lab",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.22.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}
CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"
JSON = "application/json"  # exactly: lightkube only decodes error Status bodies with this type


@dataclass(frozen=True)
class ResourceType:
    kind: str
    plural: str
    namespaced: bool
    group: str = ""
    version: str = "v1"
    short_names: tuple[str, ...] = ()

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def discovery(self) -> dict[str, Any]:
        return {
            "name": self.plural,
            "singularName": self.kind.lower(),
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": ["get", "list"],
            "shortNames": list(self.short_names),
        }


RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("Node", "nodes", False, short_names=("no",)),
    ResourceType("Namespace", "namespaces", False, short_names=("ns",)),
    ResourceType("Pod", "pods", True, short_names=("po",)),
    ResourceType("Event", "events", True, short_names=("ev",)),
    ResourceType("ConfigMap", "configmaps", True, short_names=("cm",)),
    ResourceType("Service", "services", True, short_names=("svc",)),
    ResourceType("Endpoints", "endpoints", True, short_names=("ep",)),
    ResourceType("DaemonSet", "daemonsets", True, "apps", "v1", ("ds",)),
    ResourceType("Deployment", "deployments", True, "apps", "v1", ("deploy",)),
    ResourceType("ReplicaSet", "replicasets", True, "apps", "v1", ("rs",)),
    ResourceType("Installation", "installations", False, "operator.tigera.io", "v1"),
)
_BY_KIND = {(r.group_version, r.kind): r for r in RESOURCES}
_BY_PATH = {(r.group_version, r.plural): r for r in RESOURCES}
_GROUPS = sorted({r.group for r in RESOURCES if r.group})

#: field selectors the real API server accepts on at least one of these resources
FIELD_PATHS = {
    "metadata.name": ("metadata", "name"),
    "metadata.namespace": ("metadata", "namespace"),
    "spec.nodeName": ("spec", "nodeName"),
    "spec.unschedulable": ("spec", "unschedulable"),
    "status.phase": ("status", "phase"),
    "status.podIP": ("status", "podIP"),
    "type": ("type",),
    "reason": ("reason",),
    "source": ("source", "component"),
    "reportingComponent": ("reportingComponent",),
    "involvedObject.kind": ("involvedObject", "kind"),
    "involvedObject.name": ("involvedObject", "name"),
    "involvedObject.namespace": ("involvedObject", "namespace"),
    "involvedObject.uid": ("involvedObject", "uid"),
    "involvedObject.fieldPath": ("involvedObject", "fieldPath"),
}


class ApiObjectsError(UsageError):
    """The objects to serve cannot be read: one line naming the file and the problem."""


class SelectorError(ValueError):
    """A field or label selector the server cannot parse (answered with 400)."""


# --- the objects --------------------------------------------------------------------------


def load_objects(path: str | Path) -> list[dict[str, Any]]:
    """Every object in a YAML/JSON file or a directory of them (sorted, recursive);
    multi-document YAML and `kind: List` are unfolded."""
    root = Path(path)
    if root.is_dir():
        files = sorted(
            p for p in root.rglob("*") if p.suffix in (".yaml", ".yml", ".json") and p.is_file()
        )
    elif root.is_file():
        files = [root]
    else:
        raise ApiObjectsError(f"{root}: no such file or directory")
    objects: list[dict[str, Any]] = []
    for file in files:
        try:
            docs = list(yaml.safe_load_all(file.read_text()))
        except (OSError, yaml.YAMLError) as exc:
            raise ApiObjectsError(f"{file}: {' '.join(str(exc).split())[:200]}") from None
        for doc in docs:
            objects.extend(_unfold(doc, file))
    return objects


def _unfold(doc: Any, file: Path) -> list[dict[str, Any]]:
    if doc is None:
        return []
    if not isinstance(doc, dict):
        raise ApiObjectsError(f"{file}: a document is not an object")
    if doc.get("kind") == "List" or (str(doc.get("kind", "")).endswith("List") and "items" in doc):
        items = doc.get("items") or []
        if not isinstance(items, list):
            raise ApiObjectsError(f"{file}: items is not a list")
        out = []
        for item in items:
            out.extend(_unfold(item, file))
        return out
    return [doc]


_NODE_INFO = (
    "architecture",
    "bootID",
    "containerRuntimeVersion",
    "kernelVersion",
    "kubeProxyVersion",
    "kubeletVersion",
    "machineID",
    "operatingSystem",
    "osImage",
    "systemUUID",
)


def _serialize_like_go(kind: str, obj: dict[str, Any]) -> None:
    """Fill the fields a real API server always writes (Go fields without omitempty), so
    hand-written lab objects decode in strict clients as real ones do."""
    for ref in obj["metadata"].get("ownerReferences") or []:
        for key in ("apiVersion", "kind", "name", "uid"):
            ref.setdefault(key, "")
    if kind == "Node":
        status = obj.setdefault("status", {})
        info = status.setdefault("nodeInfo", {})
        for key in _NODE_INFO:
            info.setdefault(key, "")
    elif kind == "Pod":
        obj.setdefault("spec", {}).setdefault("containers", [])
        status = obj.get("status") or {}
        for group in ("initContainerStatuses", "containerStatuses"):
            for cs in status.get(group) or []:
                cs.setdefault("image", "")
                cs.setdefault("imageID", "")
                cs.setdefault("ready", False)
                cs.setdefault("restartCount", 0)
    elif kind == "Event":
        obj.setdefault("involvedObject", {})


class ObjectStore:
    """The served objects, indexed by resource and sorted by (namespace, name) like etcd keys.

    Each object's JSON is encoded once at load so a 5,000-pod page costs a join, not a dump.
    """

    def __init__(self, objects: Iterable[Mapping[str, Any]]) -> None:
        self._by_res: dict[ResourceType, list[tuple[tuple[str, str], dict[str, Any], bytes]]] = {}
        counter = 0
        namespaces: set[str] = {"default", "kube-system"}
        prepared: list[tuple[ResourceType, dict[str, Any]]] = []
        for raw in objects:
            obj = json.loads(json.dumps(raw, default=str))  # a private, JSON-clean copy
            res = self._resource_of(obj)
            meta = obj.setdefault("metadata", {})
            if not isinstance(meta, dict) or not meta.get("name"):
                raise ApiObjectsError(f"a {obj.get('kind')} object has no metadata.name")
            if res.namespaced:
                meta.setdefault("namespace", "default")
                namespaces.add(meta["namespace"])
            else:
                meta.pop("namespace", None)
            try:
                _serialize_like_go(res.kind, obj)
            except (AttributeError, TypeError):
                raise ApiObjectsError(
                    f"{res.kind} {meta['name']}: malformed (a field has the wrong shape)"
                ) from None
            prepared.append((res, obj))
        have_ns = {o["metadata"]["name"] for r, o in prepared if r.kind == "Namespace"}
        for name in sorted(namespaces - have_ns):
            ns = {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            }
            prepared.append((_BY_KIND[("v1", "Namespace")], ns))
        for res, obj in prepared:
            counter += 1
            meta = obj["metadata"]
            meta.setdefault("resourceVersion", str(1000 + counter))
            key = (meta.get("namespace", ""), meta["name"])
            meta.setdefault("uid", str(uuid.uuid5(uuid.NAMESPACE_URL, f"{res.plural}/{key}")))
            obj.setdefault("apiVersion", res.group_version)
            encoded = json.dumps(obj, separators=(",", ":")).encode()
            self._by_res.setdefault(res, []).append((key, obj, encoded))
        for entries in self._by_res.values():
            entries.sort(key=lambda e: e[0])
            keys = [e[0] for e in entries]
            if len(set(keys)) != len(keys):
                dup = next(k for k in keys if keys.count(k) > 1)
                raise ApiObjectsError(f"two {entries[0][1]['kind']} objects named {'/'.join(dup)}")
        self.resource_version = str(1000 + counter)

    @staticmethod
    def _resource_of(obj: dict[str, Any]) -> ResourceType:
        kind = obj.get("kind")
        api_version = obj.get("apiVersion") or ""
        res = _BY_KIND.get((api_version, kind)) if api_version else None
        res = res or next((r for r in RESOURCES if r.kind == kind), None)
        if res is None:
            served = ", ".join(r.kind for r in RESOURCES)
            raise ApiObjectsError(f"kind {kind!r} is not served (served: {served})")
        return res

    def entries(self, res: ResourceType) -> list[tuple[tuple[str, str], dict[str, Any], bytes]]:
        return self._by_res.get(res, [])

    def get(self, res: ResourceType, namespace: str, name: str) -> bytes | None:
        key = (namespace if res.namespaced else "", name)
        return next((enc for k, _, enc in self.entries(res) if k == key), None)


# --- selectors ----------------------------------------------------------------------------


def _field_value(obj: Mapping[str, Any], path: Sequence[str]) -> str:
    value: Any = obj
    for part in path:
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def parse_field_selector(text: str) -> Callable[[Mapping[str, Any]], bool]:
    """`a=b,c!=d` (also `==`) over the fields in FIELD_PATHS; SelectorError otherwise."""
    tests: list[tuple[Sequence[str], bool, str]] = []
    for term in filter(None, (t.strip() for t in text.split(","))):
        match = re.fullmatch(r"([A-Za-z.]+)\s*(==|!=|=)\s*(.*)", term)
        if not match:
            raise SelectorError(f"invalid selector: {term!r}; can't understand it")
        name, op, value = match.groups()
        if name not in FIELD_PATHS:
            raise SelectorError(f'field label not supported: "{name}"')
        tests.append((FIELD_PATHS[name], op != "!=", value.strip()))
    return lambda obj: all((_field_value(obj, p) == v) is eq for p, eq, v in tests)


_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"


def _split_terms(text: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    if depth:
        raise SelectorError(f"unbalanced parentheses in {text!r}")
    return [t.strip() for t in [*terms, current] if t.strip()]


def parse_label_selector(text: str) -> Callable[[Mapping[str, Any]], bool]:
    """`k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, comma-joined (AND)."""
    tests: list[Callable[[Mapping[str, str]], bool]] = []
    for term in _split_terms(text):
        if m := re.fullmatch(rf"!\s*({_KEY})", term):
            key = m.group(1)
            tests.append(lambda labels, k=key: k not in labels)
        elif m := re.fullmatch(rf"({_KEY})\s+(in|notin)\s*\(([^()]*)\)", term):
            key, op, values = m.group(1), m.group(3), m.group(4)
            wanted = {v.strip() for v in values.split(",")}
            if op == "in":
                tests.append(lambda labels, k=key, w=wanted: labels.get(k) in w)
            else:
                tests.append(lambda labels, k=key, w=wanted: labels.get(k) not in w)
        elif m := re.fullmatch(rf"({_KEY})\s*(==|!=|=)\s*({_VALUE})", term):
            key, op, value = m.group(1), m.group(3), m.group(4)
            if op == "!=":
                tests.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                tests.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif m := re.fullmatch(_KEY, term):
            tests.append(lambda labels, k=term: k in labels)
        else:
            raise SelectorError(f"unable to parse requirement: {term!r}")

    def matches(obj: Mapping[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(test(labels) for test in tests)

    return matches


# --- paging -------------------------------------------------------------------------------


def _encode_continue(resource_version: str, key: tuple[str, str]) -> str:
    raw = json.dumps({"rv": resource_version, "after": list(key)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[str, tuple[str, str]]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        after = data["after"]
        return str(data["rv"]), (str(after[0]), str(after[1]))
    except (binascii.Error, ValueError, KeyError, IndexError, TypeError):
        raise SelectorError("continue key is not valid") from None


# --- HTTP ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiRequest:
    """One request the stand-in answered (tests count list pages with these)."""

    method: str
    path: str
    query: dict[str, str]
    status: int


def _status(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


class _Handler(BaseHTTPRequestHandler):
    server: _ApiServer
    protocol_version = "HTTP/1.1"  # keep-alive: a paged list reuses one connection

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: requests are recorded in ApiHandle.requests instead."""

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        try:
            code, body = self._route(parts.path.rstrip("/") or "/", query)
        except SelectorError as exc:
            code, body = 400, _status(400, "BadRequest", str(exc))
        except Exception as exc:  # a bug here must answer, not hang the client
            code, body = 500, _status(500, "InternalError", f"lab api: {exc}")
        self.server.requests.append(ApiRequest("GET", parts.path, query, code))
        self._send(code, body)

    def _refuse(self) -> None:
        parts = urlsplit(self.path)
        self.server.requests.append(ApiRequest(self.command, parts.path, {}, 405))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        msg = f"the lab API stand-in is read-only: {self.command} is not supported"
        self._send(405, _status(405, "MethodNotAllowed", msg))

    do_POST = do_PUT = do_PATCH = do_DELETE = _refuse

    def _send(self, code: int, body: dict[str, Any] | bytes | str) -> None:
        if isinstance(body, dict):
            data = json.dumps(body).encode()
            ctype = JSON
        elif isinstance(body, bytes):
            data, ctype = body, JSON
        else:
            data, ctype = body.encode(), "text/plain; charset=utf-8"
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        token = self.server.token
        return token is None or self.headers.get("Authorization") == f"Bearer {token}"

    def _route(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, Any] | bytes | str]:
        if path in ("/healthz", "/livez", "/readyz"):
            return 200, "ok"
        if not self._authorized():
            return 401, _status(401, "Unauthorized", "Unauthorized")
        if path == "/version":
            return 200, SERVER_VERSION
        if path == "/api":
            return 200, {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": self.server.address_text}
                ],
            }
        if path == "/apis":
            return 200, {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [self._group(g) for g in _GROUPS],
            }
        segs = path.strip("/").split("/")
        if segs[0] == "api" and len(segs) >= 2:
            group_version, rest = segs[1], segs[2:]
        elif segs[0] == "apis" and len(segs) == 2 and segs[1] in _GROUPS:
            return 200, {"kind": "APIGroup", "apiVersion": "v1", **self._group(segs[1])}
        elif segs[0] == "apis" and len(segs) >= 3:
            group_version, rest = f"{segs[1]}/{segs[2]}", segs[3:]
        else:
            return 404, _status(404, "NotFound", "the server could not find the requested resource")
        served = [r for r in RESOURCES if r.group_version == group_version]
        if not served:
            return 404, _status(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            return 200, {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": group_version,
                "resources": [r.discovery() for r in served],
            }
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        res = _BY_PATH.get((group_version, rest[0]))
        if res is None or len(rest) > 2 or (namespace is not None and not res.namespaced):
            return 404, _status(404, "NotFound", "the server could not find the requested resource")
        if res.plural in self.server.forbid:
            verb = "get" if len(rest) == 2 else "list"
            scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
            msg = (
                f'{res.plural} is forbidden: User "system:serviceaccount:lab:cnidoctor" '
                f'cannot {verb} resource "{res.plural}" in API group "{res.group}" {scope}'
            )
            return 403, _status(403, "Forbidden", msg, kind=res.plural)
        if len(rest) == 2:
            found = self.server.store.get(res, namespace or "", rest[1])
            if found is None:
                return 404, _status(
                    404,
                    "NotFound",
                    f'{res.plural} "{rest[1]}" not found',
                    name=rest[1],
                    kind=res.plural,
                )
            return 200, found
        if query.get("watch") in ("true", "1"):
            return 405, _status(405, "MethodNotAllowed", "the lab API stand-in cannot watch")
        return 200, self._list(res, namespace, query)

    def _group(self, group: str) -> dict[str, Any]:
        version = next(r.version for r in RESOURCES if r.group == group)
        gv = {"groupVersion": f"{group}/{version}", "version": version}
        return {"name": group, "versions": [gv], "preferredVersion": gv}

    def _list(self, res: ResourceType, namespace: str | None, query: dict[str, str]) -> bytes:
        store = self.server.store
        fields = parse_field_selector(query.get("fieldSelector", ""))
        labels = parse_label_selector(query.get("labelSelector", ""))
        after: tuple[str, str] | None = None
        if query.get("continue"):
            rv, after = _decode_continue(query["continue"])
            if rv != store.resource_version:
                raise SelectorError("continue key is from another resourceVersion")
        try:
            limit = int(query.get("limit") or 0)
        except ValueError:
            raise SelectorError(f"limit must be an integer, not {query['limit']!r}") from None
        matched = [
            (key, enc)
            for key, obj, enc in store.entries(res)
            if (namespace is None or key[0] == namespace)
            and (after is None or key > after)
            and fields(obj)
            and labels(obj)
        ]
        page = matched[:limit] if limit > 0 else matched
        meta: dict[str, Any] = {"resourceVersion": store.resource_version}
        if limit > 0 and len(matched) > limit:
            meta["continue"] = _encode_continue(store.resource_version, page[-1][0])
            meta["remainingItemCount"] = len(matched) - limit
        head = json.dumps(
            {"kind": f"{res.kind}List", "apiVersion": res.group_version, "metadata": meta}
        )
        return head[:-1].encode() + b',"items":[' + b",".join(e for _, e in page) + b"]}"


class _ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    store: ObjectStore
    token: str | None
    forbid: frozenset[str]
    requests: list[ApiRequest]
    address_text: str
    tls: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        """TLS handshakes happen here, in the request's own thread, never in accept()."""
        if self.tls is not None:
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)


# --- starting and stopping ----------------------------------------------------------------


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT or [V6]:PORT -> (host, port); UsageError otherwise."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\s]+):(\d+)", text.strip())
    if not match:
        raise UsageError(f"--listen {text!r}: expected HOST:PORT (or [V6ADDR]:PORT)")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if port > 65535:
        raise UsageError(f"--listen {text!r}: port out of range")
    return host, port


def _listen_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise CnidoctorError(f"lab api: cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def _setns_net(fd: int) -> None:
    if hasattr(os, "setns"):  # Python 3.12+
        os.setns(fd, CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _socket_in_netns(netns: str, host: str, port: int) -> socket.socket:
    """A listening socket inside network namespace `netns`.

    A throwaway thread enters the namespace (setns is per thread for CLONE_NEWNET) and
    opens the socket; the socket stays in that namespace for life while every other
    thread, the serving ones included, stays in the caller's namespace.
    """
    ns_path = os.path.join(NETNS_DIR, netns)
    if "/" in netns or not os.path.exists(ns_path):
        raise CnidoctorError(f"lab api: network namespace {netns!r} not found ({ns_path})")
    out: dict[str, Any] = {}

    def enter_and_listen() -> None:
        try:
            fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns_net(fd)
            finally:
                os.close(fd)
            out["sock"] = _listen_socket(host, port)
        except BaseException as exc:  # reported in the caller's thread
            out["error"] = exc

    worker = threading.Thread(target=enter_and_listen, name=f"netns-{netns}")
    worker.start()
    worker.join()
    if "error" in out:
        exc = out["error"]
        if isinstance(exc, CnidoctorError):
            raise exc
        raise CnidoctorError(f"lab api: cannot enter network namespace {netns}: {exc}") from exc
    return out["sock"]  # type: ignore[no-any-return]


def _self_signed(host: str, directory: Path) -> tuple[ssl.SSLContext, bytes]:
    """A server TLS context with a fresh self-signed certificate; returns it and the PEM."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    for addr in {host, "127.0.0.1"}:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(addr)))
        except ValueError:
            names.append(x509.DNSName(addr))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cnidoctor-lab-api")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (directory / "tls.crt").write_bytes(cert_pem)
    key_file = directory / "tls.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(key_file, 0o600)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(directory / "tls.crt", key_file)
    return ctx, cert_pem


def write_kubeconfig(
    path: Path, url: str, token: str | None = None, ca_pem: bytes | None = None
) -> Path:
    """A kubeconfig with one context, `cnidoctor-lab`, pointing at `url`."""
    cluster: dict[str, Any] = {"server": url}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cnidoctor-lab", "cluster": cluster}],
        "users": [{"name": "cnidoctor-lab", "user": {"token": token} if token else {}}],
        "contexts": [
            {
                "name": "cnidoctor-lab",
                "context": {"cluster": "cnidoctor-lab", "user": "cnidoctor-lab"},
            }
        ],
        "current-context": "cnidoctor-lab",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    os.chmod(path, 0o600)
    return path


@dataclass
class ApiHandle:
    """A running stand-in: its URL, the kubeconfig it wrote, what it was asked; `stop()`."""

    url: str
    kubeconfig_path: Path
    requests: list[ApiRequest]
    _server: _ApiServer
    _thread: threading.Thread
    _tmpdir: Path | None = None
    _stopped: bool = field(default=False)

    def stop(self) -> None:
        """Stop serving, close the socket, remove the files it wrote (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self) -> ApiHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_api(
    objects: str | Path | Iterable[Mapping[str, Any]],
    listen: str = "127.0.0.1:0",
    netns: str | None = None,
    *,
    token: str | None = None,
    tls: bool = False,
    forbid: Iterable[str] = (),
    kubeconfig_dir: str | Path | None = None,
) -> ApiHandle:
    """Serve `objects` (a path, or the objects themselves) in a background thread.

    Port 0 picks a free port (see `.url`). With `netns`, the socket listens inside that
    network namespace (root only). With `token`, every request must carry it as a bearer
    token (the kubeconfig written does); anything else is answered 401 like an expired
    credential. Resources named in `forbid` (plurals: "events") answer 403, like RBAC
    that lets the user see some lists only. Raises CnidoctorError (one line) when it cannot start.
    """
    items = load_objects(objects) if isinstance(objects, str | Path) else list(objects)
    store = ObjectStore(items)
    host, port = parse_listen(listen)
    sock = _socket_in_netns(netns, host, port) if netns else _listen_socket(host, port)
    tmpdir: Path | None = None
    try:
        if kubeconfig_dir is None:
            tmpdir = Path(tempfile.mkdtemp(prefix="cnidoctor-api-"))
        directory = Path(kubeconfig_dir) if kubeconfig_dir is not None else tmpdir
        assert directory is not None
        directory.mkdir(parents=True, exist_ok=True)
        ctx, ca_pem = _self_signed(host, directory) if tls else (None, None)
        server = _ApiServer((host, port), _Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = sock
        bound_host, bound_port = sock.getsockname()[:2]
        server.server_address = (bound_host, bound_port)
        server.server_name, server.server_port = bound_host, bound_port
        server.store, server.token, server.requests, server.tls = store, token, [], ctx
        server.forbid = frozenset(forbid)
        url_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        url_host = "[::1]" if url_host == "::" else url_host
        url_host = f"[{url_host}]" if ":" in url_host and not url_host.startswith("[") else url_host
        server.address_text = f"{url_host}:{bound_port}"
        url = f"{'https' if tls else 'http'}://{url_host}:{bound_port}"
        kubeconfig = write_kubeconfig(directory / "kubeconfig.yaml", url, token, ca_pem)
    except BaseException:
        sock.close()
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True, name="lab-api"
    )
    thread.start()
    return ApiHandle(url, kubeconfig, server.requests, server, thread, tmpdir)


def run_api(args: Any) -> int:
    """`cnidoctor lab api`: serve until SIGINT/SIGTERM; the kubeconfig path is stdout's last
    line before serving. Reads args.objects, args.listen, args.netns and, when present,
    args.token and args.tls. Exit status 2 on bad objects or arguments."""
    try:
        handle = start_api(
            args.objects,
            args.listen,
            getattr(args, "netns", None),
            token=getattr(args, "token", None),
            tls=bool(getattr(args, "tls", False)),
        )
    except CnidoctorError as exc:
        print(f"cnidoctor: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        print(f"serving {handle.url}", file=sys.stderr, flush=True)
        print(handle.kubeconfig_path, flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        handle.stop()
    return 0
