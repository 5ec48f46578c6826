#!/usr/bin/env bash
# Install the Debian packages of the SLURM test clusters with accounting (idempotent); iproute2
# (ip netns) and util-linux (nsenter, unshare) for the two-node one.
# Services are not started here (Debian's policy-rc.d keeps them off); slurm/start.sh runs them.
set -euo pipefail
pkgs=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server iproute2 util-linux)
bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../scripts/apt-install-missing.sh" "${pkgs[@]}"
echo "slurm packages installed: ${pkgs[*]}"
