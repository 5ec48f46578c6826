#!/usr/bin/env bash
# Stop the daemons slurm/start.sh started, by their recorded PIDs (never by name). Keeps the
# state (accounting database, job state) so the next start is fast; rm -rf $GRPOLAB_SLURM_DIR to reset.
#   bash slurm/stop.sh [--nodes 2]   the two-node cluster: also removes its network namespace, the
#                                    veth pair and the /etc/hosts block (whatever is left in it is killed)
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case "${1:-}" in
  "") ;;
  --nodes) [[ "${2:-}" == 1 || "${2:-}" == 2 ]] || { echo "--nodes: 1 or 2, not '${2:-}'" >&2; exit 2; }
           export GRPOLAB_SLURM_NODES="$2" ;;
  *) echo "usage: slurm/stop.sh [--nodes 1|2]" >&2; exit 2 ;;
esac
source "$here/env.sh"
D="$GRPOLAB_SLURM_DIR"
for name in slurmd slurmd-n1 slurmd-n2 slurmctld slurmdbd mariadbd munged; do
  f="$D/pids/$name"
  [[ -f "$f" ]] || continue
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$f"
done
if [[ "$GRPOLAB_SLURM_NODES" == 2 ]]; then
  source "$here/netns.sh"
  netns_down
fi
echo "SLURM cluster stopped"
