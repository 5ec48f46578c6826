# Source me (slurm/start.sh and stop.sh with --nodes 2): the second node's network namespace.
# A veth pair joins it to the host: both ends are named grpolab0 (each in its own namespace), so
# GLOO_SOCKET_IFNAME=grpolab0 picks the cluster's link on either node. Node names resolve through a
# marked block in /etc/hosts, as a real cluster's DNS would resolve them.
GRPOLAB_NETNS="${GRPOLAB_NETNS:-grpolab-n2}"
GRPOLAB_SUBNET="${GRPOLAB_SUBNET:-10.251.17}"   # .1 the host (node n1), .2 the namespace (node n2)
GRPOLAB_IFNAME=grpolab0
GRPOLAB_HOSTS_MARK="# grpolab two-node test cluster"
NODE1=grpolab-n1
NODE2=grpolab-n2

netns_up() {
  if ! ip netns list | grep -qw "$GRPOLAB_NETNS"; then
    ip netns add "$GRPOLAB_NETNS"
  fi
  if ! ip link show "$GRPOLAB_IFNAME" >/dev/null 2>&1; then
    ip link add "$GRPOLAB_IFNAME" type veth peer name grpolab-peer
    ip link set grpolab-peer netns "$GRPOLAB_NETNS"
    ip netns exec "$GRPOLAB_NETNS" ip link set grpolab-peer name "$GRPOLAB_IFNAME"
    ip addr add "$GRPOLAB_SUBNET.1/24" dev "$GRPOLAB_IFNAME"
    ip link set "$GRPOLAB_IFNAME" up
    ip netns exec "$GRPOLAB_NETNS" ip addr add "$GRPOLAB_SUBNET.2/24" dev "$GRPOLAB_IFNAME"
    ip netns exec "$GRPOLAB_NETNS" ip link set "$GRPOLAB_IFNAME" up
    ip netns exec "$GRPOLAB_NETNS" ip link set lo up
    # every host address (slurmctld, rank 0's rendezvous) is one hop away
    ip netns exec "$GRPOLAB_NETNS" ip route add default via "$GRPOLAB_SUBNET.1"
  fi
  hosts_remove
  printf '%s\n%s %s\n%s %s\n' "$GRPOLAB_HOSTS_MARK" "$GRPOLAB_SUBNET.1" "$NODE1" "$GRPOLAB_SUBNET.2" "$NODE2" \
    >> /etc/hosts
}

hosts_remove() {  # the marked block only: the mark line and the two lines after it
  local tmp
  tmp="$(mktemp)"
  awk -v mark="$GRPOLAB_HOSTS_MARK" '$0 == mark {skip = 2; next} skip > 0 {skip--; next} {print}' /etc/hosts > "$tmp"
  cat "$tmp" > /etc/hosts   # in place: /etc/hosts may be a bind mount
  rm -f "$tmp"
}

netns_down() {
  if ip netns list | grep -qw "$GRPOLAB_NETNS"; then
    local pids
    pids="$(ip netns pids "$GRPOLAB_NETNS" 2>/dev/null || true)"
    [[ -n "$pids" ]] && kill -KILL $pids 2>/dev/null || true
    ip netns del "$GRPOLAB_NETNS"
  fi
  ip link del "$GRPOLAB_IFNAME" 2>/dev/null || true   # deleting one end removes the pair
  hosts_remove
}
