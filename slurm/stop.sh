#!/usr/bin/env bash
# Stop the daemons slurm/start.sh started, by their recorded PIDs (never by name). Keeps the
# state (accounting database, job state) so the next start is fast; rm -rf $GRPOLAB_SLURM_DIR to reset.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/env.sh"
D="$GRPOLAB_SLURM_DIR"
for name in slurmd slurmctld slurmdbd mariadbd munged; do
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
echo "SLURM cluster stopped"
