#!/usr/bin/env bash
# Start a SLURM test cluster with accounting on this machine (MariaDB, munged, slurmdbd, slurmctld,
# slurmd), everything under $GRPOLAB_SLURM_DIR; PIDs go to $GRPOLAB_SLURM_DIR/pids/.
#   bash slurm/start.sh             one node, this host
#   bash slurm/start.sh --nodes 2   two nodes: grpolab-n1 (this host) and grpolab-n2, a second slurmd
#                                   in a network namespace with its own address and hostname
#                                   (slurm/netns.sh); its own directory and ports (slurm/env.sh)
# Idempotent: a daemon whose recorded PID is alive is left running. Clients need
#   export SLURM_CONF=$GRPOLAB_SLURM_DIR/etc/slurm.conf      (printed at the end)
# Requires root (SlurmUser=root, ip netns) and slurm/install.sh's packages.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case "${1:-}" in
  "") ;;
  --nodes) [[ "${2:-}" == 1 || "${2:-}" == 2 ]] || { echo "--nodes: 1 or 2, not '${2:-}'" >&2; exit 2; }
           export GRPOLAB_SLURM_NODES="$2" ;;
  *) echo "usage: slurm/start.sh [--nodes 1|2]" >&2; exit 2 ;;
esac
source "$here/env.sh"
nodes=$GRPOLAB_SLURM_NODES
D="$GRPOLAB_SLURM_DIR"
P=$GRPOLAB_SLURM_PORT_BASE          # slurmctld; +1 slurmd, +2 slurmdbd, +3 mariadb
host="$(hostname -s)"
cpus="$(nproc)"
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
db_pass=grpolab-local-only

for bin in slurmctld slurmd slurmdbd munged mariadbd mariadb-install-db sacctmgr; do
  command -v "$bin" >/dev/null || { echo "missing $bin: run slurm/install.sh" >&2; exit 3; }
done
mkdir -p "$D"/{etc,state,spool,log,pids,db,run}
chmod 755 "$D" "$D/etc" "$D/run"

alive() { [[ -f "$D/pids/$1" ]] && kill -0 "$(cat "$D/pids/$1")" 2>/dev/null; }
wait_for() {  # wait_for <what> <seconds> <command...>
  local what=$1 secs=$2; shift 2
  local end=$((SECONDS + secs))
  while ((SECONDS < end)); do timeout 10 "$@" >/dev/null 2>&1 && return 0; sleep 0.3; done
  echo "timed out waiting for $what (logs: $D/log)" >&2; return 1
}
launch() {  # launch <name> <command...>: run in the background, record its PID
  local name=$1; shift
  setsid "$@" >>"$D/log/$name.out" 2>&1 < /dev/null &
  echo $! > "$D/pids/$name"
}

# --- munge: its own key, socket and logs, run as the munge user
install -d -o munge -g munge -m 700 "$D/munge"
if [[ ! -s "$D/munge/munge.key" ]]; then
  dd if=/dev/urandom bs=1 count=1024 of="$D/munge/munge.key" status=none
  chown munge:munge "$D/munge/munge.key"; chmod 400 "$D/munge/munge.key"
fi
# Slurm's accounting clients (sacctmgr, sacct) ignore AuthInfo=socket=, so munged serves the default socket.
sock=/run/munge/munge.socket.2
install -d -o munge -g munge -m 755 /run/munge
if ! alive munged && [[ -S "$sock" ]] && munge -n -S "$sock" >/dev/null 2>&1; then
  echo "another munged already serves $sock; stop it first (this cluster uses its own key)" >&2; exit 3
fi
if ! alive munged; then
  launch munged runuser -u munge -- munged -F --force --socket="$sock" --key-file="$D/munge/munge.key" \
    --log-file="$D/munge/munged.log" --pid-file="$D/munge/munged.pid" --seed-file="$D/munge/munged.seed"
fi
wait_for munged 10 test -S "$sock"

# --- MariaDB for slurmdbd
dbsock="$D/run/mariadb.sock"
if [[ ! -d "$D/db/mysql" ]]; then
  mariadb-install-db --no-defaults --datadir="$D/db" --user=root --auth-root-authentication-method=socket \
    >"$D/log/mariadb-install.log" 2>&1
fi
if ! alive mariadbd; then
  launch mariadbd mariadbd --no-defaults --datadir="$D/db" --user=root --bind-address=127.0.0.1 \
    --port=$((P + 3)) --socket="$dbsock" --pid-file="$D/run/mariadbd.pid" --log-error="$D/log/mariadbd.err" \
    --skip-log-bin --innodb-buffer-pool-size=64M
fi
sql() { mariadb --no-defaults --socket="$dbsock" -u root -e "$1"; }
wait_for mariadb 60 mariadb --no-defaults --socket="$dbsock" -u root -e "SELECT 1"
sql "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$db_pass';
     CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$db_pass';
     GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
     FLUSH PRIVILEGES;"

# --- the second node's namespace, and what differs between the one- and two-node configs
if ((nodes == 2)); then
  command -v ip >/dev/null || { echo "missing ip (iproute2): the second node needs a network namespace" >&2; exit 3; }
  source "$here/netns.sh"
  netns_up
  ctl_addr="$GRPOLAB_SUBNET.1"
  half_mb=$((mem_mb / 2))
  node_lines="SlurmdParameters=config_overrides
# a lost node is noticed within ~10 s, not SLURM's default 300 s (the node-loss test waits for it)
SlurmdTimeout=10
NodeName=$NODE1 NodeAddr=$GRPOLAB_SUBNET.1 CPUs=1 RealMemory=$half_mb State=UNKNOWN
NodeName=$NODE2 NodeAddr=$GRPOLAB_SUBNET.2 CPUs=1 RealMemory=$half_mb State=UNKNOWN"
else
  ctl_addr=127.0.0.1
  node_lines="NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN"
fi

# --- configs
cat > "$D/etc/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$((P + 2))
SlurmUser=root
LogFile=$D/log/slurmdbd.log
PidFile=$D/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$((P + 3))
StorageUser=slurm
StoragePass=$db_pass
StorageLoc=slurm_acct_db
CONF
chmod 600 "$D/etc/slurmdbd.conf"
cat > "$D/etc/slurm.conf" <<CONF
ClusterName=grpolab
SlurmctldHost=$host($ctl_addr)
SlurmctldPort=$P
SlurmdPort=$((P + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool/%n
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.%n.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
# A test cluster: schedule within seconds, and let a requeued job start again after ~10 s instead of
# SLURM's default credential lifetime of 120 s (a requeued job is held that long).
SchedulerParameters=sched_interval=2,bf_interval=2,sched_min_interval=100000
AuthInfo=cred_expire=10
JobRequeue=1
KillWait=10
MinJobAge=600
InactiveLimit=0
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$((P + 2))
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
$node_lines
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

# --- slurmdbd, then the cluster's accounting entry, then the controller and the node daemon
if ! alive slurmdbd; then launch slurmdbd slurmdbd -D; fi
wait_for slurmdbd 60 sacctmgr -n show cluster
sacctmgr -i -Q add cluster grpolab >/dev/null 2>&1 || true
if ! alive slurmctld; then launch slurmctld slurmctld -D -i; fi
if ((nodes == 2)); then
  if ! alive slurmd-n1; then launch slurmd-n1 slurmd -D -N "$NODE1"; fi
  # nsenter joins the namespace's network only (ip netns exec would also remount /sys, hiding the
  # cgroup mounts slurmd needs); nsenter and unshare exec in place: the recorded PID is slurmd's
  if ! alive slurmd-n2; then
    launch slurmd-n2 nsenter --net="/run/netns/$GRPOLAB_NETNS" unshare --uts \
      sh -c "hostname $NODE2 && exec slurmd -D -N $NODE2"
  fi
  wait_for "both nodes idle" 60 bash -c "[[ \$(sinfo -h -N -o %t | grep -Ec '^(idle|mix|alloc)') == 2 ]]"
else
  if ! alive slurmd; then launch slurmd slurmd -D; fi
  wait_for "node idle" 60 bash -c "sinfo -h -o %t | grep -Eq '^(idle|mix|alloc)'"
fi
echo "SLURM cluster up ($nodes node$( ((nodes == 2)) && echo s)): export SLURM_CONF=$SLURM_CONF"
