# Source me: where the single-node test cluster lives and how clients find it.
# GRPOLAB_SLURM_DIR holds configs, state, logs and PID files: <repo>/.cache/slurm by default, or
# /var/tmp/grpolab-slurm-<hash of the repo path> when the daemons' users (munge, mysql) cannot
# traverse the repo's directories (a checkout under a 0700 directory, e.g. from mktemp -d).
# Ports are private (not SLURM's defaults) so this cluster never collides with a system one.
_grpolab_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_grpolab_dir="$_grpolab_repo/.cache/slurm"
if id munge >/dev/null 2>&1 && ! runuser -u munge -- test -x "$_grpolab_repo" 2>/dev/null; then
  _grpolab_dir="/var/tmp/grpolab-slurm-$(printf %s "$_grpolab_repo" | sha1sum | cut -c1-12)"
fi
export GRPOLAB_SLURM_DIR="${GRPOLAB_SLURM_DIR:-$_grpolab_dir}"
export GRPOLAB_SLURM_PORT_BASE="${GRPOLAB_SLURM_PORT_BASE:-16817}"
export SLURM_CONF="$GRPOLAB_SLURM_DIR/etc/slurm.conf"
unset _grpolab_repo _grpolab_dir
