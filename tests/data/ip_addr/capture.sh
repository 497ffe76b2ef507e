#!/bin/bash
# How the ip_addr/ip_route/ip_neigh captures were made (root): builds scratch network
# namespaces only, captures `ip -j` outputs, deletes the namespaces (also on failure).
# Usage: capture.sh [SCENARIO_NUMBER...]   (all by default)
set -eu
OUT=$(cd "$(dirname "$0")/.." && pwd)
P=cdaddr
NSS=()
cleanup() { for n in "${NSS[@]}"; do ip netns del "$n" 2>/dev/null || true; done; }
trap cleanup EXIT
mk() { ip netns add "$1"; NSS+=("$1"); ip -n "$1" link set lo up; }
# veth NAME in ns $1 with peer in ns $3 ; $4 = up peer? (1/0)
veth() { local ns=$1 name=$2 peerns=$3 up=$4 tmp="${P}p$RANDOM"
  ip -n "$ns" link add "$name" type veth peer name "$tmp" netns "$peerns"
  ip -n "$ns" link set "$name" up
  [ "$up" = 1 ] && ip -n "$peerns" link set "$tmp" up || true; }
flannel() { local ns=$1 local=$2 dev=$3 mtu=$4 vtepaddr=$5
  if [ -n "$dev" ]; then ip -n "$ns" link add flannel.1 type vxlan id 1 dstport 8472 local "$local" dev "$dev" nolearning
  else ip -n "$ns" link add flannel.1 type vxlan id 1 dstport 8472 local "$local" nolearning; fi
  ip -n "$ns" link set flannel.1 mtu "$mtu" address 6a:3e:2d:11:22:01 up
  ip -n "$ns" addr add "$vtepaddr/32" dev flannel.1; }
cni0() { local ns=$1 addr=$2 mtu=$3
  ip -n "$ns" link add cni0 type bridge; ip -n "$ns" link set cni0 mtu "$mtu" up
  ip -n "$ns" addr add "$addr" dev cni0
  mk "${ns}-pod"; ip -n "$ns" link add veth1a2b3c4d type veth peer name eth0 netns "${ns}-pod"
  ip -n "$ns" link set veth1a2b3c4d master cni0 up; ip -n "${ns}-pod" link set eth0 up; }
cap() { local ns=$1 case=$2
  mkdir -p $OUT/ip_addr $OUT/ip_route $OUT/ip_neigh
  sleep 0.3
  ip -n "$ns" -j -d addr show > $OUT/ip_addr/$case.json
  ip -n "$ns" -4 -j route show table all > $OUT/ip_route/$case.v4.json
  ip -n "$ns" -6 -j route show table all > $OUT/ip_route/$case.v6.json
  ip -n "$ns" -j neigh show > $OUT/ip_neigh/$case.json; }

# 1. incident 003: two uplinks, two defaults, policy table, ECMP, IPv6, neighbours
scenario1() {
  N=$P-n1; mk $N; mk $N-peer
  veth $N ens18 $N-peer 1; veth $N ens19 $N-peer 1
  ip -n $N addr add 192.168.178.20/24 dev ens18
  ip -n $N addr add 10.50.10.20/24 dev ens19
  ip -n $N addr add 2001:db8:178::20/64 dev ens18 nodad
  ip -n $N route add default via 192.168.178.1 dev ens18 metric 100
  ip -n $N route add default via 10.50.10.1 dev ens19 metric 200
  ip -n $N -6 route add default via 2001:db8:178::1 dev ens18 metric 1024
  flannel $N 10.50.10.20 ens19 1450 10.42.1.0
  cni0 $N 10.42.1.1/24 1450
  ip -n $N route add 10.42.0.0/24 via 10.42.0.0 dev flannel.1 onlink
  ip -n $N route add 172.16.0.0/16 nexthop via 192.168.178.1 dev ens18 weight 1 nexthop via 10.50.10.1 dev ens19 weight 2
  ip -n $N rule add from 10.50.10.20 table 100
  ip -n $N route add default via 10.50.10.1 dev ens19 table 100
  ip -n $N neigh add 10.42.0.0 lladdr 6a:3e:2d:11:22:02 dev flannel.1 nud permanent
  ip -n $N neigh add 192.168.178.1 lladdr 3c:a6:2f:00:00:01 dev ens18 nud permanent
  ip -n $N neigh add 10.50.10.1 lladdr 00:08:a2:00:00:01 dev ens19 nud reachable
  ip -n $N neigh add 2001:db8:178::1 lladdr 3c:a6:2f:00:00:01 dev ens18 nud permanent router
  cap $N incident003-two-uplinks
}

# 2. incident 000: WiFi + Ethernet on one LAN, NetworkManager-style metrics
scenario2() {
  N=$P-n2; mk $N; mk $N-peer
  veth $N enp4s0 $N-peer 1; veth $N wlp2s0 $N-peer 1
  ip -n $N addr add 192.168.1.34/24 dev enp4s0 metric 100
  ip -n $N addr add 192.168.1.50/24 dev wlp2s0 metric 600
  ip -n $N route add default via 192.168.1.1 dev enp4s0 proto dhcp metric 100
  ip -n $N route add default via 192.168.1.1 dev wlp2s0 proto dhcp metric 600
  flannel $N 192.168.1.34 enp4s0 1450 10.244.2.0
  cni0 $N 10.244.2.1/24 1450
  ip -n $N route add 10.244.0.0/24 via 10.244.0.0 dev flannel.1 onlink
  ip -n $N route add 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink
  cap $N incident000-wifi-ethernet
}

# 3. incident 002: /8 host prefix swallowing 10.42.0.0/16
scenario3() {
  N=$P-n3; mk $N; mk $N-peer
  veth $N eth0 $N-peer 1
  ip -n $N addr add 10.10.0.2/8 dev eth0
  ip -n $N route add default via 10.0.0.1 dev eth0
  flannel $N 10.10.0.2 eth0 1450 10.42.0.0
  cni0 $N 10.42.0.1/24 1450
  ip -n $N route add 10.42.1.0/24 via 10.42.1.0 dev flannel.1 onlink
  ip -n $N route add 10.42.2.0/24 via 10.42.2.0 dev flannel.1 onlink
  for ip in 10.10.0.3 10.10.0.4 10.10.0.5; do ip -n $N neigh add $ip lladdr bc:24:11:5e:00:01 dev eth0 nud stale; done
  ip -n $N neigh add 10.0.0.1 lladdr 00:e0:4c:68:00:01 dev eth0 nud reachable
  cap $N incident002-slash8
}

# 4. incident 002 fixed: /16 plus static routes to the other zones
scenario4() {
  N=$P-n4; mk $N; mk $N-peer
  veth $N eth0 $N-peer 1
  ip -n $N addr add 10.10.0.2/16 dev eth0
  ip -n $N route add default via 10.10.0.1 dev eth0
  for z in 10.0.0.0/16 10.11.0.0/16 10.20.0.0/16; do ip -n $N route add $z via 10.10.0.1 dev eth0; done
  flannel $N 10.10.0.2 eth0 1450 10.42.0.0
  cni0 $N 10.42.0.1/24 1450
  ip -n $N route add 10.42.1.0/24 via 10.42.1.0 dev flannel.1 onlink
  ip -n $N route add 10.42.2.0/24 via 10.42.2.0 dev flannel.1 onlink
  cap $N incident002-slash16
}

# 5. one subnet connected on two NICs with equal metric, the second unplugged
scenario5() {
  N=$P-n5; mk $N; mk $N-peer
  veth $N eth0 $N-peer 1; veth $N eth1 $N-peer 0
  ip -n $N addr add 192.168.5.10/24 dev eth0
  ip -n $N addr add 192.168.5.11/24 dev eth1
  ip -n $N route add default via 192.168.5.1 dev eth0
  cap $N duplicate-connected
}

# 6. underlay MTU lowered to 1400 under a 1450 flannel.1 bound by local address only
scenario6() {
  N=$P-n6; mk $N; mk $N-peer
  veth $N eth0 $N-peer 1
  ip -n $N link set eth0 mtu 1400
  ip -n $N addr add 172.31.5.10/24 dev eth0
  ip -n $N route add default via 172.31.5.1 dev eth0
  flannel $N 172.31.5.10 "" 1450 10.42.3.0
  cni0 $N 10.42.3.1/24 1450
  cap $N mtu-underlay-1400
}

# 7. two NICs, one default in main, two defaults in policy table 100 only
scenario7() {
  N=$P-n7; mk $N; mk $N-peer
  veth $N eth0 $N-peer 1; veth $N eth1 $N-peer 1
  ip -n $N addr add 10.1.0.5/24 dev eth0
  ip -n $N addr add 10.2.0.5/24 dev eth1
  ip -n $N route add default via 10.1.0.1 dev eth0
  ip -n $N route add default via 10.1.0.1 dev eth0 metric 10 table 100
  ip -n $N route add default via 10.2.0.1 dev eth1 metric 20 table 100
  ip -n $N rule add from 10.2.0.5 table 100
  cap $N policy-table-defaults
}

# 8. a static route and container/kube-proxy devices next to the cluster CIDRs
scenario8() {
  N=$P-n8; mk $N; mk $N-peer
  veth $N eth0 $N-peer 1
  ip -n $N addr add 192.168.10.5/24 dev eth0
  ip -n $N route add default via 192.168.10.1 dev eth0
  ip -n $N route add 10.0.0.0/8 via 192.168.10.254 dev eth0
  ip -n $N route add 10.42.1.0/24 via 192.168.10.6 dev eth0
  ip -n $N link add kube-ipvs0 type bridge  # a dummy in real life; no dummy module here
  ip -n $N addr add 10.43.0.1/32 dev kube-ipvs0
  ip -n $N addr add 10.43.0.10/32 dev kube-ipvs0
  ip -n $N link add docker0 type bridge; ip -n $N link set docker0 up
  ip -n $N addr add 172.17.0.1/16 dev docker0
  cap $N static-route-over-cluster
}
# 9. one subnet on two NICs, the unplugged one configured first
scenario9() {
  N=$P-n9; mk $N; mk $N-peer
  veth $N eth1 $N-peer 0; veth $N eth0 $N-peer 1
  ip -n $N addr add 192.168.5.11/24 dev eth1
  ip -n $N addr add 192.168.5.10/24 dev eth0
  ip -n $N route add default via 192.168.5.1 dev eth0
  cap $N duplicate-connected-dead-first
}

if [ $# -eq 0 ]; then set -- 1 2 3 4 5 6 7 8 9; fi
for s in "$@"; do "scenario$s"; done
echo captured "$@"
