"""Inventory files: valid ones load, every mistake is one clear line naming where it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnidoctor.errors import UsageError
from cnidoctor.inventory import load_inventory

VALID = """
cluster:
  name: homelab
  pod_cidr: 10.42.0.0/16
  service_cidr: 10.43.0.0/16
  cni: flannel
  kubeconfig: ./kubeconfig.yaml
nodes:
  - name: nl-k8s-01
    address: 10.10.0.2
    role: control-plane
    via: netns:lab-n1
  - name: nl-k8s-02
    address: 10.10.0.4
    via: ssh://root@10.10.0.4:2222
routers:
  - name: r5c
    via: netns:lab-r
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inventory.yaml"
    path.write_text(text)
    return path


def test_valid_inventory_loads_with_defaults_and_relative_kubeconfig(tmp_path: Path) -> None:
    inventory = load_inventory(write(tmp_path, VALID))
    assert [n.name for n in inventory.nodes] == ["nl-k8s-01", "nl-k8s-02"]
    assert inventory.nodes[0].is_etcd and not inventory.nodes[1].is_etcd
    assert inventory.nodes[1].role == "worker"
    assert inventory.cluster.kubeconfig == str(tmp_path / "kubeconfig.yaml")
    assert inventory.routers[0].via == "netns:lab-r"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nodes: [", "not valid YAML"),
        ("- just a list", "expected a mapping"),
        ("nodes: []", "nodes: List should have at least 1 item"),
        ("nodes:\n  - name: a\n    colour: red\n", "nodes.0.colour: unknown key"),
        (
            "cluster:\n  pod_cidr: 10.42.0.0/33\nnodes:\n  - name: a\n",
            "cluster.pod_cidr: '10.42.0.0/33' is not a CIDR",
        ),
        ("cluster:\n  cni: weave\nnodes:\n  - name: a\n", "cluster.cni: cni must be one of"),
        ("nodes:\n  - name: a\n  - name: a\n", "duplicate node name 'a'"),
        ("nodes:\n  - name: a\n    via: telnet://x\n", "unknown node spec 'telnet://x'"),
        ("nodes:\n  - name: a\n    via: ssh://-oProxyCommand=x\n", "invalid host"),
        ("nodes:\n  - name: a\n    address: 10.1.2\n", "nodes.0.address"),
        ("nodes:\n  - name: a\n    role: boss\n", "nodes.0.role"),
    ],
)
def test_each_mistake_is_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        load_inventory(write(tmp_path, text))
    text_of_error = str(caught.value)
    assert message in text_of_error
    assert "\n" not in text_of_error
    assert text_of_error.startswith(f"inventory {tmp_path / 'inventory.yaml'}")


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="No such file"):
        load_inventory(tmp_path / "nope.yaml")
