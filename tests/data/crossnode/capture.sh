#!/bin/bash
# How the cross-node captures were made (root): each scenario is a few scratch network
# namespaces (nodes, a router, a switch namespace holding the bridge) with real veths,
# VXLAN devices, fdb entries and neighbour tables filled by real pings between them.
# Writes tests/data/crossnode/SCENARIO/NODE.{addr,route4,route6,neigh,fdb}.json (the
# collectors' exact commands) and deletes every namespace afterwards, also on failure.
# Usage: capture.sh [SCENARIO...]   (all by default)
set -eu
OUT=$(cd "$(dirname "$0")" && pwd)
P=cdxn
NSS=()
cleanup() { for n in "${NSS[@]}"; do ip netns del "$n" 2>/dev/null || true; done; NSS=(); }
trap cleanup EXIT
mk() { ip netns add "$1"; NSS+=("$1"); ip -n "$1" link set lo up; }
switch() { mk $P-sw; ip -n $P-sw link add br0 type bridge; ip -n $P-sw link set br0 up; }
# port NS DEV MAC: a NIC in NS plugged into the switch
port() { local ns=$1 dev=$2 mac=$3 peer="p$RANDOM"
  ip -n "$ns" link add "$dev" type veth peer name "$peer" netns $P-sw
  ip -n "$ns" link set "$dev" address "$mac" up
  ip -n $P-sw link set "$peer" master br0 up; }
# node NAME ADDR/LEN UNDERLAY_MAC VTEP_MAC POD_INDEX [GATEWAY]
node() { local ns=$P-$1 cidr=$2 mac=$3 vtep=$4 pod=$5 gw=${6:-}
  mk "$ns"; port "$ns" eth0 "$mac"
  ip -n "$ns" addr add "$cidr" dev eth0
  [ -n "$gw" ] && ip -n "$ns" route add default via "$gw" dev eth0
  ip -n "$ns" link add flannel.1 type vxlan id 1 dstport 8472 local "${cidr%/*}" dev eth0 nolearning
  ip -n "$ns" link set flannel.1 mtu 1450 address "$vtep" up
  ip -n "$ns" addr add "10.42.$pod.0/32" dev flannel.1
  ip -n "$ns" link add cni0 type bridge; ip -n "$ns" link set cni0 mtu 1450 up
  ip -n "$ns" addr add "10.42.$pod.1/24" dev cni0; }
# peer NODE PEER_POD_INDEX PEER_VTEP_MAC PEER_PUBLIC_IP: what flanneld programs for a peer
peer() { local ns=$P-$1 pod=$2 vtep=$3 ip=$4
  ip -n "$ns" route add "10.42.$pod.0/24" via "10.42.$pod.0" dev flannel.1 onlink
  ip -n "$ns" neigh replace "10.42.$pod.0" lladdr "$vtep" dev flannel.1 nud permanent
  ip netns exec "$ns" bridge fdb append "$vtep" dev flannel.1 dst "$ip" self permanent; }
router() { mk $P-r; port $P-r eth0 "$1"; shift
  for a in "$@"; do ip -n $P-r addr add "$a" dev eth0; done
  ip netns exec $P-r sysctl -qw net.ipv4.ip_forward=1; }
ping1() { ip netns exec "$P-$1" ping -c 1 -W 1 "$2" >/dev/null 2>&1 || true; }
cap() { local dir=$OUT/$1 name
  mkdir -p "$dir"; sleep 0.3
  for ns in "${NSS[@]}"; do
    name=${ns#$P-}; case $name in sw|far*|n1x) continue ;; esac  # helpers, not hosts
    ip -n "$ns" -j -d addr show > "$dir/$name.addr.json"
    ip -n "$ns" -4 -j route show table all > "$dir/$name.route4.json"
    ip -n "$ns" -6 -j route show table all > "$dir/$name.route6.json"
    ip -n "$ns" -j neigh show > "$dir/$name.neigh.json"
    ip netns exec "$ns" bridge -j fdb show dev flannel.1 > "$dir/$name.fdb.json" 2>/dev/null \
      || rm -f "$dir/$name.fdb.json"
  done
  cleanup; }

MACS=(- 52:54:00:0a:00:02 52:54:00:0a:00:03 52:54:00:0a:00:04 52:54:00:0a:00:05)
VTEPS=(- 6a:3e:2d:11:22:02 6a:3e:2d:11:22:03 6a:3e:2d:11:22:04 6a:3e:2d:11:22:05)
IPS=(- 10.10.0.2 10.10.0.3 10.10.0.4 10.10.0.5)
# four nodes n1..n4 (10.10.0.2-5, pod subnets 10.42.0-3.0/24) and router r; $1..$4 = prefixes
cluster() { switch
  router 00:e0:4c:68:00:01 10.10.0.1/16 10.0.0.1/8
  for i in 1 2 3 4; do node n$i "${IPS[$i]}/$(eval echo \${$i})" "${MACS[$i]}" "${VTEPS[$i]}" $((i-1)) 10.10.0.1; done
  for i in 1 2 3 4; do for j in 1 2 3 4; do
    [ $i = $j ] || peer n$i $((j-1)) "${VTEPS[$j]}" "${IPS[$j]}"; done; done; }
pingall() { for i in 1 2 3 4; do
    for j in 1 2 3 4; do [ $i = $j ] || ping1 n$i "${IPS[$j]}"; done; ping1 n$i 10.10.0.1; done
  for j in 1 2 3 4; do ip netns exec $P-r ping -c 1 -W 1 "${IPS[$j]}" >/dev/null 2>&1 || true; done; }

# healthy: four /16 nodes, one MTU, flannel's fdb consistent; n3 holds a keepalived VIP
# (secondary 10.10.0.100/16) that n2 still resolves to n1's MAC (it moved), n4 a kube-vip /32
healthy() { cluster 16 16 16 16
  ip -n $P-n3 addr add 10.10.0.100/16 dev eth0; ip -n $P-n4 addr add 10.10.0.101/32 dev eth0
  pingall
  ip -n $P-n2 neigh replace 10.10.0.100 lladdr "${MACS[1]}" dev eth0 nud stale
  ping1 n1 10.10.0.101
  cap healthy; }

# incident 002: nl-k8s-01 with /8, the others /16
slash8() { cluster 8 16 16 16; pingall; cap slash8; }

# incident 002, second part: the router's neighbour cache has n1's MAC for every node
dupmac() { cluster 16 16 16 16; pingall
  for j in 2 3 4; do ip -n $P-r neigh replace "${IPS[$j]}" lladdr "${MACS[1]}" dev eth0 nud stale; done
  cap dupmac; }

# a router doing real proxy-ARP for 10.20.0.0/16, which it owns on eth1: a /8 node resolves
# two worker nodes behind it (10.20.0.7, 10.20.0.8) to the router's MAC; not a duplicate
proxyarp() { switch
  router 00:e0:4c:68:00:01 10.10.0.1/16
  ip netns exec $P-r sysctl -qw net.ipv4.conf.all.proxy_arp=1
  node n1 10.10.0.2/8 "${MACS[1]}" "${VTEPS[1]}" 0 10.10.0.1
  mk $P-far; ip -n $P-far link add br1 type bridge; ip -n $P-far link set br1 up
  ip -n $P-r link add eth1 type veth peer name r netns $P-far
  ip -n $P-r link set eth1 address 00:e0:4c:68:00:02 up; ip -n $P-r addr add 10.20.0.1/16 dev eth1
  ip -n $P-far link set r master br1 up
  for i in 7 8; do mk $P-far$i; ip -n $P-far$i link add eth0 type veth peer name w$i netns $P-far
    ip -n $P-far link set w$i master br1 up; ip -n $P-far$i link set eth0 up
    ip -n $P-far$i addr add 10.20.0.$i/16 dev eth0; ip -n $P-far$i route add default via 10.20.0.1; done
  ip -n $P-r route add 10.10.0.0/16 dev eth0 2>/dev/null || true
  sleep 1; ping1 n1 10.20.0.7; ping1 n1 10.20.0.8; ping1 n1 10.10.0.1
  cap proxyarp; }

# n3 with jumbo frames on a 1500 segment (and flannel.1 derived from it)
mtu() { cluster 16 16 16 16
  ip -n $P-n3 link set eth0 mtu 9000; ip -n $P-n3 link set flannel.1 mtu 8950
  pingall; cap mtu; }

# n2's flannel.1 MAC changed after its peers programmed it (MACAddressPolicy=persistent),
# and n1 keeps an fdb entry for a node that left (10.10.0.9)
fdbstale() { cluster 16 16 16 16
  ip -n $P-n2 link set flannel.1 address 6a:3e:2d:99:99:02
  ip netns exec $P-n1 bridge fdb append 6a:3e:2d:11:22:09 dev flannel.1 dst 10.10.0.9 self permanent
  pingall; cap fdbstale; }

# n1 has a second NIC (eth1, 192.168.50.2/24) and flannel.1 bound to it, not to eth0
wrongiface() { cluster 16 16 16 16
  ip -n $P-n1 link del flannel.1
  mk $P-n1x; ip -n $P-n1 link add eth1 type veth peer name eth0 netns $P-n1x
  ip -n $P-n1 link set eth1 address 52:54:00:32:00:02 up; ip -n $P-n1x link set eth0 up
  ip -n $P-n1 addr add 192.168.50.2/24 dev eth1
  ip -n $P-n1 link add flannel.1 type vxlan id 1 dstport 8472 local 192.168.50.2 dev eth1 nolearning
  ip -n $P-n1 link set flannel.1 mtu 1450 address "${VTEPS[1]}" up
  ip -n $P-n1 addr add 10.42.0.0/32 dev flannel.1
  for j in 2 3 4; do peer n1 $((j-1)) "${VTEPS[$j]}" "${IPS[$j]}"; done
  pingall; cap wrongiface; }

if [ $# -eq 0 ]; then set -- healthy slash8 dupmac proxyarp mtu fdbstale wrongiface; fi
for s in "$@"; do "$s"; done
echo captured "$@"
