"""Reading a cluster's Kubernetes API: where the credentials are (access) and one paged pass
over nodes, pods, events and the CNI ConfigMaps (client). Only kube/client.py uses lightkube."""

from cnidoctor.kube.access import KubeAccess, search_access
from cnidoctor.kube.client import collect_cluster, collect_from

__all__ = ["KubeAccess", "collect_cluster", "collect_from", "search_access"]
