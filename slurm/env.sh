# Source me: where the single-node test cluster lives and how clients find it.
# GRPOLAB_SLURM_DIR (default <repo>/.cache/slurm) holds configs, state, logs and PID files.
# Ports are private (not SLURM's defaults) so this cluster never collides with a system one.
_grpolab_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export GRPOLAB_SLURM_DIR="${GRPOLAB_SLURM_DIR:-$_grpolab_repo/.cache/slurm}"
export GRPOLAB_SLURM_PORT_BASE="${GRPOLAB_SLURM_PORT_BASE:-16817}"
export SLURM_CONF="$GRPOLAB_SLURM_DIR/etc/slurm.conf"
unset _grpolab_repo
