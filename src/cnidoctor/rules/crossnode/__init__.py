"""What only shows when nodes are compared: incident 002 was invisible from any single node.

One node had 10.10.0.2/8 while the others had /16; the router's neighbour cache held one
MAC for every node. Each rule here reads every collected node (and the inventory's
routers) once and groups or hashes, never compares all pairs: segments are found by one
sort (analysis.segments), duplicate MACs by one dict keyed by MAC, stale VXLAN entries by
dicts of every node's VTEP MAC and address. 2,000 nodes stay a linear pass.
"""

from __future__ import annotations

from cnidoctor.rules.base import ClusterRule
from cnidoctor.rules.crossnode.common import cluster_addresses
from cnidoctor.rules.crossnode.duplicate_mac import DuplicateMac
from cnidoctor.rules.crossnode.prefix_inconsistent import PrefixInconsistent
from cnidoctor.rules.crossnode.vxlan_fdb_stale import VxlanFdbStale
from cnidoctor.rules.crossnode.wrong_interface import WrongInterfaceSelected

__all__ = [
    "RULES",
    "DuplicateMac",
    "PrefixInconsistent",
    "VxlanFdbStale",
    "WrongInterfaceSelected",
    "cluster_addresses",
]

RULES: list[type[ClusterRule]] = [
    PrefixInconsistent,
    DuplicateMac,
    VxlanFdbStale,
    WrongInterfaceSelected,
]
