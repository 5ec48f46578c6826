# Source me: where the test cluster lives and how clients find it.
# GRPOLAB_SLURM_DIR holds configs, state, logs and PID files: <repo>/.cache/slurm by default, or
# /var/tmp/grpolab-slurm-<hash of the repo path> when the daemons' users (munge, mysql) cannot
# traverse the repo's directories (a checkout under a 0700 directory, e.g. from mktemp -d).
# Ports are private (not SLURM's defaults) so this cluster never collides with a system one.
# GRPOLAB_SLURM_NODES=2 (slurm/start.sh --nodes 2) is the two-node cluster: its own directory
# (suffix -2node) and ports (base + 10), so it never shares state with the single-node one.
_grpolab_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_grpolab_dir="$_grpolab_repo/.cache/slurm"
if id munge >/dev/null 2>&1 && ! runuser -u munge -- test -x "$_grpolab_repo" 2>/dev/null; then
  _grpolab_dir="/var/tmp/grpolab-slurm-$(printf %s "$_grpolab_repo" | sha1sum | cut -c1-12)"
fi
export GRPOLAB_SLURM_NODES="${GRPOLAB_SLURM_NODES:-1}"
if [[ "$GRPOLAB_SLURM_NODES" == 2 ]]; then
  export GRPOLAB_SLURM_DIR="${GRPOLAB_SLURM_DIR:-$_grpolab_dir-2node}"
  export GRPOLAB_SLURM_PORT_BASE="${GRPOLAB_SLURM_PORT_BASE:-16827}"
else
  export GRPOLAB_SLURM_DIR="${GRPOLAB_SLURM_DIR:-$_grpolab_dir}"
  export GRPOLAB_SLURM_PORT_BASE="${GRPOLAB_SLURM_PORT_BASE:-16817}"
fi
export SLURM_CONF="$GRPOLAB_SLURM_DIR/etc/slurm.conf"
unset _grpolab_repo _grpolab_dir
