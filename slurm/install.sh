#!/usr/bin/env bash
# Install the Debian packages of a single-node SLURM cluster with accounting (idempotent).
# Services are not started here (Debian's policy-rc.d keeps them off); slurm/start.sh runs them.
set -euo pipefail
pkgs=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../scripts/apt-install-missing.sh" "${pkgs[@]}"
echo "slurm packages installed: ${pkgs[*]}"
